"""Keyword ownership policy, exercised through real rewrites of a camera JPEG."""

from __future__ import annotations

import pytest
from conftest import camera_file

from landmark_tagger import metadata
from landmark_tagger.errors import MetadataError
from landmark_tagger.keywords import KeywordState, plan

TAJ = (["Taj Mahal", "Agra", "India"], ["Landmarks|Taj Mahal", "Places|India|Uttar Pradesh|Agra"])
FORT = (["Red Fort", "Delhi", "India"], ["Landmarks|Red Fort", "Places|India|Delhi"])


def state(flat=(), hier=(), owned=(), suppressed=()) -> KeywordState:
    return KeywordState(list(flat), list(hier), list(owned), {}, list(suppressed))


def apply(data: bytes, desired, owned_before=None, suppressed_before=None):
    st = metadata.read_jpeg_keywords(data)
    p = plan(st, desired[0], desired[1], owned_before, suppressed_before)
    return metadata.rewrite_jpeg(data, p.edit), p


def test_fresh_file_gets_everything_and_owns_it():
    p = plan(state(), *TAJ)
    assert p.edit.add_flat == TAJ[0] and p.edit.add_hier == TAJ[1]
    assert p.owned == TAJ[0] + TAJ[1] and p.changed


def test_foreign_keywords_are_neither_added_nor_claimed_nor_removed():
    p = plan(state(flat=["India", "holiday"], hier=["Places|India|Uttar Pradesh|Agra"]), *TAJ)
    assert p.edit.add_flat == ["Taj Mahal", "Agra"] and p.edit.add_hier == ["Landmarks|Taj Mahal"]
    assert "India" not in p.owned and p.edit.remove_flat == []
    again = plan(state(flat=["India", "holiday", "Taj Mahal", "Agra"]), *FORT, owned_before=p.owned)
    assert sorted(again.edit.remove_flat) == ["Agra", "Taj Mahal"]  # never India nor holiday


def test_case_variant_is_not_duplicated():
    p = plan(state(flat=["taj mahal"], hier=["landmarks|taj mahal"]), *TAJ)
    assert "Taj Mahal" not in p.edit.add_flat and "Landmarks|Taj Mahal" not in p.edit.add_hier
    assert "Taj Mahal" not in p.owned


def test_round_trip_on_a_real_file_redecision_and_user_deletion():
    data = camera_file("canon_g2_IMG_0308.JPG").read_bytes()
    one, p1 = apply(data, TAJ)
    assert metadata.read_jpeg_keywords(one).owned == p1.owned  # ownership travels in the file
    same, p_same = apply(one, TAJ, p1.owned)
    assert not p_same.changed and same == one  # idempotent rescan

    # re-decision, catalog lost: ownership is read from the file's ltag: namespace
    two, p2 = apply(one, FORT)
    st2 = metadata.read_jpeg_keywords(two)
    assert "Taj Mahal" not in st2.flat and "Red Fort" in st2.flat and "India" in st2.flat
    assert "Landmarks|Taj Mahal" not in st2.hierarchical

    # the user deletes "Delhi" (and ltag's ownership record of it survives in the catalog)
    st2.flat.remove("Delhi")
    p3 = plan(st2, *FORT, owned_before=p2.owned)
    assert "Delhi" in p3.suppressed and "Delhi" not in p3.edit.add_flat
    p4 = plan(state(flat=[k for k in st2.flat], hier=st2.hierarchical, owned=p3.owned), *FORT, None, p3.suppressed)
    assert "Delhi" not in p4.edit.add_flat and "Delhi" in p4.suppressed


def test_suppressed_list_survives_in_the_file():
    data = camera_file("canon_g2_IMG_0308.JPG").read_bytes()
    st = metadata.read_jpeg_keywords(data)
    p = plan(st, *TAJ, owned_before=["Old Landmark"])  # owned before, gone now: the user deleted it
    out = metadata.rewrite_jpeg(data, p.edit)
    assert metadata.read_jpeg_keywords(out).suppressed == ["Old Landmark"]
    p2 = plan(metadata.read_jpeg_keywords(out), ["Old Landmark"], [])
    assert p2.edit.add_flat == []


def test_unknown_decision_removes_only_ltag_keywords():
    st = state(flat=["Taj Mahal", "mine"], hier=["Landmarks|Taj Mahal"], owned=["Taj Mahal", "Landmarks|Taj Mahal"])
    p = plan(st, [], [])
    assert p.edit.remove_flat == ["Taj Mahal"] and p.edit.remove_hier == ["Landmarks|Taj Mahal"]
    assert p.owned == [] and p.changed


def test_read_keywords_from_paths(tmp_path):
    data = camera_file("canon_g2_IMG_0308.JPG").read_bytes()
    jpg = tmp_path / "a.jpg"
    jpg.write_bytes(metadata.rewrite_jpeg(data, metadata.KeywordEdit(add_flat=["Agra"], ltag={"Landmark": "x"})))
    assert metadata.read_keywords(jpg).flat == ["Agra"] and metadata.read_keywords(jpg).ltag == {"Landmark": "x"}
    side = tmp_path / "a.NEF.xmp"
    side.write_bytes(metadata.rewrite_sidecar(None, metadata.KeywordEdit(add_hier=["Landmarks|Agra Fort"])))
    assert metadata.read_keywords(side).hierarchical == ["Landmarks|Agra Fort"]
    for bad in (tmp_path / "missing.jpg", camera_file("CRW_0113.CRW")):
        with pytest.raises(MetadataError):
            metadata.read_keywords(bad)
