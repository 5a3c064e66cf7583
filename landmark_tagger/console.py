"""rich consoles: results to stdout, progress and messages to stderr. Imported by the CLI only."""

from __future__ import annotations

from rich.console import Console
from rich.theme import Theme

THEME = Theme({"error": "bold red", "warning": "yellow", "ok": "green", "dim": "dim"})

out = Console(theme=THEME, highlight=False, soft_wrap=True)
err = Console(theme=THEME, stderr=True, highlight=False)


def error(message: str) -> None:
    err.print(f"[error]Error:[/error] {message}", markup=True, highlight=False)


def warning(message: str) -> None:
    err.print(f"[warning]Warning:[/warning] {message}")
