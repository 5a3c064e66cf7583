"""ltag learn tells the user when a taught name is also one of the model's own landmarks."""

from __future__ import annotations

import shutil

import pytest
from conftest import camera_file

from landmark_tagger import learn
from landmark_tagger.walk import walk


@pytest.fixture(scope="module")
def rec(bundle):
    from landmark_tagger.recognizer import Recognizer

    return Recognizer(bundle)


def _groups(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    shutil.copy(camera_file("nikon_d90_DSC_0003.JPG"), d / "DSC_0003.JPG")
    return walk([d]).groups


def test_name_of_a_bundle_landmark_is_noted(tmp_path, rec):
    name = rec.bundle.labels[0].name
    rep = learn.learn(name.upper(), _groups(tmp_path), recognizer=rec, gallery_path=tmp_path / "g.npz")
    assert rep.added == 1
    assert any("also one of the model's own landmarks" in p and rec.bundle.labels[0].id in p for p in rep.problems)


def test_a_new_name_gets_no_note(tmp_path, rec):
    rep = learn.learn("Our Chapel", _groups(tmp_path), recognizer=rec, gallery_path=tmp_path / "g.npz")
    assert rep.added == 1 and rep.problems == []
