"""Safe file names from landmark names, and rename templates.

:func:`safe_component` turns any text (a landmark name, a camera model) into one path component that
is valid on Linux, macOS and Windows file systems: no path separators, no ``.``/``..``, no reserved
(``CON``, ``PRN``, ``COM1``...) or control characters, no trailing dots or spaces, NFC-normalised,
at most ``max_bytes`` UTF-8 bytes, never empty.

:class:`Template` renders ``{landmark}/{date:%Y-%m-%d}_{landmark}_{seq:03}`` into a relative path
*without extension* (each file of a photo group keeps its own suffix, e.g. ``.NEF.xmp``).
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from landmark_tagger.errors import RenameError

DEFAULT_TEMPLATE = "{landmark}/{date:%Y-%m-%d}_{landmark}_{seq:03}"
FIELDS = ("landmark", "place", "city", "country", "date", "camera", "stem", "seq", "ext")
MAX_COMPONENT_BYTES = 150   # leaves room for the longest companion suffix under the common 255-byte limit
_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
             *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10)),
             *(f"COM{c}" for c in "¹²³"), *(f"LPT{c}" for c in "¹²³")}
_SEPARATORS = re.compile(r"[/\\]")
_FORBIDDEN = re.compile(r'[<>:"|?*]')
_SPACES = re.compile(r"\s+")


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def truncate_utf8(text: str, max_bytes: int) -> str:
    """Cut ``text`` to at most ``max_bytes`` UTF-8 bytes at a character boundary (never inside a
    base character + combining mark cluster)."""
    if len(text.encode("utf-8")) <= max_bytes:
        return text
    out = text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
    while out and len(out) < len(text) and unicodedata.combining(text[len(out)]):
        out = out[:-1]  # do not separate a base letter from its following marks
    return out


def safe_component(text: Any, *, max_bytes: int = MAX_COMPONENT_BYTES, fallback: str = "unnamed") -> str:
    """One safe path component from any text (see the module docstring). Never empty, never ``.``/``..``."""
    s = unicodedata.normalize("NFC", str(text if text is not None else ""))
    s = _SEPARATORS.sub("-", s)
    s = _FORBIDDEN.sub("", s)
    s = "".join(" " if ch in "\t\n\r\x0b\x0c" else ch for ch in s if ch in "\t\n\r\x0b\x0c" or not _is_control(ch))
    s = _SPACES.sub(" ", s).strip()
    s = s.lstrip(".").rstrip(". ").strip()   # no hidden files, no trailing dots/spaces (Windows)
    s = truncate_utf8(s, max_bytes).rstrip(". ")
    if not s:
        s = fallback
    if s.split(".")[0].upper().rstrip(" ") in _RESERVED:
        s = "_" + s
    return s


@dataclass(frozen=True)
class Template:
    """A rename template; see :data:`FIELDS` and docs/rename.md."""

    text: str

    def __post_init__(self) -> None:
        t = self.text
        if not t or not t.strip():
            raise RenameError("The rename template is empty.")
        if t.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", t):
            raise RenameError(f"The template {t!r} is absolute; it must be relative to the archive root.")
        if "\\" in t:
            raise RenameError(f"Use '/' to separate folders in the template {t!r}.")
        for comp in t.split("/"):
            if comp.strip() in ("", ".", ".."):
                raise RenameError(f"The template {t!r} has an empty, '.' or '..' folder: renamed files must stay "
                                  "under the archive root.")
            try:
                list(string.Formatter().parse(comp))
            except ValueError as e:
                raise RenameError(f"The template {t!r} has a '/' inside a field or is malformed ({e}); put folders "
                                  "between fields, e.g. {date:%Y}/{date:%m}.") from e
        try:
            parsed = list(string.Formatter().parse(t))
        except ValueError as e:
            raise RenameError(f"The template {t!r} is malformed: {e}.") from e
        for _lit, name, spec, conv in parsed:
            if name is None:
                continue
            if name not in FIELDS:
                raise RenameError(f"Unknown field {{{name}}} in the template; fields: {', '.join(FIELDS)}.")
            if conv:
                raise RenameError(f"Conversions like !{conv} are not allowed in the template.")
            if spec and "{" in spec:
                raise RenameError("Nested fields are not allowed in the template.")
        if not any(name for _l, name, _s, _c in parsed):
            raise RenameError(f"The template {t!r} has no fields: every photo would get the same name.")

    @property
    def has_seq(self) -> bool:
        return any(name == "seq" for _l, name, _s, _c in string.Formatter().parse(self.text))

    def render(self, fields: dict[str, Any]) -> str:
        """The relative path (``/``-separated, no extension) for these field values; every component safe."""
        vals: dict[str, Any] = {}
        for k in FIELDS:
            v = fields.get(k)
            if k == "date":
                vals[k] = v if isinstance(v, datetime) else datetime(1900, 1, 1)
            elif k == "seq":
                vals[k] = int(v or 0)
            else:
                vals[k] = safe_component(v, fallback="unknown") if v not in (None, "") else "unknown"
        parts = []
        for comp in self.text.split("/"):
            try:
                rendered = comp.format(**vals)
            except (ValueError, TypeError, KeyError) as e:
                raise RenameError(f"Cannot render the template part {comp!r}: {e}.") from e
            parts.append(safe_component(rendered))
        return "/".join(parts)

    def seq_pattern(self, fields: dict[str, Any]) -> re.Pattern[str] | None:
        """A regex matching this template's rendering for any seq (group 1 = seq), or None without {seq}."""
        if not self.has_seq:
            return None
        sentinel = 987654321
        rendered = self.render({**fields, "seq": sentinel})
        if str(sentinel) not in rendered:
            return None
        return re.compile("^" + re.escape(rendered).replace(str(sentinel), r"(\d+)") + "$")
