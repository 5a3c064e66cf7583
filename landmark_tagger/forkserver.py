"""The decoding workers' fork server (standard library only, so that it can start before anything else imports).

``ltag scan`` decodes photos in worker processes forked from a multiprocessing fork server: a clean, single-threaded
process that imports the decoding modules once for every worker (a plain fork after onnxruntime's threads exist can
deadlock; spawn would re-import everything in each worker). Those imports take ~0.3 s of CPU. The console script
starts the server first thing for ``ltag scan`` (:func:`start_for_argv`), so that they run on another core while the
CLI itself imports and opens the catalog; :class:`landmark_tagger.scan.Scanner` starts it too (a no-op when it runs
already) for library callers.
"""

from __future__ import annotations

from typing import Any

#: What each decoding worker needs, imported once in the server.
PRELOAD = ["landmark_tagger.scan", "landmark_tagger.decode", "landmark_tagger.exif", "landmark_tagger.preprocess",
           "rawpy", "exifread", "numpy", "PIL.Image"]


def start() -> Any:
    """Start the fork server (without waiting for its imports) and return its multiprocessing context, or None where
    there is no fork server (spawn is used then). Calling it again is free."""
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return None
    from multiprocessing import forkserver

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()
    return ctx


def start_for_argv(argv: list[str]) -> None:
    """Start the server when ``argv`` (the arguments after ``ltag``) is a scan that will likely decode: not
    ``--help``, ``--retag`` (re-decides from stored embeddings) or ``--workers 1`` (decodes in its own process).
    A guess from the raw arguments: typer parses them properly later, and a scan that needs the server and did not
    get it here starts it itself."""
    if not argv or argv[0] != "scan" or "--help" in argv or "-h" in argv or "--retag" in argv:
        return
    for i, a in enumerate(argv):
        if a == "--workers" and argv[i + 1:i + 2] == ["1"] or a == "--workers=1":
            return
    try:
        start()
    except Exception:  # noqa: BLE001 - an optimisation only: the scan starts it (or reports why not) itself
        pass
