"""Generate a realistic benchmark archive: 24 MP camera-like JPEGs, some with a NEF beside them.

What a photographer's card dump looks like, as far as decode/scan speed is concerned:

* ``DSC_0001.JPG`` ... in nested date folders (``2023/2023-10-02/``), taken in sessions of 5-25 shots of one
  landmark, numbered consecutively across sessions as a camera does.
* 6000 x 4000 pixels (24 MP, Nikon D7100/D5300 class), baseline JPEG at quality 92-95 with 4:2:0 chroma
  subsampling as cameras write it, ~9-12 MB each. The pictures are the landmark photos of
  ``shared/data/landmarks`` (at most 448 px) upscaled to 24 MP, with sensor-like noise added (per-pixel
  luminance noise plus half-resolution chroma noise) so that the JPEG entropy — and so file size and decode
  cost — are those of a real camera file rather than of a smooth upscale.
* Portrait shots are stored as the camera stores them: landscape pixels plus EXIF Orientation 6 or 8.
* EXIF: Make, Model, DateTime/DateTimeOriginal/Digitized, exposure, lens, Orientation; GPS (the landmark's
  position, jittered by ~100 m) for about 40 % of the sessions (a phone-linked camera).
* RAW+JPEG pairs: ``raw_pairs`` photos also get a ``DSC_XXXX.NEF``. It has the structure of an *uncompressed*
  12-bit NEF (TIFF/EP: IFD0 with a 160x120 RGB thumbnail and the EXIF/GPS IFDs, SubIFD0 with a full-size
  6000x4000 JPEG preview, SubIFD1 with the 12-bit packed RGGB CFA data), Make ``NIKON CORPORATION``, Model
  ``NIKON D7100``. LibRaw reads it as a Nikon NEF: ``extract_thumb`` returns the JPEG preview and
  ``postprocess`` demosaics the CFA data (colours are off — there is no maker note with white balance and the
  CFA data is linear sRGB rather than D7100 sensor space). ~38 MB each, in the range of real uncompressed NEFs.

A manifest ``.bench-manifest.json`` (a hidden file: scans skip it) records each photo's label, files, GPS and
orientation. The archive is generated once and cached: calling :func:`make_archive` again with the same
parameters returns the manifest at once. Default location: ``<repo>/runs/bench-archive`` (git-ignored).

Usage::

    python benchmarks/archive.py                 # 200 photos, 40 with a NEF, into runs/bench-archive
    python benchmarks/archive.py -n 50 --raw-pairs 10 --dest /tmp/small-archive
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import struct
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEST = REPO_ROOT / "runs" / "bench-archive"
DEFAULT_LANDMARKS = REPO_ROOT.parent / "shared" / "data" / "landmarks"
MANIFEST = ".bench-manifest.json"
FORMAT_VERSION = 1

WIDTH, HEIGHT = 6000, 4000
LUMA_SIGMA = 5.5  # per-pixel luminance noise (8-bit levels): an APS-C sensor at ISO 400-800 after processing
CHROMA_SIGMA = 3.5  # half-resolution colour noise
_BANK_MARGIN = 512

# Approximate positions of the 24 landmarks (WGS84), for GPS-tagged sessions.
LANDMARK_COORDS: dict[str, tuple[float, float]] = {
    "ajanta_caves": (20.5519, 75.7033),
    "alai_darwaza": (28.5243, 77.1855),
    "alai_minar": (28.5250, 77.1848),
    "basilica_of_bom_jesus": (15.5009, 73.9116),
    "charar_e_sharif": (33.8617, 74.7667),
    "charminar": (17.3616, 78.4747),
    "chhota_imambara": (26.8728, 80.9067),
    "ellora_caves": (20.0268, 75.1771),
    "fatehpur_sikri": (27.0945, 77.6679),
    "gateway_of_india": (18.9220, 72.8347),
    "golden_temple": (31.6200, 74.8765),
    "hawa_mahal": (26.9239, 75.8267),
    "humayuns_tomb": (28.5933, 77.2507),
    "india_gate": (28.6129, 77.2295),
    "iron_pillar": (28.5246, 77.1851),
    "jamali_kamali_tomb": (28.5197, 77.1863),
    "khajuraho": (24.8318, 79.9199),
    "lotus_temple": (28.5535, 77.2588),
    "mysore_palace": (12.3052, 76.6552),
    "qutub_minar": (28.5245, 77.1855),
    "sun_temple_konark": (19.8876, 86.0945),
    "taj_mahal": (27.1751, 78.0421),
    "thanjavur_temple": (10.7828, 79.1318),
    "victoria_memorial": (22.5448, 88.3426),
}

CAMERAS = [  # (Make, Model, LensModel, focal range mm)
    ("NIKON CORPORATION", "NIKON D7100", "18.0-105.0 mm f/3.5-5.6", (18, 105)),
    ("NIKON CORPORATION", "NIKON D5300", "18.0-55.0 mm f/3.5-5.6", (18, 55)),
]


@dataclass(frozen=True)
class _Job:
    index: int
    number: int  # DSC_<number>
    source: str
    label: str
    folder: str
    taken_at: str  # EXIF "YYYY:MM:DD HH:MM:SS"
    orientation: int  # 1, 6 or 8
    gps: tuple[float, float, float] | None
    raw: bool
    camera: int
    quality: int
    seed: int


# ----------------------------------------------------------------------------------------------- public API


def make_archive(dest: Path = DEFAULT_DEST, n: int = 200, *, raw_pairs: int = 40, seed: int = 0,
                 workers: int | None = None, landmarks_dir: Path = DEFAULT_LANDMARKS, force: bool = False,
                 progress: bool = True) -> dict[str, Any]:
    """Generate (or reuse) the archive in ``dest`` and return its manifest.

    The manifest: ``{"params": {...}, "photos": [{"jpeg": rel_path, "raw": rel_path | None, "label": str,
    "orientation": int, "gps": [lat, lon, alt] | None, "taken_at": iso}], "bytes": int}``; paths are relative to
    ``dest``. An existing archive made with the same parameters is reused (its files' sizes are checked).
    """
    dest = Path(dest)
    params = {"n": n, "raw_pairs": raw_pairs, "seed": seed, "width": WIDTH, "height": HEIGHT,
              "luma_sigma": LUMA_SIGMA, "chroma_sigma": CHROMA_SIGMA, "version": FORMAT_VERSION}
    cached = _load_cached(dest, params)
    if cached is not None and not force:
        return cached
    if raw_pairs > n:
        raise ValueError("raw_pairs cannot exceed n")
    landmarks_dir = Path(landmarks_dir)
    if not landmarks_dir.is_dir():
        raise FileNotFoundError(f"landmark photos not found: {landmarks_dir} (the archive is built from them)")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)

    jobs = _plan(n, raw_pairs, seed, landmarks_dir)
    workers = workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    ctx = get_context("spawn" if sys.platform == "win32" else "fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(seed,)) as pool:
        for i, rec in enumerate(pool.imap_unordered(_make_one, [(j, str(dest)) for j in jobs], chunksize=1), 1):
            results.append(rec)
            if progress:
                elapsed = time.perf_counter() - t0
                print(f"\r  generated {i}/{len(jobs)} photos ({elapsed:.0f} s)", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    results.sort(key=lambda r: r["jpeg"])
    manifest = {"params": params, "photos": results, "bytes": sum(r["bytes"] for r in results),
                "generated_in_s": round(time.perf_counter() - t0, 1)}
    tmp = dest / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, dest / MANIFEST)
    return manifest


def photo_paths(manifest: dict[str, Any], dest: Path = DEFAULT_DEST) -> list[Path]:
    """The files a scan decodes: the JPEG of every photo (a RAW+JPEG pair is recognised from its JPEG)."""
    return [Path(dest) / p["jpeg"] for p in manifest["photos"]]


def all_files(manifest: dict[str, Any], dest: Path = DEFAULT_DEST) -> list[Path]:
    """Every file in the archive (JPEGs and NEFs)."""
    out = []
    for p in manifest["photos"]:
        out.append(Path(dest) / p["jpeg"])
        if p["raw"]:
            out.append(Path(dest) / p["raw"])
    return out


# --------------------------------------------------------------------------------------------------- planning


def _load_cached(dest: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    try:
        manifest = json.loads((dest / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("params") != params:
        return None
    for p in manifest["photos"]:
        for key, size_key in (("jpeg", "jpeg_bytes"), ("raw", "raw_bytes")):
            if p.get(key):
                try:
                    if (dest / p[key]).stat().st_size != p[size_key]:
                        return None
                except OSError:
                    return None
    return manifest


def _plan(n: int, raw_pairs: int, seed: int, landmarks_dir: Path) -> list[_Job]:
    rng = np.random.default_rng(seed)
    by_label = {d.name: sorted(str(p) for p in d.glob("*.jpg")) for d in sorted(landmarks_dir.iterdir()) if d.is_dir()}
    by_label = {k: v for k, v in by_label.items() if v}
    labels = sorted(by_label)
    jobs: list[_Job] = []
    day = datetime(2023, 10, 2, 9, 0, 0)
    number = int(rng.integers(1, 400))
    raw_set = set(rng.choice(n, size=raw_pairs, replace=False).tolist()) if raw_pairs else set()
    used: dict[str, int] = {}
    while len(jobs) < n:
        label = labels[int(rng.integers(len(labels)))]
        session = min(int(rng.integers(5, 26)), n - len(jobs))
        gps_session = rng.random() < 0.4
        camera = int(rng.integers(len(CAMERAS)))
        folder = f"{day:%Y}/{day:%Y-%m-%d}"
        t = day + timedelta(minutes=int(rng.integers(0, 240)))
        files = by_label[label]
        start = used.get(label, int(rng.integers(len(files))))
        for k in range(session):
            source = files[(start + k) % len(files)]
            with Image.open(source) as im:
                w, h = im.size
            orientation = 1 if w >= h else (6 if rng.random() < 0.8 else 8)
            gps = None
            if gps_session and label in LANDMARK_COORDS:
                lat, lon = LANDMARK_COORDS[label]
                gps = (round(lat + rng.normal(0, 0.001), 6), round(lon + rng.normal(0, 0.001), 6),
                       round(float(rng.uniform(150, 600)), 1))
            idx = len(jobs)
            jobs.append(_Job(index=idx, number=number, source=source, label=label, folder=folder,
                             taken_at=f"{t:%Y:%m:%d %H:%M:%S}", orientation=orientation, gps=gps, raw=idx in raw_set,
                             camera=camera, quality=int(rng.integers(92, 96)), seed=int(rng.integers(2**31))))
            number = number % 9999 + 1
            t += timedelta(seconds=int(rng.integers(3, 90)))
        used[label] = start + session
        day += timedelta(days=int(rng.integers(1, 40)), minutes=int(rng.integers(-60, 60)))
    return jobs


# --------------------------------------------------------------------------------------------------- workers

_LUMA: np.ndarray | None = None
_CHROMA: np.ndarray | None = None


def _init_worker(seed: int) -> None:
    """Per-process noise banks (same seed in every worker: output does not depend on scheduling)."""
    global _LUMA, _CHROMA
    rng = np.random.default_rng(seed + 12345)
    side = max(WIDTH, HEIGHT) + _BANK_MARGIN
    _LUMA = np.clip(rng.normal(0, LUMA_SIGMA, size=(side, side)), -127, 127).astype(np.int16)
    half = side // 2 + 1
    _CHROMA = np.clip(rng.normal(0, CHROMA_SIGMA, size=(half, half, 3)), -127, 127).astype(np.int16)


def _camera_picture(job: _Job) -> Image.Image:
    """The 24 MP picture as the sensor recorded it (landscape pixels; portrait shots rotated back)."""
    rng = np.random.default_rng(job.seed)
    with Image.open(job.source) as im:
        src = im.convert("RGB")
    portrait = job.orientation != 1
    out_w, out_h = (HEIGHT, WIDTH) if portrait else (WIDTH, HEIGHT)
    aspect = out_w / out_h
    w, h = src.size
    # a slightly different framing of each shot: crop 90-100 % to the 3:2 (2:3) aspect
    scale = float(rng.uniform(0.9, 1.0))
    cw, ch = (w * scale, w * scale / aspect) if w / h > aspect else (h * scale * aspect, h * scale)
    cw, ch = min(cw, w), min(ch, h)
    x0 = float(rng.uniform(0, w - cw))
    y0 = float(rng.uniform(0, h - ch))
    big = src.resize((out_w, out_h), Image.Resampling.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch))
    a = np.asarray(big, dtype=np.int16)
    oy, ox = (int(v) for v in rng.integers(0, _BANK_MARGIN, 2))
    a = a + _LUMA[oy:oy + out_h, ox:ox + out_w, None]  # type: ignore[index]
    cy, cx = (int(v) for v in rng.integers(0, _BANK_MARGIN // 2, 2))
    chroma = _CHROMA[cy:cy + (out_h + 1) // 2, cx:cx + (out_w + 1) // 2]  # type: ignore[index]
    a += np.repeat(np.repeat(chroma, 2, axis=0), 2, axis=1)[:out_h, :out_w]
    pic = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")
    # Stored pixels are in sensor orientation: undo the display rotation the EXIF tag will ask for.
    if job.orientation == 6:  # displayed after rotating 90 CW -> stored = display rotated 90 CCW
        pic = pic.transpose(Image.Transpose.ROTATE_90)
    elif job.orientation == 8:
        pic = pic.transpose(Image.Transpose.ROTATE_270)
    return pic


def _exif_bytes(job: _Job) -> bytes:
    make, model, lens, (f_min, f_max) = CAMERAS[job.camera]
    rng = np.random.default_rng(job.seed + 1)
    ex = Image.Exif()
    ex[0x010F] = make
    ex[0x0110] = model
    ex[0x0112] = job.orientation
    ex[0x011A] = 300.0
    ex[0x011B] = 300.0
    ex[0x0128] = 2
    ex[0x0131] = "Ver.1.02"
    ex[0x0132] = job.taken_at
    ex[0x0213] = 2
    focal = int(rng.integers(f_min, f_max + 1))
    exif_ifd = {
        0x829A: 1 / float(rng.choice([60, 125, 250, 500, 1000])),  # ExposureTime
        0x829D: float(rng.choice([5.6, 8.0, 11.0])),  # FNumber
        0x8827: int(rng.choice([100, 200, 400, 800])),  # ISO
        0x9000: b"0230",
        0x9003: job.taken_at,
        0x9004: job.taken_at,
        0x920A: float(focal),
        0x9291: f"{int(rng.integers(0, 100)):02d}",  # SubSecTimeOriginal
        0xA002: WIDTH,
        0xA003: HEIGHT,
        0xA434: lens,
    }
    ex[0x8769] = exif_ifd
    if job.gps:
        lat, lon, alt = job.gps
        ex[0x8825] = {
            0: b"\x02\x03\x00\x00",
            1: "N" if lat >= 0 else "S",
            2: _dms(abs(lat)),
            3: "E" if lon >= 0 else "W",
            4: _dms(abs(lon)),
            5: b"\x00",
            6: float(alt),
            18: "WGS-84",
        }
    return ex.tobytes()


def _dms(value: float) -> tuple[float, float, float]:
    d = int(value)
    m = int((value - d) * 60)
    s = round(((value - d) * 60 - m) * 60, 4)
    return (float(d), float(m), s)


def _make_one(args: tuple[_Job, str]) -> dict[str, Any]:
    job, dest = args
    folder = Path(dest) / job.folder
    folder.mkdir(parents=True, exist_ok=True)
    pic = _camera_picture(job)
    exif = _exif_bytes(job)
    jpeg = folder / f"DSC_{job.number:04d}.JPG"
    buf = io.BytesIO()
    pic.save(buf, "JPEG", quality=job.quality, subsampling="4:2:0", exif=exif)
    _write(jpeg, buf.getvalue())
    rec: dict[str, Any] = {
        "jpeg": str(jpeg.relative_to(dest)), "jpeg_bytes": jpeg.stat().st_size, "raw": None, "raw_bytes": 0,
        "label": job.label, "source": Path(job.source).name, "orientation": job.orientation,
        "gps": list(job.gps) if job.gps else None,
        "taken_at": job.taken_at.replace(":", "-", 2).replace(" ", "T"),
        "camera": CAMERAS[job.camera][1],
    }
    if job.raw:
        nef = folder / f"DSC_{job.number:04d}.NEF"
        _write(nef, _nef_bytes(job, pic))
        rec["raw"] = str(nef.relative_to(dest))
        rec["raw_bytes"] = nef.stat().st_size
    rec["bytes"] = rec["jpeg_bytes"] + rec["raw_bytes"]
    return rec


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------ NEF-like RAW

_SHORT, _LONG, _RATIONAL, _ASCII, _BYTE, _UNDEF = 3, 4, 5, 2, 1, 7
# sRGB-encoded 8-bit value -> linear 12-bit sensor value (before the per-channel white-balance gain)
_SRGB = np.arange(256) / 255.0
_LINEAR12 = np.where(_SRGB <= 0.04045, _SRGB / 12.92, ((_SRGB + 0.055) / 1.055) ** 2.4) * 4095.0
_WB_GAIN = (0.48, 1.0, 0.66)  # a daylight-ish raw: red and blue record less than green


def _nef_bytes(job: _Job, pic: Image.Image) -> bytes:
    """An uncompressed 12-bit NEF-structured TIFF/EP file that LibRaw reads (see the module docstring)."""
    make, model, lens, _ = CAMERAS[job.camera]
    a = np.asarray(pic)  # stored (sensor) orientation, 6000x4000
    h, w = a.shape[:2]
    luts = [np.clip(_LINEAR12 * g, 0, 4095).astype(np.uint16) for g in _WB_GAIN]
    cfa = np.empty((h, w), np.uint16)
    cfa[0::2, 0::2] = luts[0][a[0::2, 0::2, 0]]  # R
    cfa[0::2, 1::2] = luts[1][a[0::2, 1::2, 1]]  # G
    cfa[1::2, 0::2] = luts[1][a[1::2, 0::2, 1]]  # G
    cfa[1::2, 1::2] = luts[2][a[1::2, 1::2, 2]]  # B
    pairs = cfa.reshape(-1, 2)
    packed = np.empty((pairs.shape[0], 3), np.uint8)  # two 12-bit samples in three bytes, big-endian bit order
    packed[:, 0] = pairs[:, 0] >> 4
    packed[:, 1] = ((pairs[:, 0] & 0xF) << 4) | (pairs[:, 1] >> 8)
    packed[:, 2] = pairs[:, 1] & 0xFF
    raw_data = packed.tobytes()

    preview = io.BytesIO()
    pic.save(preview, "JPEG", quality=80, subsampling="4:2:0")  # full-size preview, as Nikon bodies embed
    thumb = pic.resize((160, 120), Image.Resampling.BILINEAR).tobytes()

    tw = _TiffWriter()
    thumb_off = tw.blob(thumb)
    preview_off = tw.blob(preview.getvalue())
    raw_off = tw.blob(raw_data)
    sub_preview = tw.ifd([(254, _LONG, 1), (259, _SHORT, 6), (513, _LONG, preview_off),
                          (514, _LONG, len(preview.getvalue())), (531, _SHORT, 2)])
    sub_raw = tw.ifd([(254, _LONG, 0), (256, _LONG, w), (257, _LONG, h), (258, _SHORT, 12), (259, _SHORT, 1),
                      (262, _SHORT, 32803), (273, _LONG, raw_off), (277, _SHORT, 1), (278, _LONG, h),
                      (279, _LONG, len(raw_data)), (284, _SHORT, 1), (33421, _SHORT, [2, 2]),
                      (33422, _BYTE, [0, 1, 1, 2]), (37399, _SHORT, 2)])
    exif = tw.ifd([(33434, _RATIONAL, [(1, 250)]), (33437, _RATIONAL, [(8, 1)]), (34855, _SHORT, 200),
                   (36864, _UNDEF, b"0230"), (36867, _ASCII, job.taken_at), (36868, _ASCII, job.taken_at),
                   (42036, _ASCII, lens)])
    gps_ifd = None
    if job.gps:
        lat, lon, alt = job.gps
        gps_ifd = tw.ifd([(0, _BYTE, [2, 3, 0, 0]), (1, _ASCII, "N" if lat >= 0 else "S"),
                          (2, _RATIONAL, _dms_rational(abs(lat))), (3, _ASCII, "E" if lon >= 0 else "W"),
                          (4, _RATIONAL, _dms_rational(abs(lon))), (5, _BYTE, [0]),
                          (6, _RATIONAL, [(int(alt * 10), 10)])])
    ifd0 = [(254, _LONG, 1), (256, _LONG, 160), (257, _LONG, 120), (258, _SHORT, [8, 8, 8]), (259, _SHORT, 1),
            (262, _SHORT, 2), (271, _ASCII, make), (272, _ASCII, model), (273, _LONG, thumb_off),
            (274, _SHORT, job.orientation), (277, _SHORT, 3), (278, _LONG, 120), (279, _LONG, len(thumb)),
            (284, _SHORT, 1), (305, _ASCII, "Ver.1.02"), (306, _ASCII, job.taken_at),
            (330, _LONG, [sub_preview, sub_raw]), (34665, _LONG, exif)]
    if gps_ifd is not None:
        ifd0.append((34853, _LONG, gps_ifd))
    return tw.finish(tw.ifd(ifd0))


def _dms_rational(value: float) -> list[tuple[int, int]]:
    d, m, s = _dms(value)
    return [(int(d), 1), (int(m), 1), (int(round(s * 10000)), 10000)]


class _TiffWriter:
    """Minimal little-endian TIFF writer: blobs first, then IFDs (children before parents)."""

    def __init__(self) -> None:
        self.buf = bytearray(b"II*\x00\x00\x00\x00\x00")

    def _align(self) -> None:
        if len(self.buf) % 2:
            self.buf += b"\x00"

    def blob(self, data: bytes) -> int:
        self._align()
        offset = len(self.buf)
        self.buf += data
        return offset

    def ifd(self, entries: list[tuple[int, int, Any]]) -> int:
        self._align()
        start = len(self.buf)
        entries = sorted(entries, key=lambda e: e[0])
        data_at = start + 2 + 12 * len(entries) + 4
        head = bytearray(struct.pack("<H", len(entries)))
        extra = bytearray()
        for tag, typ, values in entries:
            payload, count = _encode(typ, values)
            if len(payload) <= 4:
                head += struct.pack("<HHI", tag, typ, count) + payload.ljust(4, b"\x00")
            else:
                head += struct.pack("<HHII", tag, typ, count, data_at + len(extra))
                extra += payload
                if len(extra) % 2:
                    extra += b"\x00"
        head += b"\x00\x00\x00\x00"  # no next IFD
        self.buf += head + extra
        return start

    def finish(self, ifd0: int) -> bytes:
        self.buf[4:8] = struct.pack("<I", ifd0)
        return bytes(self.buf)


def _encode(typ: int, values: Any) -> tuple[bytes, int]:
    if typ == _ASCII:
        b = values.encode("ascii") + b"\x00"
        return b, len(b)
    if typ in (_BYTE, _UNDEF):
        b = bytes(values)
        return b, len(b)
    if not isinstance(values, (list, tuple)):
        values = [values]
    if typ == _SHORT:
        return struct.pack(f"<{len(values)}H", *values), len(values)
    if typ == _LONG:
        return struct.pack(f"<{len(values)}I", *values), len(values)
    if typ == _RATIONAL:
        return b"".join(struct.pack("<II", n, d) for n, d in values), len(values)
    raise ValueError(f"unsupported TIFF type {typ}")


# ------------------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="archive folder (default: runs/bench-archive)")
    ap.add_argument("-n", type=int, default=200, help="number of photos (JPEGs)")
    ap.add_argument("--raw-pairs", type=int, default=40, help="how many of them also get a NEF")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    ap.add_argument("--landmarks", type=Path, default=DEFAULT_LANDMARKS, help="source photos")
    ap.add_argument("--force", action="store_true", help="regenerate even if a matching archive exists")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    m = make_archive(args.dest, args.n, raw_pairs=args.raw_pairs, seed=args.seed, workers=args.workers,
                     landmarks_dir=args.landmarks, force=args.force)
    photos = m["photos"]
    jpeg_mb = [p["jpeg_bytes"] / 1e6 for p in photos]
    raw_mb = [p["raw_bytes"] / 1e6 for p in photos if p["raw"]]
    print(f"archive: {args.dest}")
    print(f"photos: {len(photos)} JPEG ({WIDTH}x{HEIGHT}), {len(raw_mb)} with a NEF; "
          f"{sum(1 for p in photos if p['gps'])} with GPS; {sum(1 for p in photos if p['orientation'] != 1)} portrait")
    print(f"JPEG size: mean {np.mean(jpeg_mb):.1f} MB (min {min(jpeg_mb):.1f}, max {max(jpeg_mb):.1f})"
          + (f"; NEF {np.mean(raw_mb):.1f} MB" if raw_mb else ""))
    print(f"total: {m['bytes'] / 1e9:.2f} GB; generated in {m.get('generated_in_s', 0)} s "
          f"(this call {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
