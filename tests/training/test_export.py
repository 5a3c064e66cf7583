"""ONNX export of the real backbone: checker + parity with torch at several image sizes, fp16 weight storage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from training.config import get_preset  # noqa: E402
from training.export import check_onnx, export_onnx_from_checkpoint, store_weights_fp16  # noqa: E402
from training.model import create_model  # noqa: E402


@pytest.fixture(scope="module")
def net():
    cfg = get_preset("lite0-cpu")
    model = create_model(cfg, num_classes=5, pretrained=True).net  # the offline ImageNet weights, checked strictly
    model.pool.p.data.fill_(2.5)
    return model.eval()


def test_onnx_parity_at_several_sizes(net, tmp_path: Path):
    path = tmp_path / "model.onnx"
    export_onnx_from_checkpoint(net, path, 224)
    report = check_onnx(net, path, sizes=(128, 224, 200, 288))
    assert report["max_abs_diff"] < 1e-4, report
    assert set(report) >= {"128", "224", "200", "288"}

    half = tmp_path / "half.onnx"
    shutil.copy(path, half)
    store_weights_fp16(half)
    assert half.stat().st_size < 0.6 * path.stat().st_size
    report16 = check_onnx(net, half, sizes=(224,))
    assert report16["max_abs_diff"] < 5e-3, report16


def test_pretrained_mapping_rejects_a_wrong_checkpoint(tmp_path: Path):
    from training._compat import import_timm
    from training.pretrained import PretrainedWeightsError, load_pretrained, offline_weights_path

    timm = import_timm()
    lite2 = timm.create_model("tf_efficientnet_lite2", pretrained=False, num_classes=0, global_pool="")
    with pytest.raises(PretrainedWeightsError, match="checkpoint has 296 tensors, model expects 384"):
        load_pretrained(lite2, offline_weights_path("tf_efficientnet_lite0"))
    # same tensor count, one tensor of the wrong shape
    sd = torch.load(offline_weights_path("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    sd["_conv_head.weight"] = sd["_conv_head.weight"][:, :300]
    torch.save(sd, tmp_path / "bad.pth")
    lite0 = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0, global_pool="")
    with pytest.raises(PretrainedWeightsError, match=r"_conv_head.weight \(1280, 300, 1, 1\) does not fit"):
        load_pretrained(lite0, tmp_path / "bad.pth")
