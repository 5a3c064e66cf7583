"""A tiny procedurally drawn dataset for the training tests.

Not a conftest.py: a second module named ``conftest`` would shadow ``tests/conftest.py`` for the tests that
import helpers from it. The ``synthetic_dataset`` fixture is defined in ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("red_blobs", "green_stripes", "blue_checks")


def make_synthetic_dataset(root: Path, per_class: int = 10, seed: int = 0) -> Path:
    """A folder-per-class dataset of small, distinct, procedurally drawn photos (no two near-duplicates)."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        d = root / name
        d.mkdir(parents=True)
        for i in range(per_class):
            h, w = 72 + int(rng.integers(0, 24)), 96 + int(rng.integers(0, 24))
            a = rng.integers(0, 90, (h, w, 3)).astype(np.float32)
            yy, xx = np.mgrid[0:h, 0:w]
            freq = rng.uniform(0.15, 0.6)
            phase = rng.uniform(0, 6.3)
            if c == 0:
                pattern = np.sin(freq * xx + phase) * np.sin(freq * yy)
            elif c == 1:
                pattern = np.sin(freq * yy + phase)
            else:
                pattern = np.sign(np.sin(freq * xx + phase)) * np.sign(np.sin(freq * yy))
            a[..., c] += 120 + 80 * pattern
            Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(d / f"img_{i:02d}.jpg", quality=92)
    return root
