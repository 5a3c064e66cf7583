"""Keyword-write throughput on 24 MP JPEGs: ltag's writer against exiftool -stay_open.

Both write the same keywords (3 flat into IPTC Keywords + XMP dc:subject, 2 hierarchical into
XMP lr:hierarchicalSubject) to fresh copies of the same files:

* ltag, in process, per file: read the JPEG's head (up to the image data), read the keyword state, plan
  (ownership policy), rewrite the XMP/APP13 segments, atomic write (sibling temp file with the new head and
  the original image data copied in the kernel, fsync, rename, directory fsync) -- what ``ltag scan`` does
  per photo, minus the undo record.
* ltag Writer: ``writer.Writer.write`` itself, as ``ltag scan`` calls it: the above plus the undo record
  (delta of the heads, content hashes before/after, committed to a catalog before the replace).
* ltag, whole file: the same but reading the whole file into memory and writing all of it back
  (``fsutil.atomic_write(path, data)`` without ``tail_from``).
* exiftool: one ``-stay_open`` process fed one command per file (``-overwrite_original``: exiftool's own
  temp file + rename; it does not fsync).

Several rounds alternate the two on fresh copies; the median round is reported.

Usage::

    python benchmarks/write.py             # 20 photos from benchmarks/archive.py (generated if needed)
    python benchmarks/write.py -n 10 --rounds 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

FLAT = ["Taj Mahal", "Agra", "India"]
HIER = ["Landmarks|Taj Mahal", "Places|India|Uttar Pradesh|Agra"]


def source_photos(n: int) -> list[Path]:
    """``n`` 24 MP camera-like JPEGs: from the scan benchmark's archive if it is there, else generated."""
    import archive  # benchmarks/archive.py

    cached = archive.DEFAULT_DEST / archive.MANIFEST
    if cached.is_file():
        import json

        manifest = json.loads(cached.read_text())
        paths = archive.photo_paths(manifest)[:n]
        if len(paths) == n and all(p.is_file() for p in paths):
            return paths
    dest = ROOT / "runs" / "bench-write-archive"
    manifest = archive.make_archive(dest, n=n, raw_pairs=0)
    return archive.photo_paths(manifest, dest)


def copies(src: list[Path], dest: Path) -> list[Path]:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    out = []
    for i, p in enumerate(src):
        target = dest / f"{i:03d}_{p.name}"
        shutil.copyfile(p, target)
        out.append(target)
    subprocess.run(["sync"], check=False)
    return out


def run_ltag(paths: list[Path]) -> float:
    from landmark_tagger import fsutil, metadata
    from landmark_tagger.keywords import plan

    t0 = time.perf_counter()
    for p in paths:
        with open(p, "rb") as f:
            head = metadata.read_jpeg_head(f)
            edit = plan(metadata.read_jpeg_keywords(head), FLAT, HIER).edit
            fsutil.atomic_write(p, metadata.rewrite_jpeg(head, edit), tail_from=(f.fileno(), len(head)))
    return time.perf_counter() - t0


def run_ltag_writer(paths: list[Path], work: Path) -> float:
    """``writer.Writer.write``, the real path ``ltag scan`` takes: keyword plan, undo record committed to a
    catalog first (delta + before/after content hashes), then the head-only atomic write."""
    from landmark_tagger.catalog import open_catalog
    from landmark_tagger.writer import Writer

    db = work / "writer-catalog" / "catalog.db"
    shutil.rmtree(db.parent, ignore_errors=True)
    cat = open_catalog(db)
    try:
        w = Writer(cat, cat.start_run("write", {}))
        t0 = time.perf_counter()
        for p in paths:
            out = w.write(str(p), "jpeg", FLAT, HIER, owned_before=[], suppressed_before=[],
                          props={"ModelId": "bench", "Landmark": FLAT[0], "Confidence": "0.9100"})
            if out.status != "written":
                raise RuntimeError(f"writer did not write {p}: {out.status} {out.error}")
        return time.perf_counter() - t0
    finally:
        cat.close()


def run_ltag_whole(paths: list[Path]) -> float:
    from landmark_tagger import fsutil, metadata
    from landmark_tagger.keywords import plan

    t0 = time.perf_counter()
    for p in paths:
        data = p.read_bytes()
        edit = plan(metadata.read_jpeg_keywords(data), FLAT, HIER).edit
        fsutil.atomic_write(p, metadata.rewrite_jpeg(data, edit))
    return time.perf_counter() - t0


class ExifTool:
    """One exiftool -stay_open process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["exiftool", "-stay_open", "True", "-@", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def execute(self, *args: str) -> str:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(("\n".join(args) + "\n-execute\n").encode("utf-8"))
        self.proc.stdin.flush()
        out = b""
        while not out.endswith(b"{ready}\n"):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("exiftool exited")
            out += line
        return out.decode("utf-8", "replace")

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(b"-stay_open\nFalse\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)


def run_exiftool(et: ExifTool, paths: list[Path]) -> float:
    args = ["-overwrite_original", "-charset", "iptc=UTF8", "-IPTC:CodedCharacterSet=UTF8"]
    args += [f"-IPTC:Keywords+={k}" for k in FLAT] + [f"-XMP-dc:Subject+={k}" for k in FLAT]
    args += [f"-XMP-lr:HierarchicalSubject+={k}" for k in HIER]
    t0 = time.perf_counter()
    for p in paths:
        out = et.execute(*args, str(p))
        if "1 image files updated" not in out:
            raise RuntimeError(f"exiftool did not update {p}: {out}")
    return time.perf_counter() - t0


def check_same_keywords(a: Path, b: Path) -> None:
    """Both writers produced the same keywords (read back by exiftool)."""
    import json

    out = subprocess.run(
        ["exiftool", "-j", "-Keywords", "-Subject", "-HierarchicalSubject", str(a), str(b)],
        capture_output=True,
        check=True,
    ).stdout
    ra, rb = json.loads(out)
    for k in ("Keywords", "Subject", "HierarchicalSubject"):
        if ra.get(k) != rb.get(k):
            raise RuntimeError(f"keywords differ in {k}: ltag {ra.get(k)} vs exiftool {rb.get(k)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20, help="number of 24 MP photos")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-write", help="scratch folder")
    args = ap.parse_args()
    if shutil.which("exiftool") is None:
        sys.exit("exiftool not found (apt install libimage-exiftool-perl)")

    src = source_photos(args.n)
    size = sum(p.stat().st_size for p in src)
    print(f"{len(src)} JPEGs, {size / len(src) / 1e6:.1f} MB average, 6000x4000", flush=True)
    et = ExifTool()
    ltag_times, whole_times, et_times, writer_times = [], [], [], []
    try:
        for r in range(args.rounds):
            lt = copies(src, args.work / "ltag")
            ltag_times.append(run_ltag(lt))
            wr = copies(src, args.work / "writer")
            writer_times.append(run_ltag_writer(wr, args.work))
            wh = copies(src, args.work / "whole")
            whole_times.append(run_ltag_whole(wh))
            ex = copies(src, args.work / "exiftool")
            et_times.append(run_exiftool(et, ex))
            if r == 0:
                check_same_keywords(lt[0], ex[0])
                if lt[0].read_bytes() != wh[0].read_bytes():
                    raise RuntimeError("head-only and whole-file writes differ")
            print(
                f"round {r + 1}: ltag {len(src) / ltag_times[-1]:.1f} files/s, "
                f"ltag Writer {len(src) / writer_times[-1]:.1f} files/s, "
                f"ltag whole-file {len(src) / whole_times[-1]:.1f} files/s, "
                f"exiftool {len(src) / et_times[-1]:.1f} files/s",
                flush=True,
            )
    finally:
        et.close()
        shutil.rmtree(args.work, ignore_errors=True)
    lt_fps = len(src) / statistics.median(ltag_times)
    wh_fps = len(src) / statistics.median(whole_times)
    wr_fps = len(src) / statistics.median(writer_times)
    et_fps = len(src) / statistics.median(et_times)
    print(f"ltag writer (head read + rewrite + atomic write, fsync):     {lt_fps:.1f} files/s")
    print(f"ltag Writer.write (+ undo record, hashes, catalog):     {wr_fps:.1f} files/s  ({wr_fps / et_fps:.2f}x)")
    print(f"ltag writer, whole file in memory (atomic write, fsync):    {wh_fps:.1f} files/s")
    print(f"exiftool -stay_open (same keywords, same files, no fsync):  {et_fps:.1f} files/s")
    print(f"ratio ltag / exiftool: {lt_fps / et_fps:.2f}x (whole-file path {wh_fps / et_fps:.2f}x)")


if __name__ == "__main__":
    main()
