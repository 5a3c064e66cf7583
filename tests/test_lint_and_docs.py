"""Project hygiene: ruff is clean, every command has help with an example, README names every command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff not installed (the [dev] extra)")
    p = subprocess.run([ruff, "check", "landmark_tagger", "training", "tests", "benchmarks"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def _commands():
    import typer.main

    from landmark_tagger.cli import app

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a sub-group (ltag model ..., ltag landmarks ...)
            for sub, subcmd in cmd.commands.items():
                yield f"{name} {sub}", subcmd
        yield name, cmd


def test_every_command_has_help():
    for name, cmd in _commands():
        assert (cmd.help or "").strip(), f"`ltag {name}` has no help text"
        for p in cmd.params:
            if p.param_type_name == "option" and p.name not in ("help",):
                assert (getattr(p, "help", None) or "").strip(), f"`ltag {name}` option {p.opts} has no help"


def test_readme_mentions_every_top_level_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name, _ in _commands():
        top = name.split()[0]
        assert f"ltag {top}" in readme, f"README does not mention `ltag {top}`"
