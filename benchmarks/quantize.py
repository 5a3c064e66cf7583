"""Would static int8 quantisation make the default model cheaper without moving its features? (docs/training.md)

onnxruntime ``quantize_static`` (QDQ, per-channel int8 weights, uint8 activations) of the bundle's model.onnx,
calibrated on photos from ``../shared/data/landmarks/`` with each calibration method, then on other photos:
cosine of the int8 ``embeddings`` and ``generic`` outputs to the float32 ones (mean and minimum), and CPU time per
photo on one thread (batch 16, best of 5). Writes only to a temporary folder.

    python benchmarks/quantize.py [--model DIR] [--calibrate 128] [--test 96]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LANDMARKS = ROOT.parent / "shared" / "data" / "landmarks"


def _session(path: Path):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def _ms_per_photo(sess, x: np.ndarray) -> float:
    sess.run(None, {"images": x})
    best = []
    for _ in range(5):
        t = time.thread_time()
        sess.run(None, {"images": x})
        best.append(time.thread_time() - t)
    return 1000 * min(best) / len(x)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main(argv: list[str] | None = None) -> int:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from landmark_tagger import decode, preprocess
    from landmark_tagger.bundle import load_bundle

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="bundle folder (default: the shipped one)")
    ap.add_argument("--calibrate", type=int, default=128)
    ap.add_argument("--test", type=int, default=96)
    args = ap.parse_args(argv)
    files = sorted(LANDMARKS.glob("*/*.jpg"))
    if len(files) < args.calibrate + args.test:
        print(f"needs {args.calibrate + args.test} photos under {LANDMARKS}", file=sys.stderr)
        return 1
    random.Random(0).shuffle(files)
    bundle = load_bundle(args.model, check_model=False)
    spec = bundle.preprocess
    side = preprocess.min_decode_side(spec)

    def arrays(paths: list[Path]) -> np.ndarray:
        return np.concatenate([preprocess.prepare(decode.decode_for_model(p, side), spec) for p in paths])

    cal = arrays(files[: args.calibrate])
    test = arrays(files[args.calibrate: args.calibrate + args.test])
    ref_sess = _session(bundle.model_path)
    ref = ref_sess.run(["embeddings", "generic"], {"images": test})
    print(f"model {bundle.model_id}: float32 {_ms_per_photo(ref_sess, test[:16]):.1f} ms/photo (one thread, batch 16); "
          f"{args.calibrate} calibration photos, {args.test} test photos")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.i = 0

        def get_next(self):
            if self.i >= len(cal):
                return None
            self.i += 16
            return {"images": cal[self.i - 16: self.i]}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(bundle.model_path), str(pre), skip_symbolic_shape=True)
        for name, method, extra in (("MinMax", CalibrationMethod.MinMax, {}),
                                    ("Entropy", CalibrationMethod.Entropy, {}),
                                    ("Percentile 99.99", CalibrationMethod.Percentile, {"CalibPercentile": 99.99})):
            out = Path(tmp) / "int8.onnx"
            quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method,
                            extra_options=extra)
            sess = _session(out)
            q = sess.run(["embeddings", "generic"], {"images": test})
            ce, cg = _cos(ref[0], q[0]), _cos(ref[1], q[1])
            print(f"int8, {name:16s}: {_ms_per_photo(sess, test[:16]):5.1f} ms/photo; cosine to float32: embeddings "
                  f"mean {ce.mean():.3f} min {ce.min():.3f}, generic mean {cg.mean():.3f} min {cg.min():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
