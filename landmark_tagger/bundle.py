"""Load and validate a model bundle (the contract is docs/model-bundle.md).

A bundle is a folder with ``model.onnx``, ``labels.json`` and ``gallery.npz``. :func:`load_bundle` checks
everything it can without running the model (files, JSON schema, label fields, preprocessing, scoring,
gallery shapes and label indices) and, with ``check_model=True``, opens the ONNX model and checks its input
and output names and dimensions against labels.json. Every problem raises :class:`BundleError` saying which
file is wrong and how.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landmark_tagger.errors import BundleError
from landmark_tagger.preprocess import INTERPOLATIONS, RESIZE_RULES, Preprocess, parse_view
from landmark_tagger.scoring import ScoringRule

SCHEMA_VERSION = 1
DEFAULT_BUNDLE = "lite0-gem-512-indian-monuments"
MODEL_FILE, LABELS_FILE, GALLERY_FILE = "model.onnx", "labels.json", "gallery.npz"
INPUT_NAME, OUTPUT_EMB, OUTPUT_GENERIC = "images", "embeddings", "generic"


@dataclass(frozen=True)
class Label:
    """A landmark the bundle knows: stable ``id`` (keyword-safe), display ``name`` and, where known, location."""

    id: str
    name: str
    lat: float | None = None
    lon: float | None = None
    radius_km: float | None = None
    country: str | None = None
    region: str | None = None
    city: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Bundle:
    """A validated model bundle."""

    path: Path
    model_id: str
    labels: list[Label]
    preprocess: Preprocess
    scoring: ScoringRule
    embedding_dim: int
    generic_dim: int
    provenance: dict[str, Any]
    raw: dict[str, Any]
    _gallery: tuple[Any, Any] | None = field(default=None, repr=False)
    _gallery_generic: Any = field(default=None, repr=False)
    _sessions: dict[tuple[str, ...], Any] = field(default_factory=dict, repr=False)

    @property
    def threshold(self) -> float:
        """Default decision threshold on the confidence scale (>= 99% precision on held-out photos)."""
        return self.scoring.threshold

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def label_ids(self) -> list[str]:
        return [lab.id for lab in self.labels]

    def label(self, label_id: str) -> Label | None:
        """The label with this id, or None."""
        for lab in self.labels:
            if lab.id == label_id:
                return lab
        return None

    def gallery(self):
        """``(embeddings (N, D) float32 L2-normalised, label_index (N,) int64)`` of the reference gallery."""
        if self._gallery is None:
            self._gallery = _load_gallery(self.path / GALLERY_FILE, self.embedding_dim, len(self.labels))
        return self._gallery

    def gallery_generic(self):
        """Generic features ``(N, G)`` float32 L2-normalised of the gallery's reference photos (same rows as
        :meth:`gallery`), or None when the bundle does not carry them (the optional ``generic`` array).

        Loaded on first use, apart from the embeddings: a scan needs them only for taught landmarks, and reading
        and checking them costs ~75 ms of CPU (10 MB of float32) beside the decoders."""
        if self._gallery_generic is None:
            n = self.gallery()[0].shape[0]
            self._gallery_generic = (_load_generic(self.path / GALLERY_FILE, n, self.generic_dim),)
        return self._gallery_generic[0]

    def session(self, providers: list[str] | None = None, threads: int | None = None, batch: int | None = None):
        """An onnxruntime session for ``model.onnx`` (cached per provider list, threads and batch), I/O checked
        against labels.json.

        ``batch``: a session for calls of exactly that many images of ``preprocess.size`` pixels (the input's
        dynamic axes ``batch``, ``height`` and ``width``, as training/export.py names them, are fixed). onnxruntime
        then folds the shape arithmetic of the exported TF-"same" padding and fuses the pads into the convolutions:
        identical outputs, ~20-25% less CPU per image on one thread (``benchmarks/latency.py``). A model whose axes
        are named otherwise keeps them dynamic (``session.get_inputs()[0].shape`` tells)."""
        from landmark_tagger.fsutil import deferred_signals

        with deferred_signals():  # a Ctrl-C in its module initialisation would read "ImportError: initialization failed"
            import onnxruntime as ort

        providers = list(providers) if providers else ["CPUExecutionProvider"]
        available = set(ort.get_available_providers())
        use = [p for p in providers if p in available] or ["CPUExecutionProvider"]
        key = tuple(use) + (str(threads), str(batch))
        if key not in self._sessions:
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if threads:
                opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            if batch:
                for axis, value in (("batch", batch), ("height", self.preprocess.size),
                                    ("width", self.preprocess.size)):
                    opts.add_free_dimension_override_by_name(axis, value)
            try:
                sess = ort.InferenceSession(str(self.model_path), sess_options=opts, providers=use)
            except Exception as e:  # onnxruntime raises its own exception types
                raise BundleError(f"{self.model_path}: onnxruntime cannot load the model ({e})") from e
            _check_session(sess, self)
            self._sessions[key] = sess
        return self._sessions[key]


def _err(path: Path, msg: str) -> BundleError:
    return BundleError(f"{path}: {msg}")


def _need(d: dict, key: str, typ, path: Path, where: str = ""):
    if key not in d:
        raise _err(path, f"missing field {where}{key!r}")
    v = d[key]
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, typ) or isinstance(v, bool) and typ is not bool:
        raise _err(path, f"field {where}{key!r} must be {typ.__name__ if isinstance(typ, type) else typ}, "
                         f"got {type(v).__name__}")
    return v


def _opt_float(d: dict, key: str, path: Path, where: str, lo: float, hi: float) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise _err(path, f"field {where}{key!r} must be a number in [{lo}, {hi}], got {v!r}")
    return float(v)


def parse_labels_json(data: dict, path: Path) -> tuple:
    """Validate the labels.json dictionary; returns the parsed pieces (raises BundleError)."""
    if not isinstance(data, dict):
        raise _err(path, "top level must be a JSON object")
    version = _need(data, "schema_version", int, path)
    if version != SCHEMA_VERSION:
        raise _err(path, f"schema_version {version} is not supported (this ltag reads {SCHEMA_VERSION}); "
                         "upgrade ltag or re-export the bundle")
    model_id = _need(data, "model_id", str, path)
    raw_labels = _need(data, "labels", list, path)
    if not raw_labels:
        raise _err(path, "'labels' is empty")
    labels, seen = [], set()
    for i, item in enumerate(raw_labels):
        where = f"labels[{i}]."
        if not isinstance(item, dict):
            raise _err(path, f"labels[{i}] must be an object")
        lid = _need(item, "id", str, path, where)
        if not lid or lid in seen:
            raise _err(path, f"labels[{i}].id {lid!r} is empty or duplicated")
        seen.add(lid)
        name = _need(item, "name", str, path, where)
        lat = _opt_float(item, "lat", path, where, -90, 90)
        lon = _opt_float(item, "lon", path, where, -180, 180)
        if (lat is None) != (lon is None):
            raise _err(path, f"labels[{i}] has only one of lat/lon")
        radius = _opt_float(item, "radius_km", path, where, 0, 20000)
        known = {"id", "name", "lat", "lon", "radius_km", "country", "region", "city"}
        labels.append(Label(lid, name, lat, lon, radius, item.get("country"), item.get("region"), item.get("city"),
                            {k: v for k, v in item.items() if k not in known}))
    emb_dim = _need(data, "embedding_dim", int, path)
    gen_dim = _need(data, "generic_dim", int, path)
    if emb_dim < 1 or gen_dim < 1:
        raise _err(path, "embedding_dim and generic_dim must be positive")
    pp = _need(data, "preprocess", dict, path)
    size = _need(pp, "size", int, path, "preprocess.")
    if not 16 <= size <= 2048:
        raise _err(path, f"preprocess.size {size} is outside [16, 2048]")
    mean, std = _need(pp, "mean", list, path, "preprocess."), _need(pp, "std", list, path, "preprocess.")
    if len(mean) != 3 or len(std) != 3 or not all(isinstance(x, (int, float)) for x in mean + std) or min(std) <= 0:
        raise _err(path, "preprocess.mean and preprocess.std must be 3 numbers each (std > 0)")
    resize = pp.get("resize", "short-side-center-crop")
    if resize not in RESIZE_RULES:
        raise _err(path, f"preprocess.resize {resize!r} is unknown (known: {', '.join(RESIZE_RULES)})")
    interp = pp.get("interpolation", "bilinear")
    if interp not in INTERPOLATIONS:
        raise _err(path, f"preprocess.interpolation {interp!r} is unknown (known: {', '.join(INTERPOLATIONS)})")
    views = pp.get("views", ["center"])
    if not isinstance(views, list) or not views:
        raise _err(path, "preprocess.views must be a non-empty list")
    for v in views:
        try:
            parse_view(v)
        except (ValueError, TypeError) as e:
            raise _err(path, f"preprocess.views: {e}") from None
    preprocess = Preprocess(size, tuple(float(x) for x in mean), tuple(float(x) for x in std), resize, interp,
                            tuple(views))
    sc = _need(data, "scoring", dict, path)
    threshold = sc.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise _err(path, f"scoring.threshold must be a number in [0, 1] (the confidence scale), got {threshold!r}")
    try:
        scoring = ScoringRule.from_dict(sc)
    except (KeyError, TypeError, ValueError) as e:
        raise _err(path, f"scoring section is invalid: {e}") from None
    provenance = data.get("provenance", {})
    if not isinstance(provenance, dict):
        raise _err(path, "provenance must be an object")
    return model_id, labels, preprocess, scoring, emb_dim, gen_dim, provenance


def _npz_arrays(path: Path, names: tuple[str, ...]) -> tuple[dict[str, Any], list[str]]:
    """The arrays ``names`` that the gallery file holds (only those are read: a zip member each), and the names of
    all its arrays; a missing or damaged file is a BundleError."""
    import numpy as np

    if not path.is_file():
        raise _err(path, "missing reference gallery (gallery.npz with 'embeddings' and 'labels')")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {n: z[n] for n in names if n in z.files}, list(z.files)
    except Exception as e:  # zipfile/ValueError/OSError from a damaged file or member
        raise _err(path, f"cannot be read as a numpy .npz archive ({e})") from e


def _load_gallery(path: Path, dim: int, n_labels: int):
    """``(embeddings, labels)``, checked (the optional ``generic`` array is :func:`_load_generic`'s)."""
    import numpy as np

    arrays, files = _npz_arrays(path, ("embeddings", "labels"))
    if len(arrays) < 2:
        raise _err(path, f"needs arrays 'embeddings' and 'labels', has {sorted(files)}")
    emb, lab = arrays["embeddings"], arrays["labels"]
    if emb.ndim != 2 or emb.shape[1] != dim:
        raise _err(path, f"embeddings have shape {emb.shape}, expected (N, {dim}) from labels.json embedding_dim")
    if emb.dtype not in (np.float16, np.float32):
        raise _err(path, f"embeddings must be float16 or float32, got {emb.dtype}")
    if lab.ndim != 1 or lab.shape[0] != emb.shape[0]:
        raise _err(path, f"labels have shape {lab.shape}, expected ({emb.shape[0]},)")
    if not np.issubdtype(lab.dtype, np.integer):
        raise _err(path, f"labels must be integers, got {lab.dtype}")
    if emb.shape[0] == 0:
        raise _err(path, "the gallery is empty")
    if lab.min() < 0 or lab.max() >= n_labels:
        raise _err(path, f"label indices must be in [0, {n_labels - 1}], found {int(lab.min())}..{int(lab.max())}")
    emb = _unit_rows(path, emb, "embeddings contain NaN or infinity", "embeddings are not L2-normalised")
    return emb, lab.astype(np.int64)


def _load_generic(path: Path, n: int, generic_dim: int | None = None):
    """The gallery's optional ``generic`` array (``n`` rows), checked, or None when the file has none
    (docs/model-bundle.md)."""
    gen = _npz_arrays(path, ("generic",))[0].get("generic")
    return None if gen is None else _check_generic(path, gen, n, generic_dim)


def _unit_rows(path: Path, a, not_finite: str, not_unit: str):
    """``a`` as float32 with exactly unit rows; a BundleError (with these messages) when it holds NaN/inf or was
    not L2-normalised."""
    import numpy as np

    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise _err(path, not_finite)
    norms = np.linalg.norm(a, axis=1)
    if np.any(np.abs(norms - 1) > 1e-2):
        raise _err(path, not_unit)
    return a / norms[:, None]


def _check_generic(path: Path, gen, n: int, generic_dim: int | None):
    import numpy as np

    if generic_dim is not None and (gen.ndim != 2 or gen.shape != (n, generic_dim)):
        raise _err(path, f"generic has shape {gen.shape}, expected ({n}, {generic_dim}): one row per gallery "
                         "embedding, generic_dim columns from labels.json")
    if gen.ndim != 2 or gen.shape[0] != n:
        raise _err(path, f"generic has shape {gen.shape}, expected ({n}, G): one row per gallery embedding")
    if gen.dtype not in (np.float16, np.float32):
        raise _err(path, f"generic must be float16 or float32, got {gen.dtype}")
    return _unit_rows(path, gen, "generic contains NaN or infinity", "generic rows are not L2-normalised")


def _check_session(sess, bundle: Bundle) -> None:
    path = bundle.model_path
    inputs = sess.get_inputs()
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise _err(path, f"expected one input named {INPUT_NAME!r}, found {[i.name for i in inputs]}")
    shape = inputs[0].shape
    if len(shape) != 4 or shape[1] not in (3, "3"):
        raise _err(path, f"input {INPUT_NAME!r} must be NCHW with 3 channels, has shape {shape}")
    outs = {o.name: o.shape for o in sess.get_outputs()}
    for name, dim, field_name in ((OUTPUT_EMB, bundle.embedding_dim, "embedding_dim"),
                                  (OUTPUT_GENERIC, bundle.generic_dim, "generic_dim")):
        if name not in outs:
            raise _err(path, f"missing output {name!r} (outputs: {sorted(outs)})")
        shp = outs[name]
        if len(shp) != 2 or (isinstance(shp[1], int) and shp[1] != dim):
            raise _err(path, f"output {name!r} has shape {shp} but labels.json {field_name} is {dim}")


def bundle_search_path() -> list[Path]:
    """Folders searched for the shipped bundles: the wheel's ``landmark_tagger/_models``, then the repo's ``models/``."""
    here = Path(__file__).resolve()
    return [here.parent / "_models", here.parents[1] / "models"]


def default_bundle_path() -> Path:
    """Folder of the shipped default bundle (raises BundleError if it is not installed)."""
    for base in bundle_search_path():
        if (base / DEFAULT_BUNDLE / LABELS_FILE).is_file():
            return base / DEFAULT_BUNDLE
    tried = ", ".join(str(b / DEFAULT_BUNDLE) for b in bundle_search_path())
    raise BundleError(f"the default model bundle {DEFAULT_BUNDLE!r} is not installed (looked in {tried}); "
                      "reinstall ltag or pass --model DIR")


def load_bundle(path: Path | str | None = None, *, check_model: bool = True, check_gallery: bool = True) -> Bundle:
    """Load and validate a bundle folder (``None``: the shipped default bundle).

    Args:
        path: bundle folder, or its labels.json.
        check_model: also open model.onnx with onnxruntime and check its inputs and outputs.
        check_gallery: also load and check gallery.npz now (otherwise on first use: :meth:`Bundle.gallery` raises
            the same errors then).

    Raises:
        BundleError: naming the file and the problem.
    """
    folder = default_bundle_path() if path is None else Path(path).expanduser()
    if folder.is_file() and folder.name == LABELS_FILE:
        folder = folder.parent
    if not folder.is_dir():
        raise BundleError(f"{folder}: model bundle folder does not exist")
    for name in (LABELS_FILE, MODEL_FILE, GALLERY_FILE):
        if not (folder / name).is_file():
            raise _err(folder, f"missing {name} (a bundle needs {MODEL_FILE}, {LABELS_FILE} and {GALLERY_FILE})")
    lpath = folder / LABELS_FILE
    try:
        data = json.loads(lpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _err(lpath, f"is not valid JSON ({e})") from None
    model_id, labels, preprocess, scoring, emb_dim, gen_dim, provenance = parse_labels_json(data, lpath)
    bundle = Bundle(folder, model_id, labels, preprocess, scoring, emb_dim, gen_dim, provenance, data)
    if check_gallery:
        bundle.gallery()
        bundle.gallery_generic()
    if check_model:
        bundle.session()
    return bundle
