"""A training run end to end on a tiny synthetic dataset: train -> export a bundle -> load it with the runtime.

Also checks that ``--resume`` continues exactly (same weights as an uninterrupted run).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.config import get_preset  # noqa: E402
from training.train import train  # noqa: E402


def _cfg(**kw):
    cfg = get_preset("lite0-cpu")
    cfg.img_size = 64
    cfg.batch_size = 8
    cfg.epochs = 1
    cfg.cache_copies = 2
    cfg.checkpoint_every = 1
    cfg.tta_views = ["center", "flip"]
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_train_export_reload(synthetic_dataset: Path, tmp_path: Path):
    from landmark_tagger import bundle as bundle_mod
    from landmark_tagger.preprocess import prepare
    from landmark_tagger.recognizer import Recognizer
    from training.data import load_rgb
    from training.export import export_run

    run = tmp_path / "run"
    ckpt = train(_cfg(), synthetic_dataset, run, max_steps=2, progress=False)
    assert ckpt.is_file() and (run / "split.json").is_file()
    split = json.loads((run / "split.json").read_text())
    assert set(split.values()) == {"train", "calib", "report"}

    out = export_run(run, synthetic_dataset, tmp_path / "bundle", label_info=None, parity_sizes=(64, 80))
    b = bundle_mod.load_bundle(out)
    assert [lab.id for lab in b.labels] == sorted(["red_blobs", "green_stripes", "blue_checks"])
    assert b.preprocess.size == 64 and b.preprocess.views == ("center", "flip")
    assert b.provenance["onnx_parity"]["max_abs_diff"] < 5e-3
    assert 0.0 <= b.threshold <= 1.0
    r = Recognizer(b)
    photo = load_rgb(next((synthetic_dataset / "green_stripes").glob("*.jpg")))
    emb, gen = r.embed([prepare(photo, b.preprocess)])
    assert emb.shape == (1, b.embedding_dim) and gen.shape == (1, b.generic_dim)
    assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-4)
    (d,) = r.decide(emb, gen)
    assert d.label in (None, *b.label_ids) and 0.0 <= d.confidence <= 1.0


def test_resume_is_exact(synthetic_dataset: Path, tmp_path: Path):
    cfg = _cfg(freeze_blocks=-1, cache_copies=0, batch_size=4, img_size=48)  # the augmenting (no-cache) path
    a = train(cfg, synthetic_dataset, tmp_path / "a", max_steps=3, progress=False)
    train(cfg, synthetic_dataset, tmp_path / "b", max_steps=2, progress=False)
    b = train(cfg, synthetic_dataset, tmp_path / "b", max_steps=3, resume=True, progress=False)
    sa = torch.load(a, map_location="cpu", weights_only=False)
    sb = torch.load(b, map_location="cpu", weights_only=False)
    assert sa["step"] == sb["step"] == 3
    for k, v in sa["model"].items():
        torch.testing.assert_close(sb["model"][k], v, msg=k)
