"""Shared test fixtures: where the test data lives.

* ``camera_dir``: ``tests/data/camera`` — real CC0 camera files committed with the repo (see its LICENSES.md).
* ``shared_dir``: ``<repo>/../shared`` — the project's shared data (not in the repo); tests skip when absent.
* ``camera_samples_dir``: ``<shared>/data/camera-samples`` — more real camera files, some under licenses that
  forbid copying them into the repo; read them from there at run time only.
* ``landmarks_dir``: ``<shared>/data/landmarks`` — the landmark photos; never copy them into the repo.

Plain functions (``camera_file``, ``camera_sample``) do the same for use outside fixtures (parametrisation).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = REPO_ROOT / "tests"
CAMERA_DIR = TESTS_DIR / "data" / "camera"
SHARED_DIR = REPO_ROOT.parent / "shared"
CAMERA_SAMPLES_DIR = SHARED_DIR / "data" / "camera-samples"
LANDMARKS_DIR = SHARED_DIR / "data" / "landmarks"

# ltag's caches (the parsed geocoder table) go to a folder of this test session, not the user's cache folder; the
# ltag processes the tests start inherit it.
if "LTAG_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["LTAG_CACHE_DIR"] = tempfile.mkdtemp(prefix="ltag-test-cache-")


def camera_file(name: str) -> Path:
    """Path of a committed camera fixture (``tests/data/camera/<name>``); fails loudly if missing."""
    path = CAMERA_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"test fixture missing: {path}")
    return path


def camera_sample(relpath: str) -> Path:
    """Path of a shared camera sample (``camera-samples/<relpath>``, e.g. ``jpeg/mei_Nikon_D5000.jpg``).

    Skips the calling test when the shared data (or that file) is absent.
    """
    path = CAMERA_SAMPLES_DIR / relpath
    if not path.is_file():
        pytest.skip(f"shared camera sample not available: {path}")
    return path


def copy_landmark_day(folder: Path, labels: tuple[str, ...], n: int) -> list[Path]:
    """Copy the first ``n`` photos of each landmark label into ``folder`` as IMG_00.jpg, IMG_01.jpg, ... in
    that order (one "day" of shooting); returns the source photos. Skips when the landmark photos are absent."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    srcs: list[Path] = []
    for label in labels:
        d = LANDMARKS_DIR / label
        if not d.is_dir():
            pytest.skip(f"landmark photos not available: {d}")
        srcs += sorted(d.glob("*.jpg"))[:n]
    for i, f in enumerate(srcs):
        shutil.copyfile(f, folder / f"IMG_{i:02d}.jpg")
    return srcs


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def camera_dir() -> Path:
    """``tests/data/camera``: committed CC0 camera files (JPEG, CRW, KDC, truncated NEF/ARW)."""
    return CAMERA_DIR


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``<repo>/../shared``; skips the test when it is absent (e.g. a plain clone)."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared data folder not available: {SHARED_DIR}")
    return SHARED_DIR


@pytest.fixture(scope="session")
def camera_samples_dir(shared_dir: Path) -> Path:
    """``<shared>/data/camera-samples`` (``jpeg/`` and ``raw/``); skips when absent."""
    path = shared_dir / "data" / "camera-samples"
    if not path.is_dir():
        pytest.skip(f"camera samples not available: {path}")
    return path


@pytest.fixture(scope="session")
def landmarks_dir(shared_dir: Path) -> Path:
    """``<shared>/data/landmarks/<label>/*.jpg``; skips when absent. Read only, never copy into the repo."""
    path = shared_dir / "data" / "landmarks"
    if not path.is_dir():
        pytest.skip(f"landmark photos not available: {path}")
    return path


@pytest.fixture(scope="module")
def bundle():
    """The model bundle under test: ``LTAG_TEST_BUNDLE``, else the shipped default (skips when not installed)."""
    from landmark_tagger.bundle import load_bundle
    from landmark_tagger.errors import BundleError

    try:
        return load_bundle(os.environ.get("LTAG_TEST_BUNDLE") or None)
    except BundleError as e:
        pytest.skip(f"model bundle not installed: {e}")


@pytest.fixture
def synthetic_dataset(tmp_path: Path) -> Path:
    """A folder-per-class dataset of small synthetic photos (3 classes), for training tests."""
    from training_synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path / "data")
