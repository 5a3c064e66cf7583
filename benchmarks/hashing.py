"""Content-hash cost on the scan benchmark's archive: XXH3-128 (ltag's content hash) against SHA-256 (before).

Per file kind, the median over the archive's files of the hash of bytes already in memory (how a scan worker hashes
a JPEG it decodes from the same buffer) and of a streamed file (how a RAW, and undo/rename, hash), single thread.

    python benchmarks/hashing.py [-n 20]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _ms(fn, repeat: int = 3) -> float:
    fn()
    best = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t)
    return 1000 * min(best)


def main(argv: list[str] | None = None) -> int:
    from archive import DEFAULT_DEST, all_files, make_archive

    from landmark_tagger import fsutil

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20, help="files of each kind to time (default 20)")
    args = ap.parse_args(argv)
    files = [Path(p) for p in all_files(make_archive(DEFAULT_DEST), DEFAULT_DEST)]
    for kind, ext in (("JPEG", ".jpg"), ("NEF", ".nef")):
        chosen = [p for p in files if p.suffix.lower() == ext][: args.n]
        if not chosen:
            continue
        mb = statistics.median(p.stat().st_size for p in chosen) / 1e6
        rows = {"XXH3-128": ([], []), "SHA-256": ([], [])}
        for p in chosen:
            data = p.read_bytes()
            rows["XXH3-128"][0].append(_ms(lambda d=data: fsutil.content_hash(d)))
            rows["SHA-256"][0].append(_ms(lambda d=data: hashlib.sha256(d).hexdigest()))
            rows["XXH3-128"][1].append(_ms(lambda q=p: fsutil.content_hash_file(q)))
            rows["SHA-256"][1].append(_ms(lambda q=p: fsutil.sha256_file(q)))
        print(f"{kind} ({len(chosen)} files, median {mb:.1f} MB):")
        for name, (mem, stream) in rows.items():
            print(f"  {name:9s} in memory {statistics.median(mem):6.2f} ms   streamed from the page cache "
                  f"{statistics.median(stream):6.2f} ms")
        ratio = statistics.median(rows["SHA-256"][0]) / statistics.median(rows["XXH3-128"][0])
        print(f"  SHA-256 / XXH3-128 in memory: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
