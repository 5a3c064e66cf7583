"""Export a trained run as a model bundle: model.onnx + labels.json + gallery.npz (docs/model-bundle.md).

The ONNX graph holds only :class:`training.model.LandmarkNet` (no ArcFace head): input ``images`` (N, 3, H, W)
float32 with dynamic batch and image size, outputs ``embeddings`` (N, D) and ``generic`` (N, G), both
L2-normalised. It is checked with ``onnx.checker`` and against torch at several image sizes (max abs diff
reported in the bundle's provenance). Weights can be stored as float16 (cast to float32 when onnxruntime
loads the model), which halves the file; parity is checked on the stored model.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch

from training.model import LandmarkNet

log = logging.getLogger(__name__)

PARITY_SIZES = (160, 224, 256, 320)
LABEL_INFO_DIR = Path(__file__).parent / "label_info"


class _Exportable(torch.nn.Module):
    def __init__(self, net: LandmarkNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(images)


def export_onnx_from_checkpoint(net: LandmarkNet, path: Path, size: int, opset: int = 17) -> None:
    """Write the ONNX graph of ``net`` (eval mode) with dynamic batch, height and width."""
    import warnings

    net.eval()
    x = torch.randn(1, 3, size, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Exportable(net), (x,), str(path), input_names=["images"],
                          output_names=["embeddings", "generic"], opset_version=opset, dynamo=False,
                          dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                                        "embeddings": {0: "batch"}, "generic": {0: "batch"}})


def store_weights_fp16(path: Path, min_elements: int = 1024) -> None:
    """Rewrite large float32 initializers as float16 + a Cast back to float32 (compute stays float32)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    casts, keep = [], []
    for init in graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and np.prod(init.dims) >= min_elements:
            arr = numpy_helper.to_array(init).astype(np.float16)
            half = numpy_helper.from_array(arr, init.name + "__fp16")
            keep.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                          name=init.name + "__cast"))
        else:
            keep.append(init)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.save(model, str(path))


def check_onnx(net: LandmarkNet, path: Path, sizes=PARITY_SIZES, images: np.ndarray | None = None) -> dict:
    """onnx.checker plus torch-vs-onnxruntime parity at several image sizes: max abs diffs per output."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    report = {}
    net.eval()
    for s in sizes:
        x = torch.randn(2, 3, s, s, generator=gen) if images is None or images.shape[-1] != s else torch.from_numpy(
            images)
        with torch.no_grad():
            e, g = net(x)
        oe, og = sess.run(["embeddings", "generic"], {"images": x.numpy()})
        report[str(s)] = {"embeddings": float(np.abs(oe - e.numpy()).max()),
                          "generic": float(np.abs(og - g.numpy()).max())}
    report["max_abs_diff"] = max(max(v["embeddings"], v["generic"]) for k, v in report.items() if k != "max_abs_diff")
    return report


def _git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def label_entries(classes: list[str], label_info: Path | None = None) -> list[dict]:
    """labels.json entries: names and coordinates from a label-info file when it lists the class, else the id."""
    info: dict[str, dict] = {}
    files = [label_info] if label_info else sorted(LABEL_INFO_DIR.glob("*.json"))
    for f in files:
        for item in json.loads(Path(f).read_text())["labels"]:
            info.setdefault(item["id"], item)
    out = []
    for c in classes:
        entry = {"id": c, "name": c.replace("_", " ").title()}
        entry.update({k: v for k, v in info.get(c, {}).items()})
        out.append(entry)
    return out


def export_run(run: Path, data: Path, out: Path, *, checkpoint: Path | None = None, model_id: str | None = None,
               views: tuple[str, ...] | None = None, rule: str | None = None,
               weights: str = "fp16", label_info: Path | None = None, data_name: str = "indian-monuments",
               data_note: str | None = None, parity_sizes: tuple[int, ...] = PARITY_SIZES,
               open_set_from: Path | None = None, unknown_untagged: float = 0.97) -> Path:
    """Evaluate a run and write its bundle to ``out`` (replaced atomically-ish: written beside, then renamed)."""
    from landmark_tagger.bundle import SCHEMA_VERSION, load_bundle
    from landmark_tagger.preprocess import Preprocess
    from training.evaluate import embed_samples, evaluate_embeddings, run_arrays
    from training.train import load_checkpoint, prepare_data

    run, out = Path(run), Path(out)
    ckpt = checkpoint or run / "checkpoints" / "last.pt"
    cfg, meta, model = load_checkpoint(ckpt)
    samples, split, classes = prepare_data(cfg, data, run)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    onnx_path = tmp / "model.onnx"
    export_onnx_from_checkpoint(model.net, onnx_path, cfg.img_size)
    if weights == "fp16":
        store_weights_fp16(onnx_path)
    parity = check_onnx(model.net, onnx_path, sizes=parity_sizes)
    log.info("ONNX parity (max abs diff vs torch): %.2e", parity["max_abs_diff"])
    if parity["max_abs_diff"] > (5e-3 if weights == "fp16" else 1e-4):
        raise RuntimeError(f"ONNX parity check failed: {parity}")
    spec = Preprocess(cfg.img_size, tuple(meta["mean"]), tuple(meta["std"]), views=tuple(views or cfg.tta_views))
    emb, gen = embed_samples(onnx_path, samples, spec, cache=run / f"emb_{weights}_{'_'.join(spec.views)}.npz")
    sp, labels, groups, holdout = run_arrays(run, data, samples, split, classes, cfg.holdout_labels)
    from training.evaluate import SITE_KM, class_sites

    site = class_sites(classes, label_info)
    unknown_raw = None
    if open_set_from is not None:
        from training.evaluate import heldout_raw_scores

        unknown_raw = heldout_raw_scores(open_set_from, data, tuple(spec.views))
    report = evaluate_embeddings(emb, sp, labels, groups, holdout, rule=rule, site=site, unknown_raw=unknown_raw,
                                 unknown_untagged=unknown_untagged)
    report["open_set_sites"] = {"km": SITE_KM, "shared": sorted(
        [classes[i] for i in range(len(classes)) if (site == site[i]).sum() > 1])}
    keep = report.pop("gallery_keep")
    tr = (sp == "train") & ~holdout
    # generic: the references' generic features (same rows), the background that user-taught landmarks must beat
    np.savez_compressed(tmp / "gallery.npz", embeddings=emb[tr][keep].astype(np.float16),
                        labels=labels[tr][keep].astype(np.int16), generic=gen[tr][keep].astype(np.float16))
    date = dt.date.today().strftime("%Y%m%d")
    short = cfg.backbone.replace("tf_efficientnet_", "")
    model_id = model_id or f"{short}-gem-{meta['embed_dim']}-{data_name}-{date}"
    labels_json = {
        "schema_version": SCHEMA_VERSION,
        "model_id": model_id,
        "labels": label_entries(classes, label_info),
        "embedding_dim": int(meta["embed_dim"]),
        "generic_dim": int(meta["feat_dim"]),
        "preprocess": spec.to_dict(),
        "scoring": {**report["scoring"], "target_precision": report["target_precision"],
                    "meaning": "confidence >= threshold gave >= 99% precision on held-out calibration photos "
                               "mixed with an open-set stand-in (each photo scored again with its own landmark's site removed from the gallery)"},
        "provenance": {
            "backbone": cfg.backbone, "pooling": "gem", "gem_p": float(model.net.pool.p.detach()[0]),
            "embedding": f"Linear({meta['feat_dim']}->{meta['embed_dim']}) + BatchNorm1d + L2",
            "head": f"ArcFace(s={cfg.arcface_s}, m={cfg.arcface_m}) (training only)",
            "training": {k: v for k, v in cfg.to_dict().items() if k not in ("holdout_labels",)},
            "holdout_labels": cfg.holdout_labels,
            "training_data": data_note or data_name,
            "date": dt.date.today().isoformat(), "git_sha": _git_sha(), "checkpoint_step": None,
            "onnx_parity": parity, "weights": weights,
            "metrics": {k: report[k] for k in ("report", "rules", "gallery", "open_set_sites", "target_reached",
                                               "unknown_calibration") if k in report},
            "open_set_calibration_run": None if open_set_from is None else Path(open_set_from).name,
        },
    }
    (tmp / "labels.json").write_text(json.dumps(labels_json, indent=1, default=float) + "\n")
    load_bundle(tmp)  # validates everything, including the ONNX outputs against labels.json
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)
    (run / "evaluation.json").write_text(json.dumps({k: v for k, v in report.items()}, indent=1, default=float))
    log.info("\n%s", report["summary"])
    return out
