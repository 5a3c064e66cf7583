"""Decode speed on the benchmark archive: the ceiling a scan can reach, and what a naive pipeline gets.

* decode-only ceiling: ``decode.decode_for_model`` (JPEG DCT-scaled with Pillow ``draft``, RAW embedded preview,
  EXIF orientation) + resize to the model's input, over the whole archive on all cores (a process pool);
* naive pipeline: full-resolution decode + EXIF transpose + resize, one image at a time (what a script using
  ``Image.open(p).convert('RGB').resize(...)`` does);
* per-file cost on one core (CPU time, so that a busy machine does not inflate it): draft vs full decode of a
  24 MP JPEG, the naive path, a NEF's embedded preview, and the NEF's half-size demosaic (the fallback ltag uses
  only without a preview).

The throughput figures are wall-clock and share the machine with whatever else runs: the load average is printed.

``benchmarks/scan.py`` builds on :func:`decode_ceiling` and :func:`naive_decode`.

Usage::

    python benchmarks/decode.py                      # the default archive (made once, see archive.py)
    python benchmarks/decode.py --workers 2 --naive-limit 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from archive import DEFAULT_DEST, all_files, make_archive, photo_paths  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from landmark_tagger.decode import decode_for_model, file_kind  # noqa: E402
from landmark_tagger.errors import UnsupportedImageError  # noqa: E402


def _decode_and_resize(args: tuple[str, int]) -> bool:
    path, min_side = args
    try:
        img = decode_for_model(path, min_side)
    except UnsupportedImageError:
        return False
    img.resize((min_side, min_side), Image.Resampling.BILINEAR)
    return True


def _warm(_: int) -> int:
    return os.getpid()


def decode_ceiling(paths: Sequence[str | Path], min_side: int = 224, workers: int | None = None) -> dict[str, Any]:
    """Decode + resize every file with a process pool; the pool is started (and warmed) before timing.

    Returns ``{"files", "failed", "seconds", "files_per_s", "workers", "min_side"}``.
    """
    workers = workers or os.cpu_count() or 1
    ctx = get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(workers) as pool:
        pool.map(_warm, range(workers * 4))
        t0 = time.perf_counter()
        ok = list(pool.imap_unordered(_decode_and_resize, [(str(p), min_side) for p in paths], chunksize=1))
        seconds = time.perf_counter() - t0
    return {"files": len(ok), "failed": ok.count(False), "seconds": seconds,
            "files_per_s": len(ok) / seconds if seconds else float("inf"), "workers": workers, "min_side": min_side}


def _naive_one(path: Path, size: int) -> None:
    if file_kind(path) == "raw":
        import rawpy

        with rawpy.imread(str(path)) as raw:
            img = Image.fromarray(raw.postprocess())
    else:
        with Image.open(path) as im:
            img = ImageOps.exif_transpose(im.convert("RGB"))
    img.resize((size, size), Image.Resampling.BILINEAR)


def naive_decode(paths: Sequence[str | Path], size: int = 224) -> dict[str, Any]:
    """Full decode + orientation + resize, one image at a time, in this process.

    Returns ``{"files", "failed", "seconds", "files_per_s", "size"}``.
    """
    failed = 0
    t0 = time.perf_counter()
    for p in paths:
        try:
            _naive_one(Path(p), size)
        except Exception:
            failed += 1
    seconds = time.perf_counter() - t0
    return {"files": len(paths), "failed": failed, "seconds": seconds,
            "files_per_s": len(paths) / seconds if seconds else float("inf"), "size": size}


def _median_cpu_ms(fn: Any, repeats: int) -> float:
    """Median CPU time of ``fn()`` in ms: on a shared machine, CPU time is what one core would take alone."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times) * 1000


def per_file_latency(jpegs: Sequence[Path], raws: Sequence[Path], min_side: int = 224,
                     repeats: int = 3) -> dict[str, float]:
    """Median single-core CPU milliseconds per file for each decode path (a few files, a few repeats each)."""
    out: dict[str, float] = {}

    def full(p: Path) -> None:
        with Image.open(p) as im:
            im.load()

    def med(fn: Any, files: Sequence[Path]) -> float:
        return statistics.median(_median_cpu_ms(lambda p=p: fn(p), repeats) for p in files)

    sample = list(jpegs[:5])
    if sample:
        out["jpeg_draft_ms"] = med(lambda p: _decode_and_resize((str(p), min_side)), sample)
        out["jpeg_full_ms"] = med(full, sample)
        out["jpeg_naive_ms"] = med(lambda p: _naive_one(p, min_side), sample)
    rsample = list(raws[:3])
    if rsample:
        import rawpy

        out["raw_preview_ms"] = med(lambda p: _decode_and_resize((str(p), min_side)), rsample)

        def demosaic(p: Path) -> None:
            with rawpy.imread(str(p)) as raw:
                raw.postprocess(half_size=True, use_camera_wb=True)

        out["raw_demosaic_half_ms"] = _median_cpu_ms(lambda: demosaic(rsample[0]), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="benchmark archive (made if missing)")
    ap.add_argument("-n", type=int, default=200, help="photos in the archive")
    ap.add_argument("--raw-pairs", type=int, default=40)
    ap.add_argument("--min-side", type=int, default=224, help="model input side")
    ap.add_argument("--workers", type=int, default=None, help="processes for the ceiling (default: all cores)")
    ap.add_argument("--naive-limit", type=int, default=None, help="time the naive pipeline on this many files only")
    args = ap.parse_args(argv)

    manifest = make_archive(args.dest, args.n, raw_pairs=args.raw_pairs)
    jpegs = photo_paths(manifest, args.dest)
    raws = [p for p in all_files(manifest, args.dest) if file_kind(p) == "raw"]
    mean_mb = statistics.mean(p["jpeg_bytes"] for p in manifest["photos"]) / 1e6
    print(f"archive: {args.dest} — {len(jpegs)} JPEG 6000x4000 (mean {mean_mb:.1f} MB), {len(raws)} NEF")
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.1f}")

    lat = per_file_latency(jpegs, raws, args.min_side)
    if "jpeg_draft_ms" in lat:
        print(f"per 24 MP JPEG, 1 core (CPU time): draft decode + resize to {args.min_side}: "
              f"{lat['jpeg_draft_ms']:.0f} ms; full decode alone: {lat['jpeg_full_ms']:.0f} ms; "
              f"naive (full decode + orientation + resize): {lat['jpeg_naive_ms']:.0f} ms "
              f"({lat['jpeg_naive_ms'] / lat['jpeg_draft_ms']:.1f}x the draft path)")
    if "raw_preview_ms" in lat:
        print(f"per NEF, 1 core (CPU time): embedded preview + resize: {lat['raw_preview_ms']:.0f} ms; "
              f"half-size demosaic (fallback only): {lat['raw_demosaic_half_ms']:.0f} ms")

    ceiling = decode_ceiling(jpegs, args.min_side, args.workers)
    print(f"decode-only ceiling (draft + resize to {args.min_side}, {ceiling['workers']} processes): "
          f"{ceiling['files_per_s']:.2f} files/s ({ceiling['files']} files in {ceiling['seconds']:.1f} s, "
          f"{ceiling['failed']} failed)")
    naive_paths = jpegs[: args.naive_limit] if args.naive_limit else jpegs
    naive = naive_decode(naive_paths, args.min_side)
    print(f"naive pipeline (full decode + resize, one at a time): {naive['files_per_s']:.2f} files/s "
          f"({naive['files']} files in {naive['seconds']:.1f} s)")
    print(f"ratio ceiling / naive: {ceiling['files_per_s'] / naive['files_per_s']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
