"""Compare files with exiftool before and after a keyword write (reusable with any "apply" function).

``check_fidelity(paths, apply)`` reads every tag of every file with exiftool (values, binary blocks as
base64, duplicates and unknown tags included), runs ``apply(paths)`` -- which may change the files in
place however it likes (ltag's API, ``ltag scan``...) -- reads them again and reports, per file:

- every tag that changed, appeared or vanished, except the keyword fields ltag owns (:data:`OWNED`),
  tags ltag may add when the file had none (:data:`MAY_APPEAR`), and byte positions (names ending in
  Offset/Start: the data they point to is compared through the binary tags);
- new ``exiftool -validate -warning`` warnings;
- whether a JPEG's image data (from the first SOS on) is byte-identical.

Reuse with any writer, e.g. the CLI (keywords depend on the model, so check them separately)::

    corpus = build_corpus(tmp_path / "corpus")           # jpegs, sidecars, raws (+ sidecars), malformed
    paths = [f.path for f in corpus.jpegs]
    reports = check_fidelity(paths, lambda ps: subprocess.run(["ltag", "scan", str(tmp_path / "corpus"), ...]))
    assert all(r.ok for r in reports), [(r.path.name, r.changed, r.new_warnings) for r in reports if not r.ok]
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .build import CONFIG

# keyword fields ltag owns (may change)
OWNED = re.compile(
    r"^(IPTC:Keywords|XMP-dc:Subject|XMP-lr:HierarchicalSubject|XMP-ltag:.*|Photoshop:IPTCDigest"
    r"|File:CurrentIPTCDigest|IPTC:CodedCharacterSet)$"
)
# bookkeeping tags ltag may add where there were none (a new XMP packet or IPTC block)
MAY_APPEAR = re.compile(r"^(XMP-x:XMPToolkit|IPTC:ApplicationRecordVersion)$")
# where the location option fills empty fields
LOCATION = re.compile(
    r"^(XMP-photoshop:(City|State|Country)|XMP-iptcCore:CountryCode|IPTC:(City|Province-State"
    r"|Country-PrimaryLocationName|Country-PrimaryLocationCode))$"
)
POSITION = re.compile(r"(Offset|Offsets|Start)$")
IGNORED_GROUPS = ("System:", "ExifTool:", "SourceFile")


def exiftool_path() -> str | None:
    return shutil.which("exiftool")


def _run(args: list[str]) -> str:
    proc = subprocess.run(
        ["exiftool", "-config", str(CONFIG), "-charset", "filename=utf8", *args],
        capture_output=True,
        check=False,
    )
    return proc.stdout.decode("utf-8", "replace")


def read_tags(paths: Iterable[Path]) -> dict[str, dict[str, object]]:
    """All tags of each file as exiftool reads them, keyed by resolved path."""
    paths = [str(Path(p)) for p in paths]
    if not paths:
        return {}
    out = _run(["-j", "-G1", "-a", "-s", "-b", "-u", *paths])
    result = {}
    for entry in json.loads(out):
        src = str(Path(entry.pop("SourceFile")).resolve())
        result[src] = {k: v for k, v in entry.items() if not k.startswith(IGNORED_GROUPS)}
    return result


def read_warnings(paths: Iterable[Path]) -> dict[str, list[str]]:
    """``exiftool -validate -warning -a`` warnings per file (resolved path)."""
    paths = [str(Path(p)) for p in paths]
    result: dict[str, list[str]] = {str(Path(p).resolve()): [] for p in paths}
    if not paths:
        return result
    out = _run(["-validate", "-warning", "-error", "-a", "-G1", "-s", "-f", *paths])
    current = str(Path(paths[0]).resolve()) if len(paths) == 1 else None
    for line in out.splitlines():
        if line.startswith("======== "):
            current = str(Path(line[9:]).resolve())
            continue
        m = re.match(r"\[ExifTool\]\s+(Warning|Error)\s*:\s*(.*)$", line)
        if m and current and m.group(2) not in ("-", "0"):
            result.setdefault(current, []).append(m.group(2).strip())
        m = re.match(r"\[ExifTool\]\s+Validate\s*:\s*(.*)$", line)
        if m and current:
            result.setdefault(current, []).append("Validate: " + m.group(1).strip())
    return result


def _as_list(v: object) -> list[str]:
    if v is None:
        return []
    if isinstance(v, list):
        return [str(x) for x in v]
    return [str(v)]


def keywords(tags: dict[str, object]) -> dict[str, list[str]]:
    return {k: _as_list(tags.get(k)) for k in ("IPTC:Keywords", "XMP-dc:Subject", "XMP-lr:HierarchicalSubject")}


def image_data(path: Path) -> bytes | None:
    """A JPEG's bytes from the first SOS marker on (None for non-JPEGs)."""
    from landmark_tagger.metadata import jpeg_header_end

    data = Path(path).read_bytes()
    if data[:2] != b"\xff\xd8":
        return None
    return data[jpeg_header_end(data) :]


@dataclass
class FileReport:
    path: Path
    before: dict[str, object]
    after: dict[str, object]
    changed: list[str] = field(default_factory=list)  # "tag: before -> after"
    new_warnings: list[str] = field(default_factory=list)
    image_data_same: bool | None = None
    compared: int = 0  # tags compared for equality

    @property
    def ok(self) -> bool:
        return not self.changed and not self.new_warnings and self.image_data_same is not False


def _short(v: object) -> str:
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) < 120 else s[:117] + "..."


def diff(before: dict[str, object], after: dict[str, object], location: bool = False) -> tuple[list[str], int]:
    """Tags that differ, other than those ltag owns; and how many tags were compared."""
    changed = []
    compared = 0
    for k in sorted(set(before) | set(after)):
        if OWNED.match(k) or POSITION.search(k):
            continue
        if k not in before and (MAY_APPEAR.match(k) or (location and LOCATION.match(k))):
            continue
        compared += 1
        if before.get(k, "<absent>") != after.get(k, "<absent>"):
            changed.append(f"{k}: {_short(before.get(k, '<absent>'))} -> {_short(after.get(k, '<absent>'))}")
    return changed, compared


def check_fidelity(
    paths: list[Path], apply: Callable[[list[Path]], object], location: bool = False
) -> list[FileReport]:
    """Snapshot ``paths`` with exiftool, run ``apply(paths)``, snapshot again and compare."""
    paths = [Path(p).resolve() for p in paths]
    before = read_tags(paths)
    warn_before = read_warnings(paths)
    data_before = {p: image_data(p) for p in paths}
    apply(paths)
    after = read_tags(paths)
    warn_after = read_warnings(paths)
    reports = []
    for p in paths:
        b, a = before.get(str(p), {}), after.get(str(p), {})
        changed, n = diff(b, a, location)
        old_w = set(warn_before.get(str(p), []))
        new_w = [w for w in warn_after.get(str(p), []) if w not in old_w]
        d0 = data_before[p]
        same = None if d0 is None else d0 == image_data(p)
        reports.append(FileReport(p, b, a, changed, new_w, same, n))
    return reports
