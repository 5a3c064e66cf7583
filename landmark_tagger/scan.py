"""The scan pipeline: walk -> incremental check -> parallel decode -> batched recognition -> keywords -> catalog.

Design (issue 4):

* **Incremental.** The catalog's ``(path -> id, size, mtime_ns, model_id, status, write_status)`` map is loaded
  once; an unchanged file (same size and mtime, same model, a successful status) costs one ``stat`` (done by
  the walk) and one dict lookup. The model is loaded lazily, only when a photo needs recognising, so a
  rescan of an unchanged archive never imports onnxruntime or faiss.
* **Moved files.** A file whose stat changed, or a path new to the catalog, is hashed (XXH3-128, ``fsutil.content_hash``, in the worker
  that would decode it). If its content matches a catalog row decided with the same model, its decision
  is reused without decoding: the row follows the file when the old path is gone (moved/renamed outside
  ltag), or is copied (a duplicate). A file only touched (same content) just gets its new mtime recorded.
* **Parallel decode, batched inference.** Worker processes (``workers``, default ``os.cpu_count()``) hash,
  read EXIF facts and decode for the model (``decode.decode_for_model`` + ``preprocess.prepare_views``, uint8),
  all from one read of the file's bytes (not for RAW files: LibRaw reads only their preview); a bounded
  window of jobs keeps memory flat. The main process normalises (``preprocess.to_input``) and embeds each photo
  as it arrives, and decides in batches (:data:`BATCH`).
* **Safe and resumable.** Keyword writes go through :class:`writer.Writer` (undo record first, atomic replace).
  Catalog rows are committed per batch, after their files were written: a kill -9 loses no finished work,
  and nothing is marked done that was not done. Per-file errors never stop the batch; a failed file gets
  status ``failed`` and is retried by the next scan.
* **Dry run.** ``dry_run=True`` works on an in-memory copy of the catalog and a no-op file layer
  (:class:`fsutil.NoOpFileOps`): everything is computed, nothing on disk changes.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import io
import json
import logging
import os
import queue
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landmark_tagger import fsutil
from landmark_tagger.catalog import Catalog, now_iso
from landmark_tagger.decode import file_kind as dec_file_kind
from landmark_tagger.errors import LtagError
from landmark_tagger.forkserver import start as _start_fork_server
from landmark_tagger.walk import FileEntry, PhotoGroup, walk
from landmark_tagger.writer import WriteOutcome, Writer, desired_keywords, split_ltag_keywords

log = logging.getLogger(__name__)

#: Photos per decision batch: what the catalog commits at once and how far sequence consensus looks ahead (a
#: batch is written once the next one is recognised, so the last two are written after the decoding ends). Beside
#: decoding workers on the CPU, each photo is embedded as it arrives; otherwise a batch is embedded at once.
BATCH = 16
#: Successful statuses: a row with one of these (and the same model) is not recognised again.
DONE = ("tagged", "unknown")
RESULT_STATUSES = ("tagged", "unknown", "unchanged", "skipped", "failed")

_DETAIL_SQL = ("SELECT path, landmark, confidence, country, region, city, ltag_keywords, group_key, write_target "
               "FROM photos")


# ------------------------------------------------------------------------------------------------ results
@dataclass
class FileResult:
    """One file's outcome; :meth:`to_json` is the ``--json`` line."""

    path: str
    group: str
    status: str  # tagged | unknown | unchanged | skipped | failed
    landmark: str | None = None
    confidence: float | None = None
    places: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    error: str | None = None
    write_status: str | None = None  # written | unchanged (already there) | pending | readonly | failed | none | dry-run
    target: str | None = None  # the file that carries the keywords
    role: str = "primary"
    moved_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "group": self.group, "landmark": self.landmark,
                "confidence": None if self.confidence is None else round(float(self.confidence), 4),
                "places": self.places, "keywords": self.keywords, "status": self.status, "error": self.error,
                "write": self.write_status, "target": self.target, "role": self.role, "moved_from": self.moved_from}


@dataclass
class ScanReport:
    run_id: int | None
    counts: dict[str, int]
    problems: list[FileResult]
    elapsed_s: float
    files: int
    dry_run: bool = False
    planned_writes: list[tuple[str, list[str], list[str]]] = field(default_factory=list)
    model_id: str | None = None
    model_loaded: bool = False  # the recognizer (onnxruntime, faiss) was needed in this run
    embedded: int = 0  # photos run through the model
    decoded: int = 0  # photos decoded

    @property
    def read_ok(self) -> int:
        c = self.counts
        return c["tagged"] + c["unknown"] + c["unchanged"]

    @property
    def exit_code(self) -> int:
        """0 when the run completed; 1 when there was input and none of it could be read."""
        if self.read_ok == 0 and (self.files or self.counts["skipped"] or self.counts["failed"]):
            return 1
        return 0


def _new_counts() -> dict[str, int]:
    return dict.fromkeys((*RESULT_STATUSES, "written", "readonly", "pending", "moved", "write_failed", "would_write",
                          "by_sequence"), 0)


# ------------------------------------------------------------------------------------------------ workers
_W: dict[str, Any] = {}


def _worker_init(min_side: int | None, spec: Any, reuse: frozenset[str], owner: int | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    _W.update(min_side=min_side, spec=spec, reuse=reuse)
    if owner:
        # A worker waits on its job queue forever if the scan dies without telling it (kill -9, Ctrl-C at the
        # wrong moment): leave when the scanning process is gone.
        def watch() -> None:
            while True:
                time.sleep(0.5)
                try:
                    os.kill(owner, 0)
                except ProcessLookupError:
                    os._exit(0)
                except OSError:
                    pass
                if _is_zombie(owner):
                    # Dead but not yet reaped: its parent may be waiting for the stderr we inherited to close
                    # (subprocess.communicate), so staying would keep it waiting forever.
                    os._exit(0)

        threading.Thread(target=watch, name="ltag-owner-watch", daemon=True).start()


def _is_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits to be reaped (Linux /proc; False where that cannot be told)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    end = stat.rfind(b")")
    return end >= 0 and stat[end + 2:end + 3] == b"Z"


def _read_once(path: str) -> bool:
    """Whether a file to hash and decode is read into memory once (JPEG, PNG, TIFF, HEIC: the decoder reads it all
    anyway); a RAW file is hashed by streaming and decoded by path (LibRaw reads only its preview)."""
    return dec_file_kind(path) not in (None, "raw")


def _prepare_job(job: tuple[int, list[tuple[str, bool]], list[str]]) -> dict[str, Any]:
    """Worker: hash what needs hashing, read EXIF facts, decode the first decodable file of ``decode``
    (primary first, then its companions) unless its content is already decided in the catalog."""
    from landmark_tagger import exif
    from landmark_tagger.errors import UnsupportedImageError

    gi, files, decode = job
    shas: dict[str, str | None] = {}
    facts: dict[str, dict[str, Any] | None] = {}
    errors: dict[str, str] = {}
    bufs: dict[str, bytes] = {}
    for path, need_hash in files:
        if need_hash:
            try:
                if decode and path == decode[0] and _read_once(path):
                    # The file is hashed, its EXIF read and its image decoded from one read of its bytes.
                    with open(path, "rb") as f:
                        bufs[path] = f.read()
                    shas[path] = fsutil.content_hash(bufs[path])
                else:
                    shas[path] = fsutil.content_hash_file(path)
            except OSError as e:
                shas[path] = None
                errors[path] = f"cannot read: {e.strerror or e}"
                continue
        try:
            if path in bufs:
                kind = dec_file_kind(path)
                facts[path] = dataclasses.asdict(exif.facts_from_tags(
                    exif._exif_tags(io.BytesIO(bufs[path])), exif._pixel_size(io.BytesIO(bufs[path]), path, kind)))
            else:
                facts[path] = dataclasses.asdict(exif.read_facts(path))
        except (UnsupportedImageError, OSError) as e:
            facts[path] = None
            errors.setdefault(path, str(e))
        except Exception as e:  # noqa: BLE001 - a broken file must never stop the batch
            facts[path] = None
            errors.setdefault(path, f"cannot read EXIF: {type(e).__name__}: {e}")
    out: dict[str, Any] = {"gi": gi, "sha": shas, "facts": facts, "errors": errors, "array": None,
                           "decoded_from": None, "decode_error": None}
    if not (decode and shas.get(decode[0]) not in _W.get("reuse", ())):
        bufs.clear()
    else:
        from landmark_tagger import decode as dec
        from landmark_tagger import preprocess

        first_err = None
        for path in decode:
            try:
                buf = bufs.pop(path, None)
                if buf is not None:
                    with dec.file_bytes(path, buf):
                        img = dec.decode_for_model(path, _W["min_side"])
                else:
                    img = dec.decode_for_model(path, _W["min_side"])
                # uint8 views: a quarter of the float input's bytes to pickle and pipe; the main process
                # normalises them (preprocess.to_input) right before inference
                out["array"] = preprocess.prepare_views(img, _W["spec"])
                out["decoded_from"] = path
                break
            except UnsupportedImageError as e:
                first_err = first_err or str(e)
            except Exception as e:  # noqa: BLE001
                first_err = first_err or f"cannot decode: {type(e).__name__}: {e}"
        if out["array"] is None:
            out["decode_error"] = first_err or "cannot decode"
    return out


class _InProcess:
    """Runs jobs in this process (workers=1 or a handful of files): no pool start-up cost."""

    def __init__(self, min_side: int | None, spec: Any, reuse: frozenset[str]):
        self.state = dict(min_side=min_side, spec=spec, reuse=reuse)

    def map(self, jobs: Iterable[Any]) -> Iterable[dict[str, Any]]:
        saved = dict(_W)
        _W.update(self.state)
        try:
            for job in jobs:
                yield _prepare_job(job)
        finally:
            _W.clear()
            _W.update(saved)

    def close(self, kill: bool = False) -> None:
        pass


class _Pool:
    """A process pool with a bounded window of in-flight jobs, results in submission order."""

    def __init__(self, workers: int, min_side: int | None, spec: Any, reuse: frozenset[str], window: int = 0):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # forkserver: workers fork from a clean single-threaded server with the decoders preloaded (plain fork
        # after onnxruntime/OpenMP threads exist can deadlock; spawn re-imports everything per worker).
        ctx = _start_fork_server() or mp.get_context("spawn")
        self.window = max(window, workers * 4 + 4)
        self.ex = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                      initargs=(min_side, spec, reuse, os.getpid()))
        self.fallback = _InProcess(min_side, spec, reuse)

    def map(self, jobs: Iterable[Any]) -> Iterator[dict[str, Any]]:
        """Submit the first window of jobs now (the workers start decoding while the caller goes on) and return
        an iterator over the results, in submission order, which submits the rest as results are taken."""
        pending: collections.deque[tuple[Any, Any]] = collections.deque()
        it = iter(jobs)
        for job in it:
            pending.append((job, self._submit(job)))
            if len(pending) >= self.window:
                break
        return self._results(pending, it)

    def _results(self, pending: collections.deque[tuple[Any, Any]], it: Iterator[Any]) -> Iterator[dict[str, Any]]:
        from concurrent.futures.process import BrokenProcessPool

        while pending:
            job, fut = pending.popleft()
            try:
                res = fut.result()
            except BrokenProcessPool:
                # A worker died (killed, out of memory, a decoder crash) or the pool cannot start (a script run
                # from stdin): finish in this process rather than fail the scan.
                log.warning("decoding workers stopped; continuing in the main process")
                rest = [job, *(j for j, _ in pending), *it]
                pending.clear()
                yield from self.fallback.map(rest)
                return
            for nxt in it:
                pending.append((nxt, self._submit(nxt)))
                break
            yield res

    def _submit(self, job: Any) -> Any:
        """Submit with SIGINT held back: the executor may be starting a worker process, and a Ctrl-C in the
        middle of that leaves a half-started worker printing a traceback after we are gone."""
        with fsutil.deferred_signals():
            return self.ex.submit(_prepare_job, job)

    #: Seconds the workers get to finish the job in hand after a Ctrl-C or an error before they are terminated.
    GRACE_S = 5.0

    def close(self, kill: bool = False) -> None:
        """Stop the workers. ``kill`` (Ctrl-C, an error): cancel the queued jobs and give the workers
        :attr:`GRACE_S` to finish the one in hand, then terminate any still running (a decoder stuck on a hostile
        file), so that no worker is left waiting on a queue after we are gone. Not terminated at once: a worker
        killed while it writes its result leaves half a message in the result pipe, and the executor's thread
        then waits for the rest forever, hanging the interpreter's exit (seen under load in the Ctrl-C test)."""
        procs = list(getattr(self.ex, "_processes", {}).values())
        try:
            if kill:
                self.ex.shutdown(wait=False, cancel_futures=True)
            else:
                # Every result is in, the workers are idle: a short wait, with Ctrl-C held back (a KeyboardInterrupt
                # inside the executor's Thread.join() would mark its thread stopped while it runs; see _Daemon).
                with fsutil.deferred_signals():
                    self.ex.shutdown(wait=True, cancel_futures=True)
        finally:
            if kill:
                deadline = time.monotonic() + self.GRACE_S
                for p in procs:
                    p.join(timeout=max(0.0, deadline - time.monotonic()))
                for p in procs:
                    if p.is_alive():
                        p.terminate()
                for p in procs:
                    p.join(timeout=5)


# ------------------------------------------------------------------------------------------------ the scan
@dataclass
class _Work:
    """A group that needs more than a stat: what the worker found and what the main process decides."""

    gi: int
    group: PhotoGroup
    states: dict[str, str]  # path -> unchanged | changed | new
    decode: bool
    res: dict[str, Any] | None = None


@dataclass
class _Decision:
    landmark: str | None
    label: str | None
    confidence: float | None
    own_confidence: float | None
    decided_by: str | None
    place: dict[str, str | None]  # country, country_code, region, city
    flat: list[str]
    hier: list[str]


def _row_decision(row: dict[str, Any]) -> _Decision:
    flat, hier = split_ltag_keywords(json.loads(row.get("ltag_keywords") or "[]"))
    return _Decision(row.get("landmark"), row.get("label"), row.get("confidence"), row.get("own_confidence"),
                     row.get("decided_by"),
                     {k: row.get(k) for k in ("country", "country_code", "region", "city")}, flat, hier)


def _place_lists(place: dict[str, str | None]) -> tuple[list[str], list[str]]:
    if not place.get("country"):
        return [], []
    from landmark_tagger import places

    return places.place_keywords(places.Place(place["country"] or "", place.get("country_code") or "",
                                              place.get("region"), place.get("city")))


class Scanner:
    """One scan run. Use :func:`scan`."""

    def __init__(self, catalog: Catalog, *, bundle: Any = None, model_dir: Any = None, write: bool = True,
                 dry_run: bool = False, threshold: float | None = None, sidecar_style: str = "adobe",
                 sidecar_only: bool = False, keep_mtime: bool = False, iptc_location: bool = False,
                 workers: int | None = None, exclude: Iterable[str] = (), retag: bool = False,
                 progress: Callable[[int, int], None] | None = None,
                 on_result: Callable[[FileResult], None] | None = None, providers: list[str] | None = None,
                 user_gallery: Any = None, recognizer: Any = None, batch_size: int = BATCH,
                 sequence: bool | None = None):
        self.disk_catalog = catalog
        self.dry_run = dry_run
        self.catalog = _memory_copy(catalog) if dry_run else catalog
        self._bundle = bundle if bundle is not None else getattr(recognizer, "bundle", None)
        self.model_dir = model_dir
        self.write = write
        self.threshold = threshold
        self.workers = workers if workers and workers > 0 else (os.cpu_count() or 1)
        self.exclude = tuple(exclude)
        self.retag = retag
        self.progress = progress
        self.on_result = on_result
        self.providers = providers
        self.user_gallery = user_gallery
        self.batch_size = batch_size
        if sequence is None:
            from landmark_tagger.sequence import DEFAULT_ENABLED

            sequence = DEFAULT_ENABLED
        self.sequence = sequence
        self.fileops: fsutil.FileOps = fsutil.NoOpFileOps() if dry_run else fsutil.FileOps()
        self.writer_opts = dict(sidecar_style=sidecar_style, sidecar_only=sidecar_only, keep_mtime=keep_mtime,
                                iptc_location=iptc_location)
        self.args = dict(write=write, dry_run=dry_run, threshold=threshold, sidecar_style=sidecar_style,
                         sidecar_only=sidecar_only, keep_mtime=keep_mtime, iptc_location=iptc_location,
                         workers=self.workers, exclude=list(self.exclude), retag=retag, sequence=self.sequence,
                         pid=os.getpid())
        self.counts = _new_counts()
        self.problems: list[FileResult] = []
        self.recognizer: Any = recognizer
        self._recognizer_lock = threading.Lock()
        self._warm_thread: _Daemon | None = None
        self.model_used = False
        self.n_embedded = 0
        self.n_decoded = 0
        self.done = 0
        self.total = 0
        self.moved_away: set[str] = set()

    # -- bundle / model ----------------------------------------------------------------------------
    @property
    def bundle(self) -> Any:
        if self._bundle is None:
            from landmark_tagger.bundle import load_bundle

            # The session opens with the model and the gallery loads with it, in the warm-up thread while the first
            # photos decode (a rescan of unchanged files needs neither).
            self._bundle = load_bundle(self.model_dir, check_model=False, check_gallery=False)
        return self._bundle

    def _get_recognizer(self) -> Any:
        self.model_used = True
        with _held(self._recognizer_lock):  # the warm-up thread may be building it right now
            return self._build_recognizer()

    def _start_warm_up(self) -> None:
        """Start :meth:`_warm_up` in a thread, after importing here, in the main thread, every module it needs:
        an import in a second thread that races the main thread's imports and a Ctrl-C can leave the import lock
        held, deadlocking both threads (seen under load in the Ctrl-C test)."""
        # A Ctrl-C inside onnxruntime's (pybind11) module initialisation surfaces as "ImportError: initialization
        # failed", not as a KeyboardInterrupt: it is held back until the native modules are in.
        with fsutil.deferred_signals():
            import faiss  # noqa: F401
            import onnxruntime  # noqa: F401
        import landmark_tagger.bundle
        import landmark_tagger.paths
        import landmark_tagger.recognizer
        import landmark_tagger.retag
        import landmark_tagger.user_gallery  # noqa: F401

        warm = _Daemon(self._warm_up, "ltag-model-warm-up")
        warm.start()
        self._warm_thread = warm

    def _warm_up(self) -> None:
        """Load the model (onnxruntime session, galleries) in a background thread while the workers decode the
        first photos, so that the first batch does not wait for it. Any error is left for the main thread,
        which builds the recognizer itself (and raises) if this did not."""
        try:
            with self._recognizer_lock:
                self._build_recognizer()
        except Exception:  # noqa: BLE001 - reported by _get_recognizer in the main thread
            log.debug("model warm-up failed", exc_info=True)

    def _build_recognizer(self) -> Any:
        if self.recognizer is None:
            from landmark_tagger.recognizer import Recognizer

            ug = self.user_gallery
            if ug is None:
                ug = _load_user_gallery(self.disk_catalog)
                if ug is not None and hasattr(ug, "bind"):
                    # the bundle's confidence scale; a gallery taught with another model is disabled (warned)
                    ug.bind(self.bundle)
            # With decoding workers on the other cores, one inference thread: onnxruntime's extra intra-op
            # threads would spin-wait between calls on the cores the decoders need. There each photo is embedded
            # alone (see _process), so the session is made for exactly one photo's views (cheaper per image).
            one_by_one = self._embeds_each_photo()
            self.recognizer = Recognizer(self.bundle, threshold=self.threshold, user_gallery=ug,
                                         providers=self.providers, threads=1 if self.workers > 1 else None,
                                         fixed_rows=len(self.bundle.preprocess.views) if one_by_one else None)
        return self.recognizer

    # -- run ------------------------------------------------------------------------------------------
    def _embeds_each_photo(self) -> bool:
        """With one onnxruntime thread beside the decoding workers, each photo is embedded as it arrives, one per
        call, by a session made for one photo's views: the cheapest per photo here (8 ms instead of 11 for a
        dynamic session, 12 for 8 per call, 14 for 16: activations in cache, shapes folded), and only the last
        photo's inference is left once the decoding ends. Decisions, sequence consensus and catalog rows still go
        by batch. On a GPU (or in-process decoding with all cores), the batch is embedded at once."""
        return self.workers > 1 and _cpu_only(self.providers)

    def run(self, paths: Iterable[str | os.PathLike[str]]) -> ScanReport:
        t0 = time.perf_counter()
        paths = [os.fspath(p) for p in paths]
        cat = self.catalog
        if self.workers > 1 and not self.retag:
            # Most scans decode something: the fork server's imports (~0.3 s of CPU on another core) overlap what
            # follows. A rescan with nothing to decode never uses it, and loses no time to it.
            _start_fork_server()
        if not self.dry_run:
            from landmark_tagger.undo import resolve_pending

            resolve_pending(cat)
        model_id = self.bundle.model_id
        # Rows that need nothing more than a stat to be skipped: decided with this model, successfully.
        good = {p: (s, m) for p, s, m in cat.conn.execute(
            "SELECT path, size, mtime_ns FROM photos WHERE model_id = ? AND status IN (?, ?)", (model_id, *DONE))}
        # Folders where nothing changed are only counted by the walk, unless every file must be reported or
        # re-decided.
        fast = self.on_result is None and not self.retag
        gc_was = gc.isenabled()
        gc.disable()  # hundreds of thousands of small objects, no cycles: the cyclic GC only costs time here
        try:
            wr = walk(paths, exclude=self.exclude, known=good if fast else None)
        finally:
            if gc_was:
                gc.enable()
        for folder, names in wr.stale_temps.items():
            self.fileops.remove_stale_temps(folder, names)
        for prob in wr.problems:
            self._emit(FileResult(prob.path, prob.path, "skipped", error=prob.error))
        self.total = wr.n_files + wr.unchanged
        self.counts["unchanged"] += wr.unchanged
        self.done += wr.unchanged
        self.run_id = cat.start_run("scan", {**self.args, "paths": paths, "model_id": model_id})
        self.writer = Writer(cat, self.run_id, self.fileops, **self.writer_opts)
        status = "interrupted"
        try:
            self._scan_groups(wr.groups, model_id, good)
            status = "done"
        finally:
            # An onnxruntime session still being built when the interpreter exits aborts the process: the
            # warm-up always ends before the run does (it was loading the model the scan needed anyway).
            interrupted = self._warm_thread is not None and _join(self._warm_thread)
            summary = {**self.counts, "files": self.total}
            cat.finish_run(self.run_id, summary, status=status)
            if status == "done" and not interrupted:
                from landmark_tagger._entry import finishing

                finishing()  # the run is recorded: a Ctrl-C now is ignored (only under ltag's console script)
            if status != "done":
                # The exception's traceback keeps this scanner alive until the interpreter exits; an onnxruntime
                # session destroyed that late aborts the process ("terminate called ..."). Let it go now (after
                # the warm-up thread, if it is still loading the model).
                with _held(self._recognizer_lock):
                    self.recognizer = None
                self._bundle = None
                gc.collect()
            if interrupted:
                raise KeyboardInterrupt
        return ScanReport(self.run_id, self.counts, self.problems, time.perf_counter() - t0, self.total,
                          dry_run=self.dry_run, planned_writes=list(self.writer.planned), model_id=model_id,
                          model_loaded=self.model_used, embedded=self.n_embedded, decoded=self.n_decoded)

    def _scan_groups(self, groups: list[PhotoGroup], model_id: str, good: dict[str, tuple[int, int]]) -> None:
        cat = self.catalog
        detail: dict[str, tuple[Any, ...]] | None = None
        if self.on_result is not None:
            detail = {r[0]: r[1:] for r in cat.conn.execute(_DETAIL_SQL)}
        work: list[_Work] = []
        unchanged_primaries: list[tuple[PhotoGroup, int]] = []
        get = good.get
        for gi, g in enumerate(groups):
            p = g.primary
            if get(p.path) == (p.size, p.mtime_ns) and (
                    not g.companions or all(get(c.path) == (c.size, c.mtime_ns) for c in g.companions)):
                # unchanged (fast path: one dict lookup per file)
                if self.retag:
                    unchanged_primaries.append((g, 0))
                    continue
                if detail is None and not g.companions:
                    self.counts["unchanged"] += 1
                    self.done += 1
                    if self.progress is not None and not self.done & 1023:
                        self.progress(self.done, self.total)
                    continue
                for e in g.files:
                    self._emit_unchanged(e, g, detail)
                continue
            states: dict[str, str] = {}
            for e in g.files:
                if get(e.path) == (e.size, e.mtime_ns):
                    states[e.path] = "unchanged"
                else:
                    states[e.path] = "changed"  # or new, or failed before, or decided by another model
            # Decode the primary unless its own row still holds a good decision.
            decode = states[g.primary.path] != "unchanged"
            work.append(_Work(gi, g, states, decode))
        del good
        if self.progress is not None:
            self.progress(self.done, self.total)
        if unchanged_primaries:
            ids = dict(cat.conn.execute("SELECT path, id FROM photos WHERE model_id = ?", (model_id,)).fetchall())
            unchanged_primaries = [(g, ids[g.primary.path]) for g, _ in unchanged_primaries]
            self._retag(unchanged_primaries, model_id, detail)
        if work:
            self._process(work, model_id)

    # -- emitting ---------------------------------------------------------------------------------------
    def _emit(self, res: FileResult) -> None:
        self.counts[res.status] += 1
        if res.status in ("failed", "skipped") or res.write_status in ("readonly", "failed"):
            self.problems.append(res)
        if res.write_status == "written":
            self.counts["written"] += 1
        elif res.write_status == "readonly":
            self.counts["readonly"] += 1
        elif res.write_status == "pending":
            self.counts["pending"] += 1
        elif res.write_status == "failed":
            self.counts["write_failed"] += 1
        elif res.write_status == "dry-run":
            self.counts["would_write"] += 1
        if res.status != "skipped":
            self.done += 1
            if self.progress is not None:
                self.progress(self.done, self.total)
        if self.on_result is not None:
            self.on_result(res)

    def _emit_unchanged(self, e: FileEntry, g: PhotoGroup, detail: dict[str, tuple[Any, ...]] | None) -> None:
        if detail is None:  # fast path: counts only
            self.counts["unchanged"] += 1
            self.done += 1
            if self.progress is not None and (self.done & 1023 == 0 or self.done == self.total):
                self.progress(self.done, self.total)
            return
        d = detail.get(e.path)
        landmark, conf, country, region, city, kw, _gk, target = d if d else (None,) * 8
        places = [p for p in (country, region, city) if p]
        self._emit(FileResult(e.path, g.key, "unchanged", landmark, conf, places, json.loads(kw or "[]"),
                              target=target, role="primary" if e is g.primary else "companion"))

    # -- the work ---------------------------------------------------------------------------------------
    def _process(self, work: list[_Work], model_id: str) -> None:
        cat = self.catalog
        # Content of rows decided with this model: reused instead of decoded (moved, copied, touched files).
        # Only the hashes are loaded up front (the workers skip decoding those); rows are fetched by hash on a hit.
        self.reuse = reuse = frozenset(sha for (sha,) in cat.conn.execute(
            "SELECT content_hash FROM photos WHERE content_hash IS NOT NULL AND model_id = ? AND status IN (?, ?)",
            (model_id, *DONE)))
        self.model_id = model_id
        self.seen = {e.path for w in work for e in w.group.files}
        jobs_needed = [w for w in work]
        need_decode = any(w.decode for w in work)
        min_side = spec = None
        if need_decode:
            from landmark_tagger import preprocess

            spec = self.bundle.preprocess
            min_side = preprocess.min_decode_side(spec)
        n_decode = sum(1 for w in work if w.decode)
        pool: Any
        if self.workers <= 1 or n_decode < 4:
            pool = _InProcess(min_side, spec, reuse)
        else:
            # The window covers a whole batch: the workers keep decoding while this thread runs inference. The pool
            # (its fork server) starts before the model warm-up, so that the decoders' imports overlap the model's.
            pool = _Pool(min(self.workers, n_decode), min_side, spec, reuse, window=self.batch_size + 4 * self.workers)
        # Hash what changed, except RAW companions: their decision is their JPEG's, they move with it (matched by
        # name and size, below), ltag never writes them, and hashing 25-50 MB RAWs would cost as much as
        # decoding the JPEG. Their content hash stays NULL (rename hashes them itself).
        jobs = ((w.gi, [(e.path, w.states[e.path] != "unchanged" and e is w.group.primary) for e in w.group.files],
                 [e.path for e in w.group.files] if w.decode else []) for w in jobs_needed)
        by_gi = {w.gi: w for w in work}
        batch: list[_Work] = []
        n_arrays = 0
        # Inference stays in this (main) thread; writing the batch's files (fsync) and committing its rows happen
        # in one writer thread, so that a slow disk does not stall the decoding workers. Only the writer thread
        # touches the catalog while this runs.
        todo: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=2)
        failure: list[BaseException] = []

        def consume() -> None:
            while True:
                item = todo.get()
                if item is None:
                    return
                if failure:
                    continue  # drain: the main thread raises the failure
                try:
                    self._write_batch(*item)
                except BaseException as e:  # noqa: BLE001 - handed to the main thread
                    failure.append(e)

        writer = _Daemon(consume, "ltag-scan-writer")
        writer.start()

        window = _ConsensusWindow(self) if self.sequence else None

        def hand_over(b: list[_Work] | None) -> None:
            """Infer batch ``b`` and queue it for writing; with sequence consensus the batch waits for the next one
            (its later neighbours) and the previous one is queued instead. ``None``: flush the last one."""
            if window is None:
                assert b is not None
                put((b, *self._infer(b), model_id))
                return
            ready = window.push(b, self._infer(b, candidates=True) if b is not None else None)
            if ready is not None:
                put((*ready, model_id))

        def put(item: tuple[Any, ...]) -> None:
            while True:
                if failure:
                    raise failure[0]
                if _offer(todo, item):
                    return

        embed_each = self._embeds_each_photo()
        try:
            # The first window of jobs is submitted here: the workers decode while the model's modules import.
            results = pool.map(jobs)
            if n_decode and self.recognizer is None:
                self._start_warm_up()
            for res in results:
                if failure:
                    raise failure[0]
                w = by_gi.pop(res["gi"])
                w.res = res
                batch.append(w)
                if res["array"] is not None:
                    n_arrays += 1
                    if embed_each:
                        self._embed([w])
                if n_arrays >= self.batch_size or len(batch) >= self.batch_size * 4:
                    hand_over(batch)
                    batch, n_arrays = [], 0
            if batch:
                hand_over(batch)
            if window is not None:
                hand_over(None)
        except BaseException:
            _stop_writer(todo, writer, drain=True)  # finish only the batch being written
            pool.close(kill=True)
            raise
        _stop_writer(todo, writer, drain=False)
        pool.close()
        if failure:
            raise failure[0]

    def _infer(self, batch: list[_Work], candidates: bool = False) -> tuple[list[Any], Any, Any]:
        """Recognise the batch's decoded photos (main thread): (decisions, embeddings, generic features).
        ``candidates``: each photo's best landmark whatever its confidence (for sequence consensus, which then
        applies the threshold)."""
        decoded = [w for w in batch if w.res["array"] is not None]
        if not decoded:
            return [], None, None
        import numpy as np

        rec = self._get_recognizer()
        self._embed([w for w in decoded if "embedding" not in w.res])
        embs = np.stack([w.res.pop("embedding") for w in decoded])
        gens = np.stack([w.res.pop("generic") for w in decoded])
        if candidates:
            from landmark_tagger.retag import candidates as all_candidates

            decisions = all_candidates(rec, embs, gens)
        else:
            decisions = rec.decide(embs, gens)
        for w in batch:
            w.res["array"] = w.res["array"] is not None  # keep only whether it was decoded
        return decisions, embs, gens

    def _embed(self, ws: list[_Work]) -> None:
        """Embed these decoded photos (main thread): their ``embedding`` and ``generic`` rows go into ``res``, and
        their pixels are freed."""
        if not ws:
            return
        from landmark_tagger.preprocess import to_input

        spec = self.bundle.preprocess
        embs, gens = self._get_recognizer().embed([to_input(w.res["array"], spec) for w in ws])
        for w, e, g in zip(ws, embs, gens, strict=True):
            w.res["embedding"], w.res["generic"] = e, g
            w.res["array"] = True  # decoded; the pixels are no longer needed
        self.n_embedded += len(ws)
        self.n_decoded += len(ws)

    def _write_batch(self, batch: list[_Work], decisions: list[Any], embs: Any, gens: Any, model_id: str) -> None:
        """Write keywords for the batch's photos, then commit the batch's rows (writer thread)."""
        k = 0
        rows: list[tuple[dict[str, Any], str | None]] = []  # (row values, moved-from path)
        emb_rows: list[tuple[str, bytes, bytes | None]] = []
        for w in batch:
            dec = emb = gen = None
            if w.res["array"]:
                dec = decisions[k]
                emb = embs[k]
                gen = gens[k] if gens is not None else None
                k += 1
            try:
                new_rows, results = self._finish_group(w, dec, model_id)
            except Exception as exc:  # noqa: BLE001 - one photo's problem never stops the batch
                log.debug("processing %s failed", w.group.primary.path, exc_info=True)
                msg = str(exc) if isinstance(exc, LtagError) else f"{type(exc).__name__}: {exc}"
                new_rows = []
                results = [FileResult(e_.path, w.group.key, "failed", error=msg) for e_ in w.group.files]
            rows.extend(new_rows)
            if emb is not None and w.res["decoded_from"]:
                emb_rows.append((w.group.primary.path, emb.astype("float32").tobytes(),
                                 None if gen is None else gen.astype("float32").tobytes()))
            for r in results:
                self._emit(r)
        self._commit(rows, emb_rows, model_id)

    def _finish_group(self, w: _Work, dec: Any, model_id: str) -> tuple[list[tuple[dict[str, Any], str | None]],
                                                                         list[FileResult]]:
        g, res = w.group, w.res
        assert res is not None
        now = now_iso()
        files = g.files
        rows: list[tuple[dict[str, Any], str | None]] = []
        results: list[FileResult] = []
        # 1. The group's decision: recognised now, or reused from a row with the same content and model.
        decision: _Decision | None = None
        moved: dict[str, dict[str, Any]] = {}
        reused_from: dict[str, dict[str, Any]] = {}
        for e in files:
            sha = res["sha"].get(e.path)
            if sha is None:
                continue
            if sha not in self.reuse:
                continue
            cands = self.catalog.rows("SELECT * FROM photos WHERE content_hash = ? AND model_id = ? AND status IN (?, ?) "
                                      "ORDER BY id", (sha, self.model_id, *DONE))
            if not cands:
                continue
            own = next((c for c in cands if c["path"] == e.path), None)
            if own is not None:
                reused_from[e.path] = own  # touched: same content, new mtime
                continue
            gone = next((c for c in cands if c["path"] not in self.seen and c["path"] not in self.moved_away
                         and not os.path.exists(c["path"])), None)
            if gone is not None:
                moved[e.path] = gone
                self.moved_away.add(gone["path"])
                reused_from[e.path] = gone
            else:
                reused_from[e.path] = cands[0]
        prim = g.primary.path
        if prim in moved and g.companions:
            # The companions of a moved photo moved with it: match the old group's companions by name and size.
            old = moved[prim]
            olds = self.catalog.rows("SELECT * FROM photos WHERE group_key = ? AND role = 'companion'",
                                     (old["group_key"],))
            for e in g.companions:
                if e.path in moved:
                    continue
                m = next((c for c in olds if c["path"] not in self.moved_away and c["size"] == e.size
                          and os.path.splitext(c["name"])[1].casefold() == "." + e.ext.casefold()
                          and not os.path.exists(c["path"])), None)
                if m is not None:
                    moved[e.path] = reused_from[e.path] = m
                    self.moved_away.add(m["path"])
        if dec is not None:
            place = self._place_for(res["facts"].get(res["decoded_from"]) or res["facts"].get(prim))
            pf, ph = _place_lists(place)
            flat, hier = desired_keywords(dec.name if dec.label else None, pf, ph)
            # ``scan --retag`` may hand a consensus-adjusted confidence: the photo's own one is kept apart.
            own = getattr(dec, "own_confidence", None)
            decision = _Decision(dec.name if dec.label else None, dec.label, float(dec.confidence),
                                 float(dec.confidence if own is None else own), dec.source, place, flat, hier)
        elif prim in reused_from:
            decision = _row_decision(reused_from[prim])
        elif w.states[prim] == "unchanged":
            row = self.catalog.photo_by_path(prim)
            decision = _row_decision(row) if row else None
        if decision is None:
            err = res["decode_error"] or res["errors"].get(prim) or "cannot read"
            for e in files:
                rows.append((self._base_row(e, g, res, now) | {"status": "failed", "error": err,
                                                             "write_status": "none"}, None))
                results.append(FileResult(e.path, g.key, "failed", error=err,
                                          role="primary" if e is g.primary else "companion"))
            return rows, results
        # 2. Per file: write (or not) and build the row.
        recognised_now = dec is not None
        cache: dict[str, WriteOutcome] = {}
        status = "tagged" if decision.landmark else "unknown"
        places_flat = [p for p in (decision.place.get("country"), decision.place.get("region"),
                                   decision.place.get("city")) if p]
        for e in files:
            role = "primary" if e is g.primary else "companion"
            st = w.states[e.path]
            if not recognised_now and st == "unchanged":
                continue  # an untouched companion of a group whose decision did not change
            src = reused_from.get(e.path)
            if src is not None and not recognised_now and (e.path in moved or src["path"] == e.path):
                # moved/renamed or touched: the row (and the file's keywords) already match the decision
                row = self._base_row(e, g, res, now)
                rows.append((row, moved[e.path]["path"] if e.path in moved else None))
                if e.path in moved:
                    self.counts["moved"] += 1
                results.append(FileResult(e.path, g.key, "unchanged", src.get("landmark"), src.get("confidence"),
                                          places_flat, json.loads(src.get("ltag_keywords") or "[]"),
                                          target=src.get("write_target"), role=role,
                                          moved_from=moved[e.path]["path"] if e.path in moved else None))
                continue
            prev = self._prev_row(e.path)
            owned_before = json.loads(prev["owned_keywords"]) if prev else []
            suppressed_before = json.loads(prev["suppressed_keywords"]) if prev else []
            row = self._base_row(e, g, res, now) | self._decision_cols(decision, model_id)
            row["status"] = status
            row["error"] = None
            result = FileResult(e.path, g.key, status, decision.landmark, decision.confidence, places_flat,
                                [*decision.flat, *decision.hier], role=role)
            if self.write:
                out = self.writer.write(e.path, e.kind, decision.flat, decision.hier, owned_before=owned_before,
                                        suppressed_before=suppressed_before, props=self._props(decision, model_id),
                                        location=self._location(decision), cache=cache,
                                        known=_known(e, res))
                result.write_status = out.status
                result.target = out.target
                row.update(write_status=out.write_status, write_target=out.target,
                           owned_keywords=json.dumps(out.owned), suppressed_keywords=json.dumps(out.suppressed),
                           keywords=json.dumps(out.flat), hier_keywords=json.dumps(out.hier))
                if out.status == "written":
                    row["written_at"] = now
                    row.update(out.photo_file_columns(e.path))  # the photo itself changed: new stat and hash
                elif out.status == "failed":
                    row.update(status="failed", error=out.error)
                    result.status = "failed"
                    result.error = out.error
                elif out.status == "readonly":
                    result.error = f"{out.error}: keywords not written"
            else:
                target, _ = self.writer.target_for(e.path, e.kind)
                wants = bool(decision.flat or decision.hier or owned_before)
                row.update(write_status="pending" if wants else "none", write_target=target)
                result.write_status = row["write_status"]
                result.target = target
            rows.append((row, moved[e.path]["path"] if e.path in moved else None))
            results.append(result)
        return rows, results

    # -- helpers --------------------------------------------------------------------------------------
    def _prev_row(self, path: str) -> dict[str, Any] | None:
        return self.catalog.photo_by_path(path)

    def _place_for(self, facts: dict[str, Any] | None) -> dict[str, str | None]:
        empty = {"country": None, "country_code": None, "region": None, "city": None}
        if not facts or facts.get("gps_lat") is None or facts.get("gps_lon") is None:
            return empty
        from landmark_tagger import places

        try:
            p = places.resolve(facts["gps_lat"], facts["gps_lon"])
        except Exception as e:  # noqa: BLE001 - a geocoder problem must not fail the photo
            log.warning("reverse geocoding failed: %s", e)
            return empty
        if p is None:
            return empty
        return {"country": p.country, "country_code": p.country_code, "region": p.region, "city": p.city}

    @staticmethod
    def _decision_cols(d: _Decision, model_id: str) -> dict[str, Any]:
        return {"landmark": d.landmark, "label": d.label, "confidence": d.confidence,
                "own_confidence": d.own_confidence, "decided_by": d.decided_by, "model_id": model_id,
                "ltag_keywords": json.dumps([*d.flat, *d.hier]), **d.place}

    @staticmethod
    def _props(d: _Decision, model_id: str) -> dict[str, str]:
        return {"ModelId": model_id, "Landmark": d.landmark or "", "Label": d.label or "",
                "Confidence": "" if d.confidence is None else f"{d.confidence:.4f}"}

    @staticmethod
    def _location(d: _Decision) -> dict[str, str] | None:
        p = d.place
        if not p.get("country"):
            return None
        loc = {"City": p.get("city"), "State": p.get("region"), "Country": p.get("country"),
               "CountryCode": p.get("country_code")}
        return {k: v for k, v in loc.items() if v}

    def _base_row(self, e: FileEntry, g: PhotoGroup, res: dict[str, Any], now: str) -> dict[str, Any]:
        facts = res["facts"].get(e.path) or {}
        row = {"path": e.path, "folder": e.folder, "name": e.name, "stem": e.stem, "ext": e.ext,
               "group_key": g.key, "role": "primary" if e is g.primary else "companion", "kind": e.kind,
               "size": e.size, "mtime_ns": e.mtime_ns, "scanned_at": now}
        if e.path in res["sha"]:
            row["content_hash"] = res["sha"][e.path]
        elif e is not g.primary:
            row["content_hash"] = None  # a RAW companion is not hashed (see _process)
        for k in ("taken_at", "camera_make", "camera_model", "camera", "lens", "gps_lat", "gps_lon", "gps_alt",
                  "width", "height"):
            if k in facts:
                row[k] = facts[k]
        return row

    def _commit(self, rows: list[tuple[dict[str, Any], str | None]], emb_rows: list[tuple[str, bytes, bytes | None]],
                model_id: str) -> None:
        cat = self.catalog
        with cat.transaction() as conn:
            for row, moved_from in rows:
                if moved_from is not None:
                    # The row follows its file: drop a stale row at the new path, then move the old one.
                    conn.execute("DELETE FROM photos WHERE path = ?", (row["path"],))
                    conn.execute("UPDATE photos SET path = ? WHERE path = ?", (row["path"], moved_from))
                _upsert(conn, row)
            for path, emb, gen in emb_rows:
                conn.execute("INSERT OR REPLACE INTO embeddings(photo_id, model_id, embedding, generic) "
                             "VALUES ((SELECT id FROM photos WHERE path = ?), ?, ?, ?)", (path, model_id, emb, gen))

    # -- retag ------------------------------------------------------------------------------------------
    def _retag(self, groups: list[tuple[PhotoGroup, int]], model_id: str,
               detail: dict[str, tuple[Any, ...]] | None) -> None:
        """``--retag``: re-decide unchanged photos from their stored embeddings (no decoding) and write the
        decisions that changed. The re-decision core is ``landmark_tagger.retag.redecide`` when the learn
        module provides it, else the recognizer's own ``decide``."""
        import numpy as np

        ids = [pid for _, pid in groups]
        embs: dict[int, tuple[bytes, bytes | None]] = {}
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            q = ",".join("?" * len(chunk))
            for pid, emb, gen in self.catalog.conn.execute(
                    f"SELECT photo_id, embedding, generic FROM embeddings WHERE model_id = ? AND photo_id IN ({q})",
                    (model_id, *chunk)):
                embs[pid] = (emb, gen)
        rec = self._get_recognizer()
        todo = [(g, pid) for g, pid in groups if pid in embs]
        for g, _pid in [(g, pid) for g, pid in groups if pid not in embs]:
            for e in g.files:
                self._emit_unchanged(e, g, detail)  # no stored embedding: nothing to re-decide from
        decisions: dict[int, Any] = {}
        try:
            from landmark_tagger import retag as retag_mod  # the learn helper's re-decision core
        except ImportError:
            retag_mod = None
        if retag_mod is not None and hasattr(retag_mod, "redecide"):
            decisions = retag_mod.redecide(self.catalog, rec, [pid for _, pid in todo], sequence=self.sequence)
        elif todo:
            e_arr = np.stack([np.frombuffer(embs[pid][0], dtype=np.float32) for _, pid in todo])
            g_arr = None
            if all(embs[pid][1] is not None for _, pid in todo):
                g_arr = np.stack([np.frombuffer(embs[pid][1], dtype=np.float32) for _, pid in todo])
            for (_, pid), d in zip(todo, rec.decide(e_arr, g_arr), strict=True):
                decisions[pid] = d
        batch_rows: list[tuple[dict[str, Any], str | None]] = []
        for g, pid in todo:
            d = decisions.get(pid)
            prow = self.catalog.photo_by_path(g.primary.path)
            if d is None or prow is None or (d.label == prow["label"]):
                for e in g.files:
                    self._emit_unchanged(e, g, detail)
                continue
            fake = {"gi": -1, "sha": {}, "facts": {e.path: {"gps_lat": prow["gps_lat"], "gps_lon": prow["gps_lon"]}
                                                   for e in g.files},
                    "errors": {}, "array": None, "decoded_from": g.primary.path, "decode_error": None}
            w = _Work(-1, g, {e.path: "unchanged" for e in g.files}, False, fake)
            rows, results = self._finish_group(w, d, model_id)
            # keep the stored facts: the retag did not read EXIF
            for row, _ in rows:
                for k in ("taken_at", "camera_make", "camera_model", "camera", "lens", "width", "height"):
                    row.pop(k, None)
            batch_rows.extend(rows)
            for r in results:
                self._emit(r)
            if len(batch_rows) >= 256:
                self._commit(batch_rows, [], model_id)
                batch_rows = []
        if batch_rows:
            self._commit(batch_rows, [], model_id)


class _ConsensusWindow:
    """Sequence consensus inside a scan (``landmark_tagger.sequence``), one batch behind the inference.

    A photo's neighbours are the photos taken within the consensus window; a scan meets a folder's photos in name
    order, which for camera files is capture order, so a batch's later neighbours are in the next batch. A batch is
    therefore decided for good (its candidates' confidences adjusted, then the threshold applied) when the next
    batch has been inferred: its neighbours are the photos of the batch before (kept as ``history``), of its own
    and of the next. Only the photos recognised in this run vote; ``scan --retag`` and ``retag`` consider the
    whole catalog.
    """

    HISTORY = 256

    def __init__(self, scanner: Scanner):
        self.scanner = scanner
        self.pending: tuple[list[_Work], list[Any], Any, Any, list[tuple[Any, ...]]] | None = None
        self.history: collections.deque[tuple[Any, ...]] = collections.deque(maxlen=self.HISTORY)

    @staticmethod
    def _meta(batch: list[_Work]) -> list[tuple[Any, ...]]:
        out = []
        for w in batch:
            # after inference ``array`` only says whether the photo was decoded (True) or not (False / None)
            if w.res is None or w.res["array"] is None or w.res["array"] is False:
                continue
            res = w.res
            facts = res["facts"].get(res["decoded_from"]) or res["facts"].get(w.group.primary.path) or {}
            out.append((facts.get("taken_at"), facts.get("gps_lat"), facts.get("gps_lon")))
        return out

    def push(self, batch: list[_Work] | None, inferred: tuple[list[Any], Any, Any] | None
             ) -> tuple[list[_Work], list[Any], Any, Any] | None:
        """Add an inferred batch (``None``: the end); returns the previous batch with its final decisions."""
        nxt = None
        if batch is not None:
            assert inferred is not None
            nxt = (batch, inferred[0], inferred[1], inferred[2], self._meta(batch))
        prev, self.pending = self.pending, nxt
        if prev is None:
            return None
        b, cands, embs, gens, meta = prev
        if not cands:
            return b, [], embs, gens
        from landmark_tagger.retag import apply_sequence

        later = nxt[1] if nxt is not None else []
        later_meta = nxt[4] if nxt is not None else []
        hist = list(self.history)
        every = [h[0] for h in hist] + list(cands) + list(later)
        metas = [h[1] for h in hist] + meta + later_meta
        rec = self.scanner._get_recognizer()
        final = apply_sequence(every, [m[0] for m in metas], [m[1] for m in metas], [m[2] for m in metas],
                               float(rec.threshold))
        mine = final[len(hist):len(hist) + len(cands)]
        self.scanner.counts["by_sequence"] += sum(1 for d in mine if d.source == "sequence")
        self.history.extend(zip(cands, meta, strict=True))
        return b, mine, embs, gens


def _cpu_only(providers: list[str] | None) -> bool:
    """Whether inference runs on the CPU: no other onnxruntime execution provider was asked for."""
    return all(p == "CPUExecutionProvider" for p in providers or ())


class _Daemon(threading.Thread):
    """A daemon thread that says itself when it has finished (:attr:`finished`, its last step), for :func:`_join`.

    ``Thread.join()`` and ``is_alive()`` are not used to wait through Ctrl-C: in Python < 3.13 a KeyboardInterrupt
    raised inside them can mark a thread that still runs as stopped (CPython gh-90882), and the wait then ends at
    once. The Ctrl-C stress test hit it: the catalog was closed under the writer thread, a segmentation fault."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._fn = target
        self.finished = False

    def run(self) -> None:
        try:
            self._fn()
        finally:
            self.finished = True


def _offer(todo: queue.Queue[Any], item: Any) -> bool:
    """Put ``item`` if there is room now, else wait a moment and say no (main thread). Never waits inside the
    queue's condition: a Ctrl-C there can leave its plain lock released under the other thread."""
    try:
        todo.put_nowait(item)
        return True
    except queue.Full:
        time.sleep(0.005)
        return False


def _stop_writer(todo: queue.Queue[Any], writer: _Daemon, *, drain: bool) -> None:
    """Let the writer thread finish (after the queued batches, or only the one in progress with ``drain``) and wait
    for it, even through another Ctrl-C: a batch's files and rows are never left half done by us."""
    again = False
    if drain:
        while True:
            try:
                todo.get_nowait()
            except queue.Empty:
                break
            except KeyboardInterrupt:
                again = True
    while not writer.finished:
        try:
            if _offer(todo, None):
                break
        except KeyboardInterrupt:
            again = True
    again = _join(writer) or again
    if again and not drain:
        raise KeyboardInterrupt


def _known(e: FileEntry, res: dict[str, Any]) -> tuple[int, int, str] | None:
    """(size, mtime_ns, content hash) of a file the worker hashed, with the walk's stat (the writer re-checks both)."""
    sha = res["sha"].get(e.path)
    return (e.size, e.mtime_ns, sha) if sha else None


def _join(thread: _Daemon) -> bool:
    """Wait for ``thread`` to finish, even through Ctrl-C; returns whether a Ctrl-C came meanwhile (the caller
    decides whether to re-raise it). Polls the thread's own flag in short sleeps (see :class:`_Daemon`)."""
    interrupted = False
    while not thread.finished:
        try:
            time.sleep(0.005)
        except KeyboardInterrupt:
            interrupted = True
    return interrupted


@contextlib.contextmanager
def _held(lock: threading.Lock) -> Iterator[None]:
    """Hold ``lock`` (main thread), waiting for it in short steps: a plain acquire() is not interrupted by a Ctrl-C
    that the kernel delivers to another thread, so the main thread would never see it."""
    while not lock.acquire(timeout=0.1):
        pass
    try:
        yield
    finally:
        lock.release()


def _upsert(conn: sqlite3.Connection, row: dict[str, Any]) -> None:
    cols = list(row)
    sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "path")
    conn.execute(f"INSERT INTO photos ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                 f"ON CONFLICT(path) DO UPDATE SET {sets}", [row[c] for c in cols])


def _memory_copy(catalog: Catalog) -> Catalog:
    """An in-memory copy of the catalog for ``--dry-run`` (the file on disk is never written)."""
    mem = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    catalog.conn.backup(mem)
    mem.execute("PRAGMA foreign_keys=ON")
    cat = Catalog(":memory:", mem)
    cat.source_path = getattr(catalog, "source_path", None) or catalog.path  # type: ignore[attr-defined]
    return cat


def catalog_snapshot(path: str | os.PathLike[str]) -> Catalog:
    """An in-memory copy of the catalog at ``path`` (empty when it does not exist) for ``--dry-run``: the file is
    opened read-only (immutable when no WAL is pending), so not one byte on disk changes, not even a
    ``-wal``/``-shm`` file appears."""
    from urllib.parse import quote

    from landmark_tagger.catalog import ensure_schema, open_catalog
    from landmark_tagger.errors import CatalogError

    p = os.fspath(path)
    if not os.path.exists(p):
        return open_catalog(":memory:")
    if not os.path.isfile(p):
        raise CatalogError(f"Cannot open the catalog {p}: it is not a file. Pass --db FILE to use another one.")
    wal = os.path.exists(p + "-wal")
    mem = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    try:
        src = sqlite3.connect(f"file:{quote(os.path.abspath(p))}?mode=ro" + ("" if wal else "&immutable=1"), uri=True)
        try:
            src.backup(mem)
        finally:
            src.close()
        mem.execute("PRAGMA foreign_keys=ON")
        ensure_schema(mem)
    except sqlite3.DatabaseError as e:
        mem.close()
        raise CatalogError(f"Cannot open the catalog {p}: {e}. Pass --db FILE to use another one.") from e
    cat = Catalog(":memory:", mem)
    cat.source_path = Path(p)  # type: ignore[attr-defined]  # where the user gallery lives
    return cat


def _load_user_gallery(catalog: Catalog) -> Any:
    src = getattr(catalog, "source_path", None) or catalog.path
    if str(src) == ":memory:":
        return None
    from landmark_tagger.paths import user_gallery_path

    p = user_gallery_path(Path(src))
    if not p.exists():
        return None
    from landmark_tagger.user_gallery import UserGallery

    return UserGallery.load(p)


def scan(paths: Iterable[str | os.PathLike[str]], *, catalog: Catalog, bundle: Any = None, model_dir: Any = None,
         write: bool = True, dry_run: bool = False, threshold: float | None = None, sidecar_style: str = "adobe",
         sidecar_only: bool = False, keep_mtime: bool = False, iptc_location: bool = False,
         workers: int | None = None, exclude: Iterable[str] = (), retag: bool = False,
         progress: Callable[[int, int], None] | None = None, on_result: Callable[[FileResult], None] | None = None,
         providers: list[str] | None = None, user_gallery: Any = None, recognizer: Any = None,
         sequence: bool | None = None) -> ScanReport:
    """Scan files and folders: recognise new and changed photos, write their keywords, update the catalog.

    Args:
        paths: files and folders (recursive).
        catalog: the catalog (``dry_run`` works on an in-memory copy of it).
        bundle: a loaded :class:`~landmark_tagger.bundle.Bundle`; default: ``load_bundle(model_dir)``.
        write: write keywords (False: decide and catalog only, ``write_status='pending'``; ``ltag write`` later).
        dry_run: compute everything, change nothing on disk (files and catalog).
        threshold: confidence threshold override (bundle scale).
        sidecar_style: ``'adobe'`` (``DSC_1.xmp``) or ``'darktable'`` (``DSC_1.NEF.xmp``) for new sidecars.
        sidecar_only: never modify an original; JPEGs get sidecars too.
        keep_mtime: keep a rewritten JPEG's modification time.
        iptc_location: fill empty City/State/Country from GPS.
        workers: decoding processes (default ``os.cpu_count()``).
        exclude: glob patterns to skip.
        retag: re-decide unchanged photos from stored embeddings.
        progress: ``progress(done, total)`` callback.
        on_result: called with each file's :class:`FileResult` (``--json``).
        providers: onnxruntime providers (default CPU).
        user_gallery: the user's taught landmarks (default: the one beside the catalog, if any).
        recognizer: a ready :class:`~landmark_tagger.recognizer.Recognizer` to reuse (else made lazily).
        sequence: sequence consensus (photos shot minutes apart vote on each other's landmark; default
            :data:`landmark_tagger.sequence.DEFAULT_ENABLED`). The catalog keeps each photo's own confidence
            (``own_confidence``) beside the adjusted one, and ``decided_by = 'sequence'`` where consensus changed
            whether it is tagged.

    Returns:
        A :class:`ScanReport` (counts, per-file problems, timing).
    """
    s = Scanner(catalog, bundle=bundle, model_dir=model_dir, write=write, dry_run=dry_run, threshold=threshold,
                sidecar_style=sidecar_style, sidecar_only=sidecar_only, keep_mtime=keep_mtime,
                iptc_location=iptc_location, workers=workers, exclude=exclude, retag=retag, progress=progress,
                on_result=on_result, providers=providers, user_gallery=user_gallery, recognizer=recognizer,
                sequence=sequence)
    return s.run(paths)


# ------------------------------------------------------------------------------------------------ ltag write
def write_pending(catalog: Catalog, paths: Iterable[str | os.PathLike[str]] = (), *, dry_run: bool = False,
                  sidecar_style: str = "adobe", sidecar_only: bool = False, keep_mtime: bool = False,
                  iptc_location: bool = False, progress: Callable[[int, int], None] | None = None,
                  on_result: Callable[[FileResult], None] | None = None) -> ScanReport:
    """Write the catalog's decisions that are not in the files yet (``write_status`` pending, readonly, or undone
    by ``ltag undo``),
    for every photo or those under ``paths``. Same safety as a scan: undo record first, atomic replace."""
    t0 = time.perf_counter()
    cat = _memory_copy(catalog) if dry_run else catalog
    if not dry_run:
        from landmark_tagger.undo import resolve_pending

        resolve_pending(cat)
    roots = [os.path.abspath(os.fsdecode(p)) for p in paths]
    rows = cat.rows("SELECT * FROM photos WHERE write_status IN ('pending', 'readonly', 'undone') AND status IN (?, ?) "
                    "ORDER BY path", DONE)
    if roots:
        rows = [r for r in rows if any(r["path"] == p or r["path"].startswith(p.rstrip(os.sep) + os.sep)
                                       for p in roots)]
    fileops: fsutil.FileOps = fsutil.NoOpFileOps() if dry_run else fsutil.FileOps()
    run_id = cat.start_run("write", {"paths": roots, "dry_run": dry_run, "sidecar_style": sidecar_style,
                                     "sidecar_only": sidecar_only, "keep_mtime": keep_mtime, "pid": os.getpid()})
    writer = Writer(cat, run_id, fileops, sidecar_style=sidecar_style, sidecar_only=sidecar_only,
                    keep_mtime=keep_mtime, iptc_location=iptc_location)
    counts = _new_counts()
    problems: list[FileResult] = []
    caches: dict[str, dict[str, WriteOutcome]] = {}
    updates: list[tuple[dict[str, Any], int]] = []
    status = "interrupted"

    def commit() -> None:
        with cat.transaction() as conn:
            for cols, pid in updates:
                conn.execute(f"UPDATE photos SET {', '.join(f'{k} = ?' for k in cols)} WHERE id = ?",
                             [*cols.values(), pid])
        updates.clear()

    try:
        for i, r in enumerate(rows, 1):
            flat, hier = split_ltag_keywords(json.loads(r["ltag_keywords"] or "[]"))
            places = [p for p in (r["country"], r["region"], r["city"]) if p]
            res = FileResult(r["path"], r["group_key"], r["status"], r["landmark"], r["confidence"], places,
                             [*flat, *hier], role=r["role"])
            if not os.path.isfile(r["path"]):
                res.status, res.error, res.write_status = "failed", "file is missing (moved or deleted?)", "failed"
            else:
                place = {k: r[k] for k in ("country", "country_code", "region", "city")}
                d = _Decision(r["landmark"], r["label"], r["confidence"], r["own_confidence"], r["decided_by"],
                              place, flat, hier)
                out = writer.write(r["path"], r["kind"], flat, hier,
                                   owned_before=json.loads(r["owned_keywords"] or "[]"),
                                   suppressed_before=json.loads(r["suppressed_keywords"] or "[]"),
                                   props=Scanner._props(d, r["model_id"] or ""), location=Scanner._location(d),
                                   cache=caches.setdefault(r["group_key"], {}))
                res.write_status = out.status
                res.target = out.target
                cols: dict[str, Any] = {"write_status": out.write_status, "write_target": out.target}
                if out.status == "failed":
                    res.error = out.error
                    res.status = "failed"
                    cols["error"] = out.error
                else:
                    cols.update(owned_keywords=json.dumps(out.owned), suppressed_keywords=json.dumps(out.suppressed),
                                keywords=json.dumps(out.flat), hier_keywords=json.dumps(out.hier))
                    if out.status == "readonly":
                        res.error = f"{out.error}: keywords not written"
                    if out.status == "written":
                        cols["written_at"] = now_iso()
                        cols.update(out.photo_file_columns(r["path"]))
                updates.append((cols, r["id"]))
            counts[res.status if res.status in counts else "failed"] += 1
            ws = res.write_status
            if ws == "dry-run":
                counts["would_write"] += 1
            elif ws == "failed":
                counts["write_failed"] += 1
            elif ws in counts:
                counts[ws] += 1
            if res.status == "failed" or ws in ("readonly", "failed"):
                problems.append(res)
            if on_result is not None:
                on_result(res)
            if progress is not None:
                progress(i, len(rows))
            if len(updates) >= 64:
                commit()
        if updates:
            commit()
        status = "done"
    finally:
        cat.finish_run(run_id, {**counts, "files": len(rows)}, status=status)
    return ScanReport(run_id, counts, problems, time.perf_counter() - t0, len(rows), dry_run=dry_run,
                      planned_writes=list(writer.planned))
