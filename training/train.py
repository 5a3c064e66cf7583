"""Training loop: ArcFace fine-tuning with checkpoints every N steps and exact ``--resume``.

Run with ``python -m training train --preset lite0-cpu --data ../shared/data/landmarks --out runs/lite0``.
A run folder holds ``config.json``, ``split.json`` (photo -> train/calib/report), ``classes.json``,
``checkpoints/last.pt`` (+ ``epochN.pt``), and ``train.log``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.config import TrainConfig
from training.data import Sample, augment, filter_min_images, load_rgb, scan_dataset, split_samples, to_tensor_array
from training.model import TrainNet, create_model

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- run set-up
def prepare_data(cfg: TrainConfig, data: Path, out: Path, layout: str = "auto", clean_csv: Path | None = None
                 ) -> tuple[list[Sample], dict[str, str], list[str]]:
    """Scan, filter and split the dataset; writes ``split.json`` and ``classes.json`` into ``out``.

    Returns all samples, the split map and the training classes (sorted; holdout labels excluded).
    """
    samples = filter_min_images(scan_dataset(data, layout, clean_csv), cfg.min_images_per_class)
    split_file = out / "split.json"
    if split_file.is_file():
        split = json.loads(split_file.read_text())
    else:
        split = split_samples(samples, cfg.split_fractions, cache=out / "phash.json")
        split_file.write_text(json.dumps(split, indent=0, sort_keys=True))
    unknown = set(cfg.holdout_labels) - {s.label for s in samples}
    if unknown:
        raise ValueError(f"holdout labels not in the dataset: {sorted(unknown)}")
    classes = sorted({s.label for s in samples} - set(cfg.holdout_labels))
    (out / "classes.json").write_text(json.dumps(classes, indent=1))
    return samples, split, classes


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then cosine (optionally with warm restarts)."""
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    total = cfg.epochs * steps_per_epoch
    if step < warm:
        return (step + 1) / warm
    t = step - warm
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t / max(1, total - warm))))
    if cfg.schedule == "cosine-restarts":
        period = cfg.restart_epochs * steps_per_epoch
        while t >= period:
            t -= period
            period *= 2
        return 0.5 * (1 + math.cos(math.pi * t / period))
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _sample_rng(seed: int, epoch: int, index: int, copy: int = 0) -> random.Random:
    return random.Random(f"{seed}:{epoch}:{index}:{copy}")


def _set_train_mode(model: TrainNet, freeze: int) -> None:
    model.train()
    if freeze >= 0:  # frozen trunk keeps its ImageNet batch-norm statistics
        b = model.net.backbone
        b.conv_stem.eval()
        b.bn1.eval()
        for block in b.blocks[:freeze]:
            block.eval()


# ---------------------------------------------------------------------------------------------- trunk cache
def trunk_cache_path(cfg: TrainConfig, out: Path) -> Path:
    """Where the frozen-trunk features live: ``cfg.trunk_cache_dir`` (shared by runs) or the run folder."""
    base = Path(cfg.trunk_cache_dir) if cfg.trunk_cache_dir else out
    short = cfg.backbone.replace("tf_efficientnet_", "")
    return base / f"trunk_{short}_{cfg.img_size}_f{cfg.freeze_blocks}_k{cfg.cache_copies}_s{cfg.seed}.pt"


def build_trunk_cache(model: TrainNet, cfg: TrainConfig, train: list[Sample], mean, std, out: Path) -> torch.Tensor:
    """Frozen-trunk features of ``cache_copies`` augmented copies of each training photo, (N*K, C, H, W) fp16.

    Row ``i * K + k`` is copy ``k`` of photo ``i``; copy 0 is the centre view, the others random crops drawn
    from an RNG seeded by (seed, photo key, copy), so a photo's copies are the same in every run that shares
    the cache file (e.g. a run with classes held out). Missing photos are computed and the file updated.
    """
    from landmark_tagger.preprocess import Preprocess, render_view

    path = trunk_cache_path(cfg, out)
    stored: dict[str, torch.Tensor] = {}
    if path.is_file():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        stored = dict(zip(blob["keys"], blob["feats"].unbind(0), strict=True))
    else:  # a cache of a shallower trunk (same backbone, size, copies, seed) only needs the blocks in between
        for j in range(cfg.freeze_blocks - 1, -1, -1):
            shallow = path.with_name(path.name.replace(f"_f{cfg.freeze_blocks}_", f"_f{j}_"))
            if shallow.is_file():
                blob = torch.load(shallow, map_location="cpu", weights_only=True)
                log.info("trunk cache: deriving %s from %s (blocks %d..%d)", path.name, shallow.name, j,
                         cfg.freeze_blocks - 1)
                blocks = model.net.backbone.blocks[j:cfg.freeze_blocks].eval()
                feats = blob["feats"]
                outs = []
                with torch.no_grad():
                    for start in range(0, feats.shape[0], 64):
                        x = feats[start:start + 64]
                        flat = x.flatten(0, 1).float()
                        y = blocks(flat)
                        outs.append(y.half().view(x.shape[0], x.shape[1], *y.shape[1:]))
                stored = dict(zip(blob["keys"], torch.cat(outs).unbind(0), strict=True))
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"keys": blob["keys"], "feats": torch.cat(outs)}, path)
                break
    spec = Preprocess(size=cfg.img_size, mean=tuple(mean), std=tuple(std))
    k = cfg.cache_copies
    todo = [s for s in train if s.key not in stored]
    if todo:
        log.info("trunk cache: computing %d of %d photos (%d copies each) -> %s", len(todo), len(train), k, path)
        model.eval()
        t0 = time.time()
        for start in range(0, len(todo), 16):
            chunk = todo[start:start + 16]
            batch = []
            for s in chunk:
                img = load_rgb(s.path, max_side=512)
                for c in range(k):
                    rng = random.Random(f"{cfg.seed}:{s.key}:{c}")
                    view = render_view(img, spec, "center") if c == 0 else augment(
                        img, cfg.img_size, rng, cfg.crop_scale, cfg.color_jitter)
                    batch.append(to_tensor_array(view, mean, std))
            with torch.no_grad():
                feats = model.net.trunk(torch.from_numpy(np.stack(batch)), cfg.freeze_blocks).half()
            for j, s in enumerate(chunk):
                stored[s.key] = feats[j * k:(j + 1) * k].clone()
            done = start + len(chunk)
            if done % 160 == 0 or done == len(todo):
                log.info("trunk cache: %d/%d photos (%.1f img/s)", done, len(todo), done * k / (time.time() - t0))
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(stored)
        tmp = path.with_suffix(".tmp")
        torch.save({"keys": keys, "feats": torch.stack([stored[x] for x in keys])}, tmp)
        tmp.replace(path)
    return torch.cat([stored[s.key] for s in train])


# ---------------------------------------------------------------------------------------------- loop
def train(cfg: TrainConfig, data: Path, out: Path, *, layout: str = "auto", clean_csv: Path | None = None,
          resume: bool = False, max_steps: int | None = None, progress: bool = True) -> Path:
    """Train and return the path of the final checkpoint (``out/checkpoints/last.pt``)."""
    out = Path(out)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    last = ckpt_dir / "last.pt"
    if resume and last.is_file():
        saved_cfg = TrainConfig.from_dict(torch.load(last, map_location="cpu", weights_only=False)["config"])
        if saved_cfg != cfg:
            log.info("resuming with the configuration stored in the checkpoint")
        cfg = saved_cfg
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    samples, split, classes = prepare_data(cfg, data, out, layout, clean_csv)
    cls_index = {c: i for i, c in enumerate(classes)}
    train_set = [s for s in samples if split[s.key] == "train" and s.label in cls_index]
    targets = torch.tensor([cls_index[s.label] for s in train_set])
    log.info("training on %d photos of %d classes", len(train_set), len(classes))

    model = create_model(cfg, len(classes))
    mean, std = model.net.backbone.pretrained_cfg["mean"], model.net.backbone.pretrained_cfg["std"]
    freeze = cfg.freeze_blocks
    if freeze >= 0:
        for p in model.net.trunk_parameters(freeze):
            p.requires_grad_(False)
    cache = build_trunk_cache(model, cfg, train_set, mean, std, out) if (freeze >= 0 and cfg.cache_copies) else None

    head_params = list(model.net.fc.parameters()) + list(model.net.bn.parameters()) + list(model.head.parameters())
    head_ids = {id(p) for p in head_params} | {id(model.net.pool.p)}
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    optimizer = torch.optim.SGD([
        {"params": body, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
        {"params": head_params, "lr": cfg.lr * cfg.head_lr_mult, "weight_decay": cfg.weight_decay},
        {"params": [model.net.pool.p], "lr": cfg.lr * cfg.head_lr_mult, "weight_decay": 0.0},
    ], lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    steps_per_epoch = max(1, len(train_set) // cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda st: lr_factor(st, steps_per_epoch, cfg))
    step = 0
    if resume and last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        _set_rng_state(state["rng"])
        log.info("resumed at step %d (epoch %d)", step, step // steps_per_epoch)
    total_steps = cfg.epochs * steps_per_epoch if max_steps is None else min(max_steps, cfg.epochs * steps_per_epoch)

    meta = {"classes": classes, "mean": list(mean), "std": list(std), "backbone": cfg.backbone,
            "feat_dim": model.net.feat_dim, "embed_dim": model.net.embed_dim, "img_size": cfg.img_size}

    def save(path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save({"config": cfg.to_dict(), "meta": meta, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                    "rng": _rng_state()}, tmp)
        tmp.replace(path)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.3f}"),
               TextColumn("{task.fields[ips]:.1f} img/s"), TimeRemainingColumn()]
    ema_loss, t_last, seen = float("nan"), time.time(), 0
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("train", total=total_steps, completed=step, loss=float("nan"), ips=0.0)
        while step < total_steps:
            epoch, k = divmod(step, steps_per_epoch)
            order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
            idx = order[k * cfg.batch_size:(k + 1) * cfg.batch_size].tolist()
            _set_train_mode(model, freeze)
            if cache is not None:
                rows = [i * cfg.cache_copies + _sample_rng(cfg.seed, epoch, i).randrange(cfg.cache_copies) for i in idx]
                x = cache[rows].float()
                logits = model(x, targets[idx], split=freeze)
            else:
                imgs = [augment(load_rgb(train_set[i].path, max_side=512), cfg.img_size,
                                _sample_rng(cfg.seed, epoch, i), cfg.crop_scale, cfg.color_jitter) for i in idx]
                x = torch.from_numpy(np.stack([to_tensor_array(im, mean, std) for im in imgs]))
                logits = model(x, targets[idx])
            loss = F.cross_entropy(logits, targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            seen += len(idx)
            ema_loss = loss.item() if math.isnan(ema_loss) else 0.9 * ema_loss + 0.1 * loss.item()
            now = time.time()
            ips = seen / max(1e-6, now - t_last)
            bar.update(task, completed=step, loss=ema_loss, ips=ips)
            if step % 20 == 0 or step == total_steps:
                log.info("step %d/%d epoch %d loss %.4f lr %.5f %.1f img/s p=%.3f", step, total_steps, epoch,
                         ema_loss, optimizer.param_groups[0]["lr"], ips, float(model.net.pool.p.detach()[0]))
                t_last, seen = now, 0
            if step % cfg.checkpoint_every == 0:
                save(last)
            if step % steps_per_epoch == 0:
                save(last)
                save(ckpt_dir / f"epoch{step // steps_per_epoch}.pt")
    save(last)
    return last


def load_checkpoint(path: Path) -> tuple[TrainConfig, dict, TrainNet]:
    """Rebuild the training model from a checkpoint alone (config + meta + weights)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    cfg = TrainConfig.from_dict(state["config"])
    model = create_model(cfg, len(state["meta"]["classes"]), pretrained=False)
    model.load_state_dict(state["model"])
    model.eval()
    return cfg, state["meta"], model
