"""Where ltag keeps its state: the catalog and the user gallery beside it, and its caches.

Precedence: ``--db`` option > ``LTAG_DB`` environment variable > the user's data directory
(``$XDG_DATA_HOME/ltag/catalog.db``, ``~/.local/share/ltag/catalog.db`` by default;
``~/Library/Application Support/ltag`` on macOS, ``%LOCALAPPDATA%\\ltag`` on Windows).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def user_data_dir() -> Path:
    """The per-user directory for ltag's data (not created here)."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "ltag"


def user_cache_dir() -> Path:
    """The per-user directory for ltag's caches, which can be deleted at any time (not created here):
    ``LTAG_CACHE_DIR``, else ``$XDG_CACHE_HOME/ltag`` (``~/.cache/ltag``), ``~/Library/Caches/ltag`` on macOS,
    ``%LOCALAPPDATA%\\ltag\\Cache`` on Windows."""
    env = os.environ.get("LTAG_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "ltag"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "ltag" / "Cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ltag"


def default_db_path(db: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the catalog path from an explicit value, ``LTAG_DB`` or the data directory."""
    if db:
        return Path(db).expanduser()
    env = os.environ.get("LTAG_DB")
    if env:
        return Path(env).expanduser()
    return user_data_dir() / "catalog.db"


def user_gallery_path(db_path: Path) -> Path:
    """The user gallery (landmarks taught with ``ltag learn``) lives beside the catalog."""
    return db_path.with_name(db_path.stem + ".gallery.npz")
