"""Bundle loading and validation, preprocessing, and the Recognizer end to end on a real (tiny) ONNX bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from landmark_tagger.bundle import DEFAULT_BUNDLE, load_bundle
from landmark_tagger.errors import BundleError
from landmark_tagger.preprocess import Preprocess, min_decode_side, prepare
from landmark_tagger.recognizer import Decision, Recognizer, UserGalleryLike

TINY = Path(__file__).parent / "fixtures" / "tiny_bundle"


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(TINY, dst)
    return dst


def _edit_labels(folder: Path, edit) -> None:
    data = json.loads((folder / "labels.json").read_text())
    edit(data)
    (folder / "labels.json").write_text(json.dumps(data))


def test_tiny_bundle_loads():
    b = load_bundle(TINY)
    assert b.model_id == "tiny-colour-4-test-20261130"
    assert [lab.id for lab in b.labels] == ["red_square", "green_park", "blue_mosque"]
    assert b.labels[0].name == "Red Square" and b.labels[0].lat == pytest.approx(55.7539)
    assert b.preprocess.size == 32 and b.preprocess.views == ("center", "flip")
    assert b.threshold == 0.5
    emb, lab = b.gallery()
    assert emb.shape == (9, 4) and emb.dtype == np.float32 and lab.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_default_bundle_is_shipped_and_valid():
    root = Path(__file__).parents[1] / "models" / DEFAULT_BUNDLE
    if not root.is_dir():
        pytest.skip("default bundle not built in this checkout")
    b = load_bundle()
    assert b.path.resolve() in (root.resolve(), (Path(__import__("landmark_tagger").__file__).parent / "_models" /
                                                 DEFAULT_BUNDLE).resolve())
    assert len(b.labels) == 24 and all(lab.lat is not None for lab in b.labels)
    assert 0 < b.threshold < 1
    emb, lab = b.gallery()
    assert emb.shape[1] == b.embedding_dim and set(lab.tolist()) == set(range(24))
    gen = b.gallery_generic()  # shipped: the background of user-taught landmarks (docs/learn.md)
    assert gen is not None and gen.shape == (len(emb), b.generic_dim)
    assert np.allclose(np.linalg.norm(gen, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("missing", ["model.onnx", "labels.json", "gallery.npz"])
def test_missing_file(tiny: Path, missing: str):
    (tiny / missing).unlink()
    with pytest.raises(BundleError, match=f"missing {missing}"):
        load_bundle(tiny)


def test_not_a_folder(tmp_path: Path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")


def test_bad_json(tiny: Path):
    (tiny / "labels.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tiny)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(schema_version=99), "schema_version 99 is not supported"),
    (lambda d: d.pop("model_id"), "missing field 'model_id'"),
    (lambda d: d.update(labels=[]), "'labels' is empty"),
    (lambda d: d["labels"][1].update(id="red_square"), "duplicated"),
    (lambda d: d["labels"][0].update(lat=123.0), "lat"),
    (lambda d: d["labels"][0].pop("lon"), "only one of lat/lon"),
    (lambda d: d["scoring"].update(threshold=1.5), r"threshold must be a number in \[0, 1\]"),
    (lambda d: d["scoring"].update(rule="magic"), "unknown scoring rule 'magic'"),
    (lambda d: d["scoring"]["calibration"].update(raw=[0.9, 0.5, 1.0]), "strictly increasing"),
    (lambda d: d["preprocess"].update(views=["sideways"]), "unknown view 'sideways'"),
    (lambda d: d["preprocess"].update(std=[0.5, 0.0, 0.5]), "std > 0"),
    (lambda d: d["preprocess"].update(interpolation="nearest-ish"), "interpolation"),
])
def test_invalid_labels_json(tiny: Path, edit, message: str):
    _edit_labels(tiny, edit)
    with pytest.raises(BundleError, match=message):
        load_bundle(tiny)


def test_dimension_mismatch_between_onnx_and_labels(tiny: Path):
    # the gallery is checked against embedding_dim first; rebuild it so only the ONNX output disagrees
    _edit_labels(tiny, lambda d: d.update(generic_dim=16))
    with pytest.raises(BundleError, match=r"output 'generic' has shape .* but labels.json generic_dim is 16"):
        load_bundle(tiny)


def test_gallery_label_out_of_range(tiny: Path):
    with np.load(tiny / "gallery.npz") as z:
        emb, lab = z["embeddings"], z["labels"].copy()
    lab[0] = 7
    np.savez(tiny / "gallery.npz", embeddings=emb, labels=lab)
    with pytest.raises(BundleError, match=r"label indices must be in \[0, 2\], found 0..7"):
        load_bundle(tiny)


def test_gallery_wrong_dim(tiny: Path):
    np.savez(tiny / "gallery.npz", embeddings=np.ones((3, 5), np.float32) / np.sqrt(5), labels=np.zeros(3, np.int64))
    with pytest.raises(BundleError, match=r"shape \(3, 5\), expected \(N, 4\)"):
        load_bundle(tiny)


def _with_generic(folder: Path, gen: np.ndarray) -> None:
    with np.load(folder / "gallery.npz") as z:
        emb, lab = z["embeddings"], z["labels"]
    np.savez(folder / "gallery.npz", embeddings=emb, labels=lab, generic=gen)


def test_gallery_generic_is_optional_and_loaded_when_present(tiny: Path):
    assert load_bundle(tiny).gallery_generic() is None
    rng = np.random.default_rng(0)
    gen = rng.normal(size=(9, 8))
    gen /= np.linalg.norm(gen, axis=1, keepdims=True)
    _with_generic(tiny, gen.astype(np.float16))
    b = load_bundle(tiny)
    got = b.gallery_generic()
    assert got.shape == (9, 8) and got.dtype == np.float32
    assert np.allclose(got, gen, atol=2e-3) and np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
    assert b.gallery()[0].shape == (9, 4)  # the embeddings are untouched


@pytest.mark.parametrize("gen, message", [
    (np.ones((8, 8), np.float16) / np.sqrt(8), r"generic has shape \(8, 8\), expected \(9, 8\)"),
    (np.ones((9, 4), np.float32) / 2, r"generic has shape \(9, 4\), expected \(9, 8\)"),
    (np.ones(9, np.float32), r"generic has shape \(9,\)"),
    (np.full((9, 8), np.nan, np.float32), "generic contains NaN"),
    (np.ones((9, 8), np.float32), "generic rows are not L2-normalised"),
    (np.ones((9, 8), np.int64), "generic must be float16 or float32"),
])
def test_gallery_generic_invalid(tiny: Path, gen, message: str):
    _with_generic(tiny, gen)
    with pytest.raises(BundleError, match=message):
        load_bundle(tiny)


def test_gallery_generic_is_read_only_when_asked(tiny: Path):
    """A scan needs only the embeddings: the generic rows (10 MB in the shipped bundle) are read and checked when
    first asked for, and a bad generic array is still reported then (load_bundle checks both up front)."""
    _with_generic(tiny, np.full((9, 8), np.nan, np.float32))
    b = load_bundle(tiny, check_model=False, check_gallery=False)
    assert b.gallery()[0].shape == (9, 4)
    assert b._gallery_generic is None
    with pytest.raises(BundleError, match="generic contains NaN"):
        b.gallery_generic()


def test_gallery_not_normalised(tiny: Path):
    np.savez(tiny / "gallery.npz", embeddings=np.ones((3, 4), np.float32), labels=np.zeros(3, np.int64))
    with pytest.raises(BundleError, match="not L2-normalised"):
        load_bundle(tiny)


def test_corrupt_onnx(tiny: Path):
    (tiny / "model.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(BundleError, match="onnxruntime cannot load the model"):
        load_bundle(tiny)


def test_preprocess_views_and_min_side():
    spec = Preprocess(32, (0.5,) * 3, (0.5,) * 3, views=("center", "flip", "zoom1.5"))
    assert min_decode_side(spec) == 48
    # a left-dark / right-bright image: the flip view mirrors it, the zoom view is the centre of the centre crop
    a = np.zeros((40, 60, 3), np.uint8)
    a[:, 30:] = 255
    x = prepare(Image.fromarray(a), spec)
    assert x.shape == (3, 3, 32, 32) and x.dtype == np.float32
    assert x[0, 0, :, 0].mean() == pytest.approx(-1.0) and x[0, 0, :, -1].mean() == pytest.approx(1.0)
    np.testing.assert_allclose(x[1], x[0][:, :, ::-1])
    assert x[2].min() == pytest.approx(-1.0) and x[2].max() == pytest.approx(1.0)


def test_recognizer_end_to_end_on_tiny_bundle():
    b = load_bundle(TINY)
    r = Recognizer(b)
    imgs = [Image.new("RGB", (50, 60), c) for c in [(220, 20, 20), (10, 180, 10), (20, 20, 250), (128, 128, 128)]]
    emb, gen = r.embed([prepare(i, b.preprocess) for i in imgs])
    assert emb.shape == (4, 4) and gen.shape == (4, 8)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    decisions = r.decide(emb, gen)
    assert [d.label for d in decisions] == ["red_square", "green_park", "blue_mosque", None]
    assert decisions[0].name == "Red Square" and decisions[0].source == "bundle"
    assert all(d.confidence >= b.threshold for d in decisions[:3]) and decisions[3].confidence < b.threshold
    # a stricter threshold turns the least certain photo into unknown
    strict = Recognizer(b, threshold=min(d.confidence for d in decisions[:3]) + 1e-6)
    assert sum(d.label is None for d in strict.decide(emb, gen)) == 2


def test_normalising_by_table_lookup_gives_the_formulas_float32_values():
    """preprocess.to_input (a per-channel lookup table over the 256 byte values; used for every model input) must
    give bit for bit what ``(x / 255 - mean) / std`` in float32 gives, for every byte value and any mean/std."""
    from landmark_tagger.preprocess import prepare_views, to_input

    every = np.arange(256 * 3, dtype=np.uint32).reshape(16, 16, 3) % 256
    for mean, std in [((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                      ((0.0, 0.1, 0.9), (1.0, 0.3, 2.0))]:
        spec = Preprocess(size=16, mean=mean, std=std, views=("center", "flip"))
        img = Image.fromarray(every.astype(np.uint8))
        views = prepare_views(img, spec)
        assert views.dtype == np.uint8 and views.shape == (2, 16, 16, 3)
        want = (views.astype(np.float32) * np.float32(1.0 / 255.0) - np.asarray(mean, np.float32)) / np.asarray(
            std, np.float32)
        got = to_input(views, spec)
        assert got.dtype == np.float32 and got.shape == (2, 3, 16, 16) and got.flags.c_contiguous
        assert np.array_equal(got.view(np.uint32), np.ascontiguousarray(want.transpose(0, 3, 1, 2)).view(np.uint32))
        assert np.array_equal(prepare(img, spec), got)


@pytest.mark.parametrize("rows", [2, 3])
def test_fixed_row_sessions_embed_exactly_as_the_dynamic_one(rows: int):
    """A session made for exactly ``rows`` images per call (the scan's one-photo-at-a-time path: shapes fixed, the
    exported padding folded) gives the dynamic session's embeddings; a short last call is padded and trimmed
    (3 rows per call: 8 views = 3 + 3 + 2)."""
    b = load_bundle(TINY)
    dynamic, fixed = Recognizer(b), Recognizer(b, fixed_rows=rows)
    assert fixed.session.get_inputs()[0].shape == [rows, 3, b.preprocess.size, b.preprocess.size]
    assert dynamic.session.get_inputs()[0].shape[0] == "batch"
    imgs = [Image.new("RGB", (50, 60), c) for c in [(220, 20, 20), (10, 180, 10), (20, 20, 250), (128, 128, 128)]]
    arrays = [prepare(i, b.preprocess) for i in imgs]  # 2 views each
    for a, c in zip(dynamic.embed(arrays), fixed.embed(arrays), strict=True):
        np.testing.assert_allclose(a, c, atol=1e-6)
    one = [arrays[2]]
    for a, c in zip(dynamic.embed(one), fixed.embed(one), strict=True):
        np.testing.assert_allclose(a, c, atol=1e-6)


class _FixedUserGallery:
    def __init__(self, answers):
        self.answers = answers

    def decide_generic(self, generic):
        assert generic.shape[1] == 8
        return self.answers


def test_user_gallery_merge_user_wins_ties():
    b = load_bundle(TINY)
    imgs = [Image.new("RGB", (40, 40), c) for c in [(220, 20, 20), (128, 128, 128), (10, 180, 10)]]
    plain = Recognizer(b)
    emb, gen = plain.embed([prepare(i, b.preprocess) for i in imgs])
    base = plain.decide(emb, gen)
    user = _FixedUserGallery([
        Decision("my_red", "My Red", base[0].confidence, "user"),   # tie with the bundle: user wins
        Decision("fjord", "Fjord", 0.9, "user"),                     # bundle says unknown: user decides
        Decision("weak", "Weak", 0.2, "user"),                       # below threshold: bundle decision stays
    ])
    r = Recognizer(b, user_gallery=user)
    assert isinstance(user, UserGalleryLike)
    out = r.decide(emb, gen)
    assert (out[0].label, out[0].source) == ("my_red", "user")
    assert (out[1].label, out[1].source) == ("fjord", "user")
    assert (out[2].label, out[2].source) == ("green_park", "bundle")


def test_model_info_cli_text_and_json():
    import json as _json

    from typer.testing import CliRunner

    from landmark_tagger.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["model", "info", "--model", str(TINY)])
    assert res.exit_code == 0, res.output
    assert "tiny-colour-4-test-20261130" in res.output and "Blue Mosque" in res.output
    assert "threshold 0.5" in res.output
    res = runner.invoke(app, ["model", "info", "--model", str(TINY), "--json"])
    data = _json.loads(res.stdout)
    assert data["model_id"] == "tiny-colour-4-test-20261130" and data["gallery_size"] == 9
    assert [lab["id"] for lab in data["labels"]] == ["red_square", "green_park", "blue_mosque"]


def test_model_info_cli_reports_a_bad_bundle(tmp_path: Path):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "landmark_tagger", "model", "info", "--model", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert "missing labels.json" in " ".join(res.stderr.split())  # rich may wrap the line
