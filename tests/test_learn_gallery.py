"""The user gallery: threshold rule, confidence mapping, storage (atomic, no pickle), export/import, forget."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from landmark_tagger.user_gallery import (
    MAX_THRESHOLD,
    Reference,
    UserGallery,
    UserGalleryError,
    landmark_threshold,
    to_bundle_confidence,
)


def _unit(rng: np.random.Generator, n: int, d: int = 64, around: np.ndarray | None = None, spread: float = 0.3):
    x = rng.normal(size=(n, d)).astype(np.float32)
    if around is not None:
        x = around[None] + spread * x / np.sqrt(d)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _refs(prefix: str, n: int) -> list[Reference]:
    return [Reference(f"{prefix}{i:062d}", f"/photos/{prefix}_{i}.jpg") for i in range(n)]


@pytest.mark.parametrize("bt", [0.3, 0.55, 0.8])
def test_threshold_maps_to_bundle_threshold_and_is_monotonic(bt):
    t = np.array([0.6, 0.75, 0.9])
    assert np.allclose(to_bundle_confidence(t, t, bt), bt, atol=1e-6)
    s = np.linspace(-1, 1, 401)
    for ti in t:
        c = to_bundle_confidence(s, ti, bt)
        assert np.all(np.diff(c) >= -1e-7)
        assert c.min() >= 0 and c.max() <= 1
        assert c[-1] == pytest.approx(1.0)
        # tagged (>= bundle threshold) exactly when the similarity reaches the landmark's threshold
        assert np.array_equal(c >= bt - 1e-7, s >= ti - 1e-9)


def test_landmark_threshold_rises_above_close_impostors_and_respects_floor_and_cap():
    rng = np.random.default_rng(1)
    centre = _unit(rng, 1)[0]
    own = _unit(rng, 5, around=centre, spread=0.5)
    far = _unit(rng, 20)
    t_far, stats = landmark_threshold(own, far, min_similarity=0.7, margin=0.0)
    assert t_far == pytest.approx(0.7)  # random impostors are far below the floor
    assert stats["loo_min"] is not None and stats["loo_min"] <= stats["loo_median"]
    near = _unit(rng, 3, around=centre, spread=0.8)
    imp = float((near @ own.T).max())
    t_near, stats = landmark_threshold(own, near, min_similarity=0.5, margin=0.02)
    assert stats["impostor"] == pytest.approx(imp)
    assert t_near == pytest.approx(min(max(0.5, imp + 0.02), MAX_THRESHOLD))
    t_dup, _ = landmark_threshold(own, own.copy(), min_similarity=0.5)
    assert t_dup == MAX_THRESHOLD
    t_one, stats = landmark_threshold(own[:1], None, min_similarity=0.6)
    assert t_one == 0.6 and stats["loo_min"] is None and stats["impostor"] is None


def test_score_picks_nearest_landmark_and_user_confidence_on_bundle_scale():
    rng = np.random.default_rng(2)
    a, b = _unit(rng, 2)
    g = UserGallery(min_similarity=0.5)
    g.add("Ilulissat Icefjord", _refs("a", 4), _unit(rng, 4, around=a, spread=0.4), model_id="m1", parent="Greenland")
    g.add("Chapel", _refs("b", 4), _unit(rng, 4, around=b, spread=0.4), model_id="m1")
    q = np.concatenate([_unit(rng, 3, around=a, spread=0.4), _unit(rng, 3, around=b, spread=0.4), _unit(rng, 3)])
    sc = g.score(q, bundle_threshold=0.6)
    names = [sc.name(i) for i in range(9)]
    assert names[:3] == ["Ilulissat Icefjord"] * 3 and names[3:6] == ["Chapel"] * 3
    assert (sc.confidence[:6] >= 0.6).all()  # close to their own references
    assert (sc.confidence[6:] < 0.6).all()  # random directions: far below every threshold
    lm = g.get("ilulissat  icefjord")  # case- and space-insensitive
    assert lm is not None and lm.parent == "Greenland" and lm.label == "user:Ilulissat Icefjord"


def test_save_load_export_import_round_trip_without_pickle(tmp_path):
    rng = np.random.default_rng(3)
    g = UserGallery(min_similarity=0.6)
    g.add("Ilulissat Icefjord", _refs("a", 3), _unit(rng, 3), model_id="m1", parent="Greenland", lat=69.1, lon=-49.9)
    g.add("Kapel <b>&\"'", _refs("b", 2), _unit(rng, 2), model_id="m1")
    p = tmp_path / "catalog.gallery.npz"
    g.save(p)
    with zipfile.ZipFile(p) as z:  # plain arrays: loadable with allow_pickle=False
        assert sorted(z.namelist()) == ["background.npy", "meta.npy", "vectors.npy"]
    h = UserGallery.load(p)
    assert h.model_id == "m1" and h.names() == g.names()
    for name in g.names():
        x, y = g.get(name), h.get(name)
        assert np.allclose(x.vectors, y.vectors) and x.refs == y.refs and x.threshold == pytest.approx(y.threshold)
        assert (x.parent, x.lat, x.lon) == (y.parent, y.lat, y.lon)
    # import into another machine's gallery: merged by sha256, nothing duplicated
    other = UserGallery()
    other.add("Ilulissat Icefjord", _refs("a", 1), g.get("Ilulissat Icefjord").vectors[:1], model_id="m1")
    n_lm, n_ref = other.merge(UserGallery.load(p))
    assert (n_lm, n_ref) == (1, 4)
    assert len(other.get("Ilulissat Icefjord").refs) == 3
    assert other.merge(UserGallery.load(p)) == (0, 0)


def test_forget_and_remove_reference_and_model_mismatch(tmp_path):
    rng = np.random.default_rng(4)
    g = UserGallery()
    g.add("A", _refs("a", 2), _unit(rng, 2), model_id="m1")
    g.add("B", _refs("b", 1), _unit(rng, 1), model_id="m1")
    assert g.remove("a") is not None and "A" not in g and g.remove("A") is None
    assert g.remove_reference("b" + "0" * 62) == ["B"] and len(g) == 0
    g.add("C", _refs("c", 1), _unit(rng, 1), model_id="m1")
    with pytest.raises(UserGalleryError, match="learned with model m1"):
        g.add("D", _refs("d", 1), _unit(rng, 1), model_id="m2")


def test_missing_file_is_empty_and_garbage_is_reported(tmp_path):
    assert len(UserGallery.load(tmp_path / "none.npz")) == 0
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"<html>not a gallery</html>")
    with pytest.raises(UserGalleryError, match="not an ltag user gallery"):
        UserGallery.load(bad)
    other = tmp_path / "other.npz"
    np.savez(other, meta=np.frombuffer(b'{"format": "x"}', np.uint8), vectors=np.zeros((0, 2), np.float32))
    with pytest.raises(UserGalleryError, match="not an ltag user gallery"):
        UserGallery.load(other)


def test_background_blocks_photos_closer_to_another_landmark_and_is_saved():
    rng = np.random.default_rng(5)
    a, b = _unit(rng, 2)
    g = UserGallery(min_similarity=0.3)
    g.add("A", _refs("a", 3), _unit(rng, 3, around=a, spread=0.3), model_id="m1")
    lookalike_centre = _unit(rng, 1, around=a, spread=1.2)[0]  # another landmark that resembles A
    q_a = _unit(rng, 4, around=a, spread=0.3)
    q_look = _unit(rng, 4, around=lookalike_centre, spread=0.05)
    assert (g.score(q_look, 0.5).similarity > 0.3).all()  # without background: above A's floor
    g.set_distractors(_unit(rng, 6, around=lookalike_centre, spread=0.05))  # photos of the lookalike
    sc_a, sc_look = g.score(q_a, 0.5), g.score(q_look, 0.5)
    assert (sc_a.confidence >= 0.5).all()  # photos of A are still A
    assert (sc_look.confidence < 0.5).all()  # photos of the lookalike are nearer the background: blocked
    h = UserGallery.from_bytes(g.to_bytes())  # the background is saved (float16) with the gallery
    assert h.distractors.shape == g.distractors.shape
    assert (h.score(q_look, 0.5).confidence < 0.5).all() and (h.score(q_a, 0.5).confidence >= 0.5).all()


def test_distractor_quantile_option_raises_thresholds_and_survives_a_forget():
    rng = np.random.default_rng(6)
    a, b = _unit(rng, 2)
    g = UserGallery(min_similarity=0.3)
    g.distractor_quantile = 1.0  # the closest distractor counts
    g.add("A", _refs("a", 3), _unit(rng, 3, around=a, spread=0.3), model_id="m1")
    g.add("B", _refs("b", 3), _unit(rng, 3, around=b, spread=0.3), model_id="m1")
    t_before = g.get("A").threshold
    lookalike = _unit(rng, 4, around=a, spread=0.6)
    g.set_distractors(lookalike)
    closest = float((lookalike @ g.get("A").vectors.T).max())
    assert g.get("A").threshold == pytest.approx(min(max(t_before, closest), MAX_THRESHOLD))
    assert g.get("A").threshold > t_before and g.get("A").stats["distractor"] == pytest.approx(closest)
    saved = UserGallery.from_bytes(g.to_bytes())
    saved.distractors = np.zeros((0, 0), np.float32)  # recalibration without them keeps the recorded value
    saved.distractor_quantile = 1.0
    saved.remove("B")
    assert saved.get("A").threshold == pytest.approx(g.get("A").threshold)
