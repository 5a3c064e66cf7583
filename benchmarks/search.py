"""Search latency on a generated 1,000,000-row catalog.

Generates (once; cached in runs/search-bench.db, delete it to regenerate) a catalog with realistic
distributions — Zipf-distributed landmarks with ~35 % unknown, places for ~60 % (GPS), 20 camera
models of which one takes ~50 %, common keywords (one, "travel", on ~50 %), capture dates over 15
years — then prints p50/p95 of the first result page (50 rows) for a query mix through the library
API, the slowdown of the other sorts, the cost of an exact count, and the whole ``ltag search``
command (start-up included).

Usage: nice -n 10 python benchmarks/search.py [--rows 1000000] [--db runs/search-bench.db] [--repeat 15]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from landmark_tagger import search as S  # noqa: E402
from landmark_tagger.catalog import open_catalog  # noqa: E402

LANDMARKS = [
    "Eiffel Tower", "Golden Gate Bridge", "Colosseum", "Big Ben", "Sagrada Família", "Brandenburger Tor",
    "Ilulissat Icefjord", "Hallgrímskirkja", "Taj Mahal", "Sydney Opera House", "Christ the Redeemer",
    "Tower Bridge", "Notre-Dame de Paris", "Neuschwanstein", "Freedom Monument", "Charles Bridge", "Atomium",
    "Matterhorn", "Mont Saint-Michel", "Petronas Towers", "Burj Khalifa", "Angkor Wat", "Machu Picchu",
    "Stonehenge", "Acropolis", "Alhambra", "Kinkaku-ji", "Sensō-ji", "Table Mountain", "CN Tower",
]
PLACES = [
    ("France", "Île-de-France", "Paris"), ("United States", "California", "San Francisco"), ("Italy", "Lazio", "Rome"),
    ("United Kingdom", "England", "London"), ("Spain", "Catalonia", "Barcelona"), ("Germany", "Berlin", "Berlin"),
    ("Greenland", "Qaasuitsup", "Ilulissat"), ("Iceland", "Capital Region", "Reykjavík"), ("India", "Uttar Pradesh", "Agra"),
    ("Australia", "New South Wales", "Sydney"), ("Brazil", "Rio de Janeiro", "Rio de Janeiro"),
    ("Latvia", "Rīga", "Rīga"), ("Czechia", "Prague", "Praha"), ("Belgium", "Brussels", "Brussels"),
    ("Switzerland", "Valais", "Zermatt"), ("Japan", "Kyoto", "Kyōto"), ("Japan", "Tokyo", "Tōkyō"),
    ("Norway", "Vestland", "Bergen"), ("Portugal", "Lisbon", "Lisboa"), ("Poland", "Lesser Poland", "Kraków"),
] + [(f"Country{i}", f"Region{i}", f"Town{i}") for i in range(180)]
CAMERAS = ["Nikon D750"] + ["Nikon D90", "Nikon Z 6", "Canon EOS 5D Mark IV", "Canon EOS R6", "Sony ILCE-7M3",
                            "Fujifilm X-T3", "Olympus E-M1", "Panasonic DC-G9", "Apple iPhone 12", "Apple iPhone 15 Pro",
                            "Google Pixel 7", "Ricoh GR III", "Leica Q2", "Pentax K-1", "Nikon D7500", "Canon EOS 80D",
                            "Sony RX100 VII", "DJI FC3582", "Samsung SM-G991B"]
LENSES = ["AF-S NIKKOR 24-120mm f/4G", "NIKKOR Z 24-70mm f/4 S", "EF24-105mm f/4L IS USM", "FE 24-70mm F2.8 GM",
          "XF16-55mm F2.8", "M.Zuiko 12-40mm F2.8", "iPhone 12 back camera", "50mm f/1.8", "70-200mm f/2.8"]
WORDS = ["family", "holiday", "summer", "winter", "sunset", "architecture", "landscape", "portrait", "snow", "beach",
         "mountains", "city", "night", "friends", "wedding", "birthday", "hiking", "boat", "food", "museum",
         "street", "church", "bridge", "river", "forest", "festival", "market", "castle", "garden", "harbour"]


def zipf_choice(rng: random.Random, items: list, s: float = 1.1):
    weights = [1 / (i + 1) ** s for i in range(len(items))]
    return rng.choices(items, weights=weights, k=1)[0]


def generate(db: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    tmp = db.with_suffix(".tmp")
    for p in (tmp, Path(str(tmp) + "-wal"), Path(str(tmp) + "-shm")):
        p.unlink(missing_ok=True)
    cat = open_catalog(tmp)
    conn = cat.conn
    conn.execute("PRAGMA synchronous=OFF")
    S.drop_search_triggers(conn)
    lm_w = [1 / (i + 1) ** 1.1 for i in range(len(LANDMARKS))]
    pl_w = [1 / (i + 1) ** 0.9 for i in range(len(PLACES))]
    cam_w = [19.0] + [1.0] * 19
    word_w = [1 / (i + 1) ** 0.8 for i in range(len(WORDS))]
    start = 1262304000  # 2010-01-01
    span = 15 * 365 * 86400
    t0 = time.time()
    batch = []
    cols = ("id, path, folder, name, stem, ext, group_key, role, kind, size, taken_at, camera, lens, gps_lat, gps_lon, "
            "country, region, city, landmark, confidence, status, keywords, hier_keywords, write_status")
    sql = f"INSERT INTO photos({cols}) VALUES ({', '.join('?' * 24)})"
    conn.execute("BEGIN")
    for i in range(1, rows + 1):
        ts = start + rng.randrange(span)
        tm = time.gmtime(ts)
        day = time.strftime("%Y-%m-%d", tm)
        folder = f"/photos/{tm.tm_year}/{day} {rng.choice(WORDS)}"
        ext = "NEF" if i % 3 == 0 else "JPG"
        stem = f"DSC_{i:06d}"
        name = f"{stem}.{ext}"
        cam = rng.choices(CAMERAS, weights=cam_w)[0]
        known = rng.random() > 0.35
        landmark = rng.choices(LANDMARKS, weights=lm_w)[0] if known else None
        has_gps = rng.random() < 0.6
        place = PLACES[LANDMARKS.index(landmark) % 20] if (landmark and has_gps) else (
            rng.choices(PLACES, weights=pl_w)[0] if has_gps else (None, None, None))
        kws = set(rng.choices(WORDS, weights=word_w, k=rng.randrange(0, 4)))
        if rng.random() < 0.5:
            kws.add("travel")
        hier = []
        if landmark:
            kws.add(landmark)
            hier.append(f"Landmarks|{landmark}")
        if place[0]:
            kws.update(place)
            hier.append("Places|" + "|".join(place))
        batch.append((i, f"{folder}/{name}", folder, name, stem, ext, f"{folder}/{stem}".casefold(),
                      "companion" if ext == "NEF" else "primary", "raw" if ext == "NEF" else "jpeg", 20_000_000,
                      time.strftime("%Y-%m-%dT%H:%M:%S", tm), cam, rng.choice(LENSES),
                      1.0 if has_gps else None, 1.0 if has_gps else None, place[0], place[1], place[2], landmark,
                      round(rng.betavariate(5, 2), 3) if known else round(rng.random() * 0.4, 3),
                      "tagged" if known else "unknown", json.dumps(sorted(kws)), json.dumps(hier),
                      rng.choices(["written", "pending", "failed", "none"], weights=[90, 2, 0.5, 7.5])[0]))
        if len(batch) >= 20000:
            conn.executemany(sql, batch)
            batch.clear()
    if batch:
        conn.executemany(sql, batch)
    conn.execute("COMMIT")
    t1 = time.time()
    print(f"generated {rows:,} rows in {t1 - t0:.1f} s; building the index ...", file=sys.stderr)
    S.rebuild_search_index(conn)
    conn.execute("INSERT INTO photos_fts(photos_fts) VALUES('optimize')")
    conn.execute("INSERT INTO runs(kind, started_at, finished_at, status) VALUES('scan', '2025-01-01', '2025-01-01', 'done')")
    print(f"index built in {time.time() - t1:.1f} s", file=sys.stderr)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cat.close()
    os.replace(tmp, db)


QUERIES: list[tuple[str, str | None, dict]] = [
    ("selective term", "Hallgrímskirkja", {}),
    ("selective, diacritics", "reykjavik", {}),
    ("broad camera (~50%)", "D750", {}),
    ("broad word (~50%)", "travel", {}),
    ("broad AND broad", "travel nikon", {}),
    ("2-letter prefix", "ni", {}),
    ("prefix", "eiff", {}),
    ("phrase", '"golden gate"', {}),
    ("OR", "paris OR london", {}),
    ("NOT", "travel -nikon", {}),
    ("all photos", None, {}),
    ("broad + --since", "travel", {"since": "2016-01-01", "until": "2016-12-31"}),
    ("--unknown", None, {"unknown": True}),
    ("--unwritten", None, {"unwritten": True}),
    ("--camera", None, {"camera": ["Nikon D90"]}),
    ("--landmark", None, {"landmark": ["Eiffel Tower"]}),
    ("--place", "sunset", {"place": ["Japan"]}),
    ("--min-confidence 0.9", "travel", {"min_confidence": 0.9}),
    ("--folder (old year)", "travel", {"folder": "/photos/2011"}),
]


CPU: list[float] = []   # CPU time of every default-sort measurement (immune to other processes' load)


def timed(fn, repeat: int, warm: bool = True, cpu: list[float] | None = None) -> list[float]:
    """Wall-clock milliseconds of ``repeat`` calls (CPU milliseconds appended to ``cpu``)."""
    if warm:
        fn()
    out = []
    for _ in range(repeat):
        c = time.process_time()
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
        if cpu is not None:
            cpu.append((time.process_time() - c) * 1000)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--db", type=Path, default=ROOT / "runs" / "search-bench.db")
    ap.add_argument("--repeat", type=int, default=25)
    args = ap.parse_args()
    args.db.parent.mkdir(parents=True, exist_ok=True)
    if not args.db.exists():
        generate(args.db, args.rows)
    cat = open_catalog(args.db)
    n = cat.conn.execute("SELECT count(*) FROM photos").fetchone()[0]
    print(f"catalog: {args.db} ({n:,} rows, {args.db.stat().st_size / 1e6:.0f} MB)")
    print(f"{'query':28} {'matches':>9} {'date p50':>9} {'p95 ms':>7} {'conf p50':>9} {'path ms':>9} {'count ms':>9}")
    all_date: list[float] = []
    all_other: dict[str, list[float]] = {"confidence": [], "path": []}
    for label, q, kw in QUERIES:
        d = timed(lambda q=q, kw=kw: S.search(cat, q, limit=50, **kw), args.repeat, cpu=CPU)
        all_date += d
        c = timed(lambda q=q, kw=kw: S.search(cat, q, limit=50, sort="confidence", **kw), 3)
        p = timed(lambda q=q, kw=kw: S.search(cat, q, limit=50, sort="path", **kw), 1, warm=False)
        all_other["confidence"] += c
        all_other["path"] += p
        t = time.perf_counter()
        total = S.count(cat, q, **kw)
        cnt_ms = (time.perf_counter() - t) * 1000
        print(f"{label:28} {total:>9,} {pct(d, .5):>9.2f} {pct(d, .95):>7.2f} {pct(c, .5):>9.1f} {pct(p, .5):>9.1f} "
              f"{cnt_ms:>9.1f}")
    print(f"\ndefault sort (date, newest first), first page of 50, all queries: wall p50 {pct(all_date, .5):.2f} ms, "
          f"p95 {pct(all_date, .95):.2f} ms, max {max(all_date):.2f} ms; CPU p50 {pct(CPU, .5):.2f} ms, "
          f"p95 {pct(CPU, .95):.2f} ms, max {max(CPU):.2f} ms")
    print(f"(machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: wall-clock tails include "
          f"waiting for a core)")
    for s, xs in all_other.items():
        print(f"sort {s}: p50 {pct(xs, .5):.0f} ms, p95 {pct(xs, .95):.0f} ms "
              f"({pct(xs, .5) / pct(all_date, .5):.0f}x the date sort's p50)")
    cmd = [sys.executable, "-m", "landmark_tagger", "search", "--db", str(args.db), "--paths", "--limit", "50", "travel"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run(cmd, capture_output=True, env=env)
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, env=env)
        runs.append((time.perf_counter() - t) * 1000)
    print(f"whole command `ltag search --paths --limit 50 travel` (start-up included): median {statistics.median(runs):.0f} ms "
          f"(rc {r.returncode}, {len(r.stdout.splitlines())} lines)")
    help_runs = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "landmark_tagger", "--help"], capture_output=True, env=env)
        help_runs.append((time.perf_counter() - t) * 1000)
    print(f"(for reference, `ltag --help`: median {statistics.median(help_runs):.0f} ms)")


if __name__ == "__main__":
    main()
