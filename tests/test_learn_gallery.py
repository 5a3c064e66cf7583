"""The user gallery: threshold rule, confidence mapping, storage (atomic, no pickle), export/import, forget."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from landmark_tagger.user_gallery import (
    DEFAULT_MIN_SIMILARITY,
    MAX_THRESHOLD,
    REFERENCE_WEIGHT,
    WHITENED_BACKGROUND_MARGIN,
    WHITENED_MIN_SIMILARITY,
    WHITENED_RISE,
    Reference,
    UserGallery,
    UserGalleryError,
    gallery_whitening,
    landmark_threshold,
    learn_whitening,
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
    # import into another machine's gallery: merged by content hash, nothing duplicated
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


# ---------------------------------------------------------------------------------------------- whitening
def _nuisance_world(rng: np.random.Generator, d: int = 64, n_classes: int = 6, per_class: int = 20):
    """Landmarks whose photos differ mostly along a few shared 'nuisance' directions (light, season): the background
    (labelled photos of known landmarks) and two new landmarks A and B."""
    nuisance = np.eye(d)[:3]  # the first three axes

    def photos(centre: np.ndarray, n: int, shift: np.ndarray | None = None) -> np.ndarray:
        x = centre[None] + 0.05 * rng.normal(size=(n, d))
        x += (rng.normal(size=(n, 3)) * 1.5 if shift is None else shift[None]) @ nuisance
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def centre() -> np.ndarray:
        c = rng.normal(size=d)
        c[:3] = 0
        return c / np.linalg.norm(c)

    bg = np.concatenate([photos(centre(), per_class) for _ in range(n_classes)])
    labels = np.repeat(np.arange(n_classes), per_class)
    return photos, centre, bg, labels


def test_learned_whitening_damps_what_varies_within_a_landmark():
    rng = np.random.default_rng(7)
    photos, centre, bg, labels = _nuisance_world(rng)
    w = learn_whitening(bg, labels, shrink=0.05)
    assert w is not None and w.proj.shape == (bg.shape[1], bg.shape[1]) and w.info["landmarks"] == 6
    # the defining property: the (shrunk) intra-class covariance becomes the identity
    xn = bg / np.linalg.norm(bg, axis=1, keepdims=True)
    within = np.concatenate([xn[labels == c] - xn[labels == c].mean(0) for c in range(6)])
    cov = 2 * 20 * within.T @ within / (6 * 20 * 19)
    cov += 0.05 * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
    assert np.allclose(w.proj @ cov @ w.proj.T, np.eye(cov.shape[0]), atol=1e-3)
    # two new landmarks, their reference and query photos taken in opposite "light"
    a, b = centre(), centre()
    light = np.array([1.0, -0.8, 0.6])
    ref_a, ref_b = photos(a, 1, light), photos(b, 1, -light)
    q_a = photos(a, 5, -light)
    refs = np.concatenate([ref_a, ref_b])
    raw = q_a @ refs.T
    assert (raw.argmax(axis=1) == 1).all()  # raw cosine: the light decides, the query looks like B
    white = w.apply(q_a) @ w.apply(refs).T
    assert (white.argmax(axis=1) == 0).all()  # whitened: the landmark decides
    assert np.allclose(np.linalg.norm(w.apply(q_a), axis=1), 1.0, atol=1e-5)


def test_whitening_needs_labels_and_enough_photos():
    rng = np.random.default_rng(8)
    _, _, bg, labels = _nuisance_world(rng)
    assert learn_whitening(bg, None) is None
    assert learn_whitening(bg[:40], labels[:40]) is None  # fewer than MIN_WHITEN_PHOTOS
    assert learn_whitening(bg, np.zeros(len(bg), int)) is None  # one landmark only: nothing separates
    assert learn_whitening(bg, np.arange(len(bg))) is None  # no landmark seen twice
    assert learn_whitening(bg, labels.astype(str)) is not None  # catalog label ids work as well as indices


def test_gallery_scores_in_the_whitened_space_learned_from_its_background(tmp_path):
    rng = np.random.default_rng(9)
    photos, centre, bg, labels = _nuisance_world(rng)
    a, b = centre(), centre()
    light = np.array([1.0, -0.8, 0.6])
    g = UserGallery()
    g.add("A", _refs("a", 2), np.concatenate([photos(a, 1, light), photos(a, 1, light * 0.8)]), model_id="m1")
    g.add("B", _refs("b", 2), np.concatenate([photos(b, 1, -light), photos(b, 1, -light * 0.8)]), model_id="m1")
    q_a = photos(a, 6, -light)
    assert g.whitening is None and g.min_similarity == DEFAULT_MIN_SIMILARITY and g.rise is None
    assert [g.score(q_a, 0.5).name(i) for i in range(6)] == ["B"] * 6  # raw: fooled by the light
    g.set_distractors(bg, labels)
    # learned from the labelled background and the taught references (each counted REFERENCE_WEIGHT times)
    assert g.whitening is not None and g.whitening.info["background"] == len(bg)
    assert g.whitening.info["photos"] == len(bg) + 4 * REFERENCE_WEIGHT and g.whitening.info["landmarks"] == 8
    assert g.min_similarity == WHITENED_MIN_SIMILARITY and g.rise == WHITENED_RISE
    assert g.background_margin == WHITENED_BACKGROUND_MARGIN
    sc = g.score(q_a, 0.5)
    assert [sc.name(i) for i in range(6)] == ["A"] * 6 and (sc.confidence >= 0.5).all()
    # similarities are cosine similarities of whitened features; thresholds were derived in that space
    wq, wr = g.whitening.apply(q_a), g.whitening.apply(g.get("A").vectors)
    assert np.allclose(sc.similarity, (wq @ wr.T).max(axis=1), atol=1e-5)
    wb = g.whitening.apply(g.get("B").vectors)
    assert g.get("A").threshold == pytest.approx(max(WHITENED_MIN_SIMILARITY, float((wb @ wr.T).max())), abs=1e-5)
    # photos of the background's landmarks stay untagged
    assert (g.score(bg, 0.5).confidence < 0.5).all()
    # saved with its whitening (version 2); loads to the same scores, bit for bit
    p = tmp_path / "g.npz"
    g.save(p)
    with zipfile.ZipFile(p) as z:
        assert {"whiten_mean.npy", "whiten_proj.npy"} <= set(z.namelist())
    h = UserGallery.load(p)
    assert not h.legacy and np.array_equal(h.whitening.proj, g.whitening.proj)
    assert np.array_equal(h.score(q_a, 0.5).confidence, sc.confidence)
    # the background's labels are saved too: a forget re-learns the whitening without the forgotten references
    assert np.array_equal(h.background_labels, labels.astype(str))
    h.remove("B")
    assert h.whitening.info["photos"] == len(bg) + 2 * REFERENCE_WEIGHT
    assert not np.array_equal(h.whitening.proj, g.whitening.proj)
    only_bg = learn_whitening(bg, labels)
    assert np.allclose(gallery_whitening(bg, labels, [], weight=REFERENCE_WEIGHT).proj, only_bg.proj)
    # a background without labels: no whitening, the raw rule again
    g.set_distractors(bg)
    assert g.whitening is None and g.min_similarity == DEFAULT_MIN_SIMILARITY


def test_rise_reaches_full_confidence_above_the_threshold():
    s = np.linspace(-1, 1, 801)
    c = to_bundle_confidence(s, 0.2, 0.5, rise=0.1)
    assert np.all(np.diff(c) >= -1e-7)
    assert to_bundle_confidence(0.2, 0.2, 0.5, rise=0.1) == pytest.approx(0.5)
    assert to_bundle_confidence(0.25, 0.2, 0.5, rise=0.1) == pytest.approx(0.75)
    assert to_bundle_confidence(0.3, 0.2, 0.5, rise=0.1) == pytest.approx(1.0)
    assert np.array_equal(c >= 0.5 - 1e-7, s >= 0.2 - 1e-9)
    # rise 1 or more: the raw rule (confidence 1 at similarity 1)
    assert np.allclose(to_bundle_confidence(s, 0.6, 0.5, rise=1.0), to_bundle_confidence(s, 0.6, 0.5))


def test_version_1_gallery_keeps_working_until_re_derived(tmp_path):
    rng = np.random.default_rng(10)
    photos, centre, bg, labels = _nuisance_world(rng)
    g = UserGallery(min_similarity=0.42)
    g.add("A", _refs("a", 3), photos(centre(), 3), model_id="m1")
    g.set_distractors(bg)  # a version 1 gallery: background without labels, raw features
    # write it as ltag did before whitening (version 1, its own floor in the header)
    with np.load(io.BytesIO(g.to_bytes()), allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        arrays = {k: z[k] for k in z.files if k != "meta"}
    meta["version"] = 1
    old = tmp_path / "v1.npz"
    np.savez(old, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    h = UserGallery.load(old)
    assert h.legacy and h.whitening is None and h.min_similarity == pytest.approx(0.42)
    assert h.get("A").threshold == pytest.approx(g.get("A").threshold)
    q = photos(centre(), 4)
    assert np.array_equal(h.score(q, 0.5).confidence, g.score(q, 0.5).confidence)  # scores as before
    h.set_distractors(bg, labels)  # what the next ltag learn does: re-derived in the whitened space
    assert not h.legacy and h.whitening is not None and h.min_similarity == WHITENED_MIN_SIMILARITY
    h.save(tmp_path / "v2.npz")
    assert UserGallery.load(tmp_path / "v2.npz").whitening is not None


def test_import_into_an_empty_gallery_takes_the_background_and_its_whitening():
    rng = np.random.default_rng(11)
    photos, centre, bg, labels = _nuisance_world(rng)
    g = UserGallery()
    g.add("A", _refs("a", 2), photos(centre(), 2), model_id="m1")
    g.set_distractors(bg, labels)
    fresh = UserGallery()
    assert fresh.merge(UserGallery.from_bytes(g.to_bytes())) == (1, 2)
    assert fresh.whitening is not None and fresh.distractors.shape == g.distractors.shape
    assert fresh.get("A").threshold == pytest.approx(g.get("A").threshold, abs=1e-5)
