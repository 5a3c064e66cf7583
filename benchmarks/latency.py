"""CPU latency of the model against the decode it rides on.

Prints, per photo: decoding a 24-megapixel JPEG for the model (PIL draft, as ``ltag scan`` does), preprocessing
(all test-time views), and onnxruntime inference (per view count, batch 1 and batch 16), all at the thread count
given (default 2, this machine's cores). The 24 MP JPEG is synthesised (a landmark photo upscaled to 6000x4000
with sensor-like noise) in a temporary folder; nothing is written to the repository.

    python benchmarks/latency.py [--model DIR] [--threads 2] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
LANDMARKS = ROOT.parent / "shared" / "data" / "landmarks"


def _median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def make_24mp_jpeg(folder: Path) -> Path:
    src = next(iter(sorted(LANDMARKS.glob("taj_mahal/*.jpg"))), None)
    rng = np.random.default_rng(0)
    if src is not None:
        img = Image.open(src).convert("RGB").resize((6000, 4000), Image.Resampling.BICUBIC)
        a = np.asarray(img, dtype=np.int16)
    else:
        a = np.full((4000, 6000, 3), 128, np.int16)
    a = a + rng.normal(0, 6, a.shape).astype(np.int16)
    path = folder / "24mp.jpg"
    Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(path, quality=92)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="bundle folder (default: the shipped one)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)

    from landmark_tagger.bundle import load_bundle
    from landmark_tagger.preprocess import min_decode_side, prepare, prepare_views, to_input

    bundle = load_bundle(args.model)
    spec = bundle.preprocess
    side = min_decode_side(spec)
    sess = bundle.session(threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        jpeg = make_24mp_jpeg(Path(tmp))

        def decode_full() -> Image.Image:
            with Image.open(jpeg) as im:
                return im.convert("RGB")

        def decode_draft() -> Image.Image:
            try:
                from landmark_tagger.decode import decode_for_model

                return decode_for_model(jpeg, side)
            except ImportError:
                with Image.open(jpeg) as im:
                    im.draft("RGB", (side, side))
                    return im.convert("RGB")

        img = decode_draft()
        t_draft = _median_ms(decode_draft, args.repeat)
        t_full = _median_ms(decode_full, max(3, args.repeat // 5))
        t_prep = _median_ms(lambda: prepare(img, spec), args.repeat)
    print(f"bundle {bundle.model_id}: {spec.size} px, views {', '.join(spec.views)}; {args.threads} threads")
    print(f"decode 24 MP JPEG, full resolution:       {t_full:8.1f} ms")
    print(f"decode 24 MP JPEG, PIL draft (>= {side} px): {t_draft:8.1f} ms  ({img.size[0]}x{img.size[1]})")
    print(f"preprocess ({len(spec.views)} views):                 {t_prep:8.1f} ms")
    x1 = np.random.default_rng(0).normal(size=(1, 3, spec.size, spec.size)).astype(np.float32)
    rows = {}
    for views in sorted({1, len(spec.views)}):
        for batch in (1, 16):
            x = np.repeat(x1, views * batch, axis=0)
            ms = _median_ms(lambda x=x: sess.run(None, {"images": x}), max(3, args.repeat // (batch // 4 + 1)))
            rows[(views, batch)] = ms / batch
            print(f"model, {views} view(s), batch {batch:2d}:           {ms / batch:8.1f} ms per photo")
    per_photo = rows[(len(spec.views), 16)]
    print(f"model ({len(spec.views)} views, batched) / draft decode:   {per_photo / t_draft:8.2f}x")
    # What ltag scan runs beside its decoders: one thread, one photo per call. A dynamic session against one made
    # for exactly one photo's views (Bundle.session(batch=V): fixed shapes, the exported padding folded), in turns.
    v = len(spec.views)
    x = np.repeat(x1, v, axis=0)
    dyn, fixed = bundle.session(threads=1), bundle.session(threads=1, batch=v)
    same = all(np.array_equal(a, b) for a, b in zip(dyn.run(None, {"images": x}), fixed.run(None, {"images": x}),
                                                    strict=True))
    t_dyn, t_fixed = [], []
    for _ in range(5):
        t_dyn.append(_median_ms(lambda: dyn.run(None, {"images": x}), args.repeat))
        t_fixed.append(_median_ms(lambda: fixed.run(None, {"images": x}), args.repeat))
    md, mf = statistics.median(t_dyn), statistics.median(t_fixed)
    print(f"one thread, one photo per call: dynamic shapes {md:.1f} ms, fixed (batch {v}, {spec.size} px) {mf:.1f} ms "
          f"= {mf / md:.2f}x; outputs identical: {same}")
    # What a decoding worker sends the main process per photo: its uint8 views (what ltag scan sends) against the
    # float32 model input, through a pipe; CPU time on each side, and the main process's normalisation.
    views = prepare_views(img, spec)
    t_norm = _median_ms(lambda: to_input(views, spec), args.repeat)
    for name, payload in (("float32 input", to_input(views, spec)), ("uint8 views", views)):
        send_ms, recv_ms = _pipe_cpu_ms(payload, 200)
        print(f"send one photo's {name} ({payload.nbytes // 1024} KB) to another process: {send_ms:.2f} ms CPU "
              f"sending, {recv_ms:.2f} ms receiving")
    print(f"normalise the uint8 views in the main process (preprocess.to_input): {t_norm:.2f} ms")
    return 0


def _pipe_sender(conn: Any, payload: np.ndarray, n: int) -> None:
    t = time.process_time()
    for _ in range(n):
        conn.send({"array": payload})
    conn.send(time.process_time() - t)


def _pipe_cpu_ms(payload: np.ndarray, n: int) -> tuple[float, float]:
    """CPU ms per message of sending ``payload`` through a multiprocessing pipe: (sender, receiver)."""
    import multiprocessing as mp

    recv, send = mp.Pipe(duplex=False)
    proc = mp.get_context("fork").Process(target=_pipe_sender, args=(send, payload, n))
    proc.start()
    t = time.process_time()
    for _ in range(n):
        recv.recv()
    receiver = time.process_time() - t
    sender = recv.recv()
    proc.join()
    return sender / n * 1000, receiver / n * 1000


if __name__ == "__main__":
    sys.exit(main())
