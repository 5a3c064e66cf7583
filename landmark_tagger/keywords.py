"""Keyword ownership: what ltag adds and removes, given what a file holds and what ltag owned before.

Rules (issue 4, "Writing keywords"):

- ltag never removes a keyword it does not own, and never writes a duplicate. Presence is exact
  (case-sensitive); a desired keyword whose case variant is already there (``taj mahal`` vs
  ``Taj Mahal``) is not added either, and not claimed.
- A keyword ltag owned that is gone from the file was deleted by the user: it becomes *suppressed*
  and is never added again.
- A re-decision removes ltag's old owned keywords that are no longer desired.
- A desired keyword already written by another tool or the user is left alone and not claimed as owned,
  so a later re-decision does not remove it.

Flat keywords (``dc:subject`` + IPTC 2:25) and hierarchical ones (``lr:hierarchicalSubject``,
``Landmarks|Taj Mahal``) are planned separately; an owned/suppressed entry containing ``|`` is
hierarchical (Lightroom uses ``|`` as the hierarchy separator, so flat keywords never contain it).
Owned and suppressed lists also go into the file's ``ltag:`` XMP namespace so they survive a lost catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class KeywordState:
    """What a file holds: flat keywords (XMP dc:subject, then IPTC ones not already there), hierarchical
    keywords, and ltag's own records from its XMP namespace."""

    flat: list[str]
    hierarchical: list[str]
    owned: list[str]
    ltag: dict[str, str]
    suppressed: list[str] = field(default_factory=list)


@dataclass
class KeywordEdit:
    """A change to apply: keywords to add/remove and ltag: properties to set (value None removes one).

    ``owned``/``suppressed`` (None: leave as is) are written to ltag:OwnedKeywords / ltag:SuppressedKeywords.
    ``location`` keys City, State, Country, CountryCode are written only where the file has no value.
    """

    add_flat: list[str] = field(default_factory=list)
    remove_flat: list[str] = field(default_factory=list)
    add_hier: list[str] = field(default_factory=list)
    remove_hier: list[str] = field(default_factory=list)
    ltag: dict[str, str | None] = field(default_factory=dict)
    location: dict[str, str] | None = None
    owned: list[str] | None = None
    suppressed: list[str] | None = None

    def is_empty(self) -> bool:
        return not (
            self.add_flat
            or self.remove_flat
            or self.add_hier
            or self.remove_hier
            or self.ltag
            or self.location
            or self.owned is not None
            or self.suppressed is not None
        )


@dataclass
class KeywordPlan:
    edit: KeywordEdit
    owned: list[str]
    suppressed: list[str]
    changed: bool


def _unique(items) -> list[str]:
    seen: set[str] = set()
    out = []
    for s in items:
        if s and s not in seen:
            seen.add(s)
            out.append(s)
    return out


def is_hier(keyword: str) -> bool:
    return "|" in keyword


def plan(
    state: KeywordState,
    desired_flat: list[str],
    desired_hier: list[str],
    owned_before: list[str] | None = None,
    suppressed_before: list[str] | None = None,
) -> KeywordPlan:
    """Decide the keyword edit for one file.

    Args:
        state: what the file holds now (:func:`landmark_tagger.metadata.read_keywords`).
        desired_flat: flat keywords ltag wants on the file now.
        desired_hier: hierarchical keywords ltag wants on the file now.
        owned_before: keywords ltag owned after its last write (catalog); merged with the file's ltag:OwnedKeywords.
        suppressed_before: keywords the user deleted before (catalog); merged with the file's list.

    Returns:
        The edit, the owned and suppressed lists after it, and whether anything changes.
    """
    owned_prev = _unique(list(owned_before or []) + list(state.owned))
    suppressed = _unique(list(suppressed_before or []) + list(state.suppressed))
    present = {False: list(state.flat), True: list(state.hierarchical)}
    present_set = {k: set(v) for k, v in present.items()}
    present_fold = {k: {s.casefold() for s in v} for k, v in present.items()}
    desired = {False: _unique(desired_flat), True: _unique(desired_hier)}
    adds: dict[bool, list[str]] = {False: [], True: []}
    removes: dict[bool, list[str]] = {False: [], True: []}
    owned: list[str] = []

    for k in owned_prev:
        h = is_hier(k)
        if k not in present_set[h]:
            if k not in suppressed:
                suppressed.append(k)  # the user deleted a keyword of ltag's: never add it again
            continue
        if k in desired[h]:
            owned.append(k)
        else:
            removes[h].append(k)
    sup = set(suppressed)
    for h in (False, True):
        for k in desired[h]:
            if k in present_set[h] or k in sup:
                continue
            if k.casefold() in present_fold[h]:
                continue  # a case variant is already there: do not add a near-duplicate
            adds[h].append(k)
            owned.append(k)
    owned = _unique(owned)
    changed = bool(adds[False] or adds[True] or removes[False] or removes[True])
    changed = changed or owned != list(state.owned) or suppressed != list(state.suppressed)
    edit = KeywordEdit(
        add_flat=adds[False],
        remove_flat=removes[False],
        add_hier=adds[True],
        remove_hier=removes[True],
        owned=owned,
        suppressed=suppressed,
    )
    return KeywordPlan(edit=edit, owned=owned, suppressed=suppressed, changed=changed)
