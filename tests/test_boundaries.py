"""The runtime never imports torch, timm or training (they are the [train] extra only)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
HEAVY = ("torch", "timm", "torchvision", "training")


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_cli_import_and_help_leave_torch_out():
    code = ("import sys\n"
            "import landmark_tagger.cli as cli\n"
            "sys.argv = ['ltag', '--help']\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "print('LOADED', bad)\n")
    res = _run(code)
    assert "LOADED []" in res.stdout, res.stdout + res.stderr
    assert "Usage" in res.stdout


def test_recognition_modules_leave_torch_out():
    code = ("import sys\n"
            "import landmark_tagger.bundle, landmark_tagger.recognizer, landmark_tagger.scoring\n"
            "import landmark_tagger.metrics, landmark_tagger.preprocess\n"
            "b = landmark_tagger.bundle.load_bundle('tests/fixtures/tiny_bundle')\n"
            "landmark_tagger.recognizer.Recognizer(b)\n"
            f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])\n")
    res = _run(code)
    assert "LOADED []" in res.stdout, res.stdout + res.stderr


def test_no_runtime_source_mentions_torch_imports():
    offenders = []
    for path in (ROOT / "landmark_tagger").rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            s = line.strip()
            if s.startswith(("import torch", "from torch", "import timm", "from timm", "import training",
                             "from training")):
                offenders.append(f"{path.relative_to(ROOT)}: {s}")
    assert offenders == []


def test_a_scan_with_nothing_to_recognise_imports_no_model_library_and_no_pydantic(tmp_path):
    """Start-up cost (docs/architecture.md, "Start-up"): a scan that recognises nothing never imports onnxruntime or
    faiss, and parsing the command line does not import pydantic (typer >= 0.29 does: ~0.2 s per command)."""
    (tmp_path / "empty").mkdir()
    code = ("import sys\n"
            "import landmark_tagger.cli as cli\n"
            f"sys.argv = ['ltag', 'scan', '--no-write', '--db', {str(tmp_path / 'c.db')!r}, {str(tmp_path / 'empty')!r}]\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "print('LOADED', [m for m in ('onnxruntime', 'faiss', 'pydantic', *" + repr(HEAVY) + ") if m in sys.modules])\n")
    res = _run(code)
    assert "LOADED []" in res.stdout, res.stdout + res.stderr


def test_console_script_runs_numpy_and_faiss_math_in_one_thread_unless_the_user_says_otherwise():
    """docs/architecture.md, "Start-up": OpenBLAS's and OpenMP's worker threads spin after every call on the cores
    the decoders need (importing numpy alone cost ~0.12 s of CPU on 2 cores), so the console script asks for one
    thread before numpy loads; a value the user set is kept."""
    code = ("import os, sys\n"
            "from landmark_tagger import _entry\n"
            "sys.argv = ['ltag', '--help']\n"
            "try:\n    _entry.main()\nexcept SystemExit:\n    pass\n"
            "import numpy\n"
            "threads = len(os.listdir('/proc/self/task')) if os.path.isdir('/proc/self/task') else 1\n"
            "print('ENV', os.environ.get('OPENBLAS_NUM_THREADS'), os.environ.get('OMP_NUM_THREADS'), threads)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="3")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert "ENV 1 3 1" in res.stdout, res.stdout + res.stderr
