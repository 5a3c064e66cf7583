"""Training data: folder-per-class and Google Landmarks v2 layouts, near-duplicate-aware splits, augmentation.

Layouts:
    folder  ``ROOT/<label>/<image>.jpg`` (any of .jpg .jpeg .png .webp)
    gldv2   ``ROOT/train.csv`` with ``id,url,landmark_id`` and images at ``ROOT/[train/]a/b/c/abc....jpg``;
            an optional clean-subset CSV (GLDv2 ``train_clean.csv``: ``landmark_id,images`` with
            space-separated ids, or any CSV with an ``id`` column) restricts the images used.

Split: photos are grouped by perceptual hashes (DCT pHash and gradient dHash, 64 bits each; two photos
whose hashes differ in at most ``max_distance`` bits are linked, groups are the connected components),
so re-crops, re-encodes and watermarked copies stay on one side. Within each class, groups are ordered
by a hash of their member paths and dealt to train / calibration / report by the configured fractions:
deterministic, the same on every machine and every run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp"}
SPLITS = ("train", "calib", "report")


@dataclass(frozen=True)
class Sample:
    """One photo: path, class name, and its key (path relative to the dataset root)."""

    path: Path
    label: str
    key: str


def scan_folder(root: Path) -> list[Sample]:
    """Samples of a folder-per-class tree (sorted)."""
    root = Path(root)
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(d.iterdir()):
            if f.suffix.lower() in IMAGE_EXTS and f.is_file():
                out.append(Sample(f, d.name, f"{d.name}/{f.name}"))
    return out


def _gld_path(root: Path, image_id: str) -> Path | None:
    rel = Path(image_id[0], image_id[1], image_id[2], f"{image_id}.jpg")
    for base in (root / "train", root):
        if (base / rel).is_file():
            return base / rel
    return None


def scan_gldv2(root: Path, clean_csv: Path | None = None) -> list[Sample]:
    """Samples of a Google Landmarks v2 ``train.csv`` layout (images that are present on disk only)."""
    root = Path(root)
    allowed: set[str] | None = None
    if clean_csv is not None:
        allowed = set()
        with open(clean_csv, newline="") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                if "images" in row:
                    allowed.update(row["images"].split())
                elif "id" in row:
                    allowed.add(row["id"])
    out, missing = [], 0
    with open(root / "train.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            image_id = row["id"]
            if allowed is not None and image_id not in allowed:
                continue
            p = _gld_path(root, image_id)
            if p is None:
                missing += 1
                continue
            out.append(Sample(p, str(row["landmark_id"]), image_id))
    if missing:
        log.warning("%d images listed in train.csv are not on disk; skipped", missing)
    return sorted(out, key=lambda s: (s.label, s.key))


def scan_dataset(root: Path, layout: str = "auto", clean_csv: Path | None = None) -> list[Sample]:
    """Scan ``root`` as ``folder`` or ``gldv2`` (``auto``: gldv2 if ``train.csv`` exists)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    if layout == "auto":
        layout = "gldv2" if (root / "train.csv").is_file() else "folder"
    if layout == "gldv2":
        return scan_gldv2(root, clean_csv)
    if layout == "folder":
        if clean_csv is not None:
            keep = {r["id"] for r in csv.DictReader(open(clean_csv, newline=""))}
            return [s for s in scan_folder(root) if s.key in keep]
        return scan_folder(root)
    raise ValueError(f"unknown layout {layout!r} (folder, gldv2, auto)")


def filter_min_images(samples: list[Sample], min_images: int) -> list[Sample]:
    """Drop classes with fewer than ``min_images`` photos."""
    counts: dict[str, int] = defaultdict(int)
    for s in samples:
        counts[s.label] += 1
    dropped = sorted(k for k, n in counts.items() if n < min_images)
    if dropped:
        log.info("dropping %d classes with < %d images: %s", len(dropped), min_images, dropped[:10])
    return [s for s in samples if counts[s.label] >= min_images]


# ---------------------------------------------------------------------------------------------- hashing
_DCT32 = np.array([[np.cos(np.pi * (2 * n + 1) * k / 64) for n in range(32)] for k in range(32)])


def perceptual_hashes(path: Path) -> tuple[int, int]:
    """(pHash, dHash) of an image as 64-bit integers."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("L")
        small = np.asarray(im.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
        grad = np.asarray(im.resize((9, 8), Image.Resampling.LANCZOS), dtype=np.float64)
    dct = _DCT32 @ small @ _DCT32.T
    low = dct[:8, :8].flatten()
    ph = low > np.median(low[1:])
    dh = (grad[:, 1:] > grad[:, :-1]).flatten()
    to_int = lambda bits: int("".join("1" if b else "0" for b in bits), 2)  # noqa: E731
    return to_int(ph), to_int(dh)


def _popcount64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    out = np.zeros(x.shape, dtype=np.int64)
    for shift in range(0, 64, 8):
        out += _POP8[((x >> np.uint64(shift)) & np.uint64(0xFF)).astype(np.int64)]
    return out


_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def group_near_duplicates(hashes: list[tuple[int, int]], max_distance: int = 8) -> list[int]:
    """Connected components of the "hashes within ``max_distance`` bits" graph; returns a group id per item."""
    n = len(hashes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    ph = np.array([h[0] for h in hashes], dtype=np.uint64)
    dh = np.array([h[1] for h in hashes], dtype=np.uint64)
    for i in range(n - 1):
        close = (_popcount64(ph[i + 1:] ^ ph[i]) <= max_distance) | (_popcount64(dh[i + 1:] ^ dh[i]) <= max_distance)
        for j in np.nonzero(close)[0]:
            a, b = find(i), find(i + 1 + int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(n)]


def _stable_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def split_samples(samples: list[Sample], fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
                  max_distance: int = 8, cache: Path | None = None) -> dict[str, str]:
    """Deterministic near-duplicate-aware split: ``{sample.key: 'train' | 'calib' | 'report'}``.

    Near-duplicates (even across class folders) share a group; a group goes to one split, dealt per class
    (by the group's majority label) in the order of a hash of its member keys, so that each class gets
    about the requested fractions of its photos.
    """
    cached: dict[str, list[int]] = {}
    if cache is not None and Path(cache).is_file():
        cached = json.loads(Path(cache).read_text())
    hashes = []
    for s in samples:
        stat = s.path.stat()
        ck = f"{s.key}|{stat.st_size}"
        if ck not in cached:
            cached[ck] = list(perceptual_hashes(s.path))
        hashes.append(tuple(cached[ck]))
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        Path(cache).write_text(json.dumps(cached))
    gid = group_near_duplicates(hashes, max_distance)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(gid):
        groups[g].append(i)
    by_class: dict[str, list[list[int]]] = defaultdict(list)
    for members in groups.values():
        labels = [samples[i].label for i in members]
        major = max(sorted(set(labels)), key=labels.count)
        by_class[major].append(members)
    out: dict[str, str] = {}
    cum = np.cumsum(fractions) / np.sum(fractions)
    for label in sorted(by_class):
        glist = sorted(by_class[label], key=lambda m: _stable_hash("|".join(sorted(samples[i].key for i in m))))
        total = sum(len(m) for m in glist)
        done = 0
        for members in glist:
            pos = (done + len(members) / 2) / total  # where the group's middle falls
            split = SPLITS[int(np.searchsorted(cum, pos, side="right").clip(0, 2))]
            for i in members:
                out[samples[i].key] = split
            done += len(members)
    n_groups = len(groups)
    n_dups = sum(len(m) for m in groups.values() if len(m) > 1)
    log.info("split: %d photos in %d near-duplicate groups (%d photos share a group)", len(samples), n_groups, n_dups)
    return out


# ---------------------------------------------------------------------------------------------- augmentation
def load_rgb(path: Path, max_side: int | None = None) -> Image.Image:
    """Decode, EXIF-orient and convert to RGB, optionally shrinking so the long side is at most ``max_side``."""
    with Image.open(path) as im:
        if max_side:
            im.draft("RGB", (max_side, max_side))
        im = ImageOps.exif_transpose(im).convert("RGB")
    if max_side and max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return im


def augment(img: Image.Image, size: int, rng: random.Random, scale: tuple[float, float] = (0.35, 1.0),
            jitter: float = 0.3) -> Image.Image:
    """Random resized crop (aspect 3/4..4/3), horizontal flip and colour jitter, driven by ``rng`` only."""
    from PIL import ImageEnhance

    w, h = img.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ar = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = int(round((target * ar) ** 0.5)), int(round((target / ar) ** 0.5))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
            break
    else:
        cw = ch = min(w, h)
        x0, y0 = (w - cw) // 2, (h - ch) // 2
    out = img.resize((size, size), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if jitter > 0:
        for enh in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            out = enh(out).enhance(rng.uniform(1 - jitter, 1 + jitter))
    return out


def to_tensor_array(img: Image.Image, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, H, W) float32 normalised array."""
    a = np.asarray(img, dtype=np.float32) / 255.0
    a = (a - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1))
