"""`pip install .` must give a working `ltag` with the default model inside the wheel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}")
    (whl,) = out.glob("landmark_tagger-*.whl")
    return whl


def test_wheel_carries_the_default_bundle_and_training(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    bundles = {n.split("/")[2] for n in names if n.startswith("landmark_tagger/_models/") and n.count("/") >= 3}
    assert bundles, "no model bundle inside the wheel"
    for b in bundles:
        for f in ("model.onnx", "labels.json", "gallery.npz"):
            assert f"landmark_tagger/_models/{b}/{f}" in names
    assert "training/__init__.py" in names and "landmark_tagger/cli.py" in names
    # never the landmark photos (their license is unknown)
    assert not [n for n in names if n.lower().endswith((".jpg", ".jpeg"))]


def test_installed_ltag_finds_its_default_model(tmp_path: Path):
    """Run the installed console script from an unrelated folder (in CI the package is a real wheel install)."""
    exe = shutil.which("ltag", path=os.path.dirname(sys.executable)) or shutil.which("ltag")
    if exe is None:
        pytest.skip("ltag console script not installed in this environment")
    proc = subprocess.run([exe, "model", "info", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert "torch" not in proc.stderr
    text = json.dumps(info)
    assert "lite0-gem-512-indian-monuments" in text
