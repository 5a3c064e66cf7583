"""``python -m training <train|evaluate|export|add-generic> ...``: see docs/training.md."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from training.config import PRESETS, TrainConfig, get_preset


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="lite0-cpu", choices=sorted(PRESETS), help="named recipe (default lite0-cpu)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override one config field (JSON value), e.g. --set epochs=6 --set img_size=256")
    p.add_argument("--epochs", type=int)
    p.add_argument("--img-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--min-images-per-class", type=int)
    p.add_argument("--holdout", default=None, help="comma-separated labels left out of training (open-set test)")
    p.add_argument("--pretrained-file", default=None, help="ImageNet checkpoint to start from (any timm backbone)")
    p.add_argument("--no-pretrained", action="store_true", help="start from random weights")


def _config(args: argparse.Namespace) -> TrainConfig:
    cfg = get_preset(args.preset).to_dict()
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            cfg[key] = json.loads(value)
        except json.JSONDecodeError:
            cfg[key] = value
    for opt, key in (("epochs", "epochs"), ("img_size", "img_size"), ("batch_size", "batch_size"), ("lr", "lr"),
                     ("min_images_per_class", "min_images_per_class"), ("pretrained_file", "pretrained_file")):
        if getattr(args, opt, None) is not None:
            cfg[key] = getattr(args, opt)
    if getattr(args, "holdout", None):
        cfg["holdout_labels"] = [s.strip() for s in args.holdout.split(",") if s.strip()]
    if getattr(args, "no_pretrained", False):
        cfg["pretrained"] = False
    return TrainConfig.from_dict(cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train (or --resume) a run")
    _add_config_options(t)
    t.add_argument("--data", type=Path, required=True, help="dataset root (folder-per-class or GLDv2 train.csv)")
    t.add_argument("--layout", default="auto", choices=["auto", "folder", "gldv2"])
    t.add_argument("--clean-csv", type=Path, help="clean-subset CSV (GLDv2 train_clean.csv or a list of ids)")
    t.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, split, logs)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt exactly")
    t.add_argument("--max-steps", type=int, help="stop after this many steps (smoke runs)")
    t.add_argument("--no-progress", action="store_true")

    e = sub.add_parser("evaluate", help="embed the splits, compare scores, calibrate and report")
    e.add_argument("--run", type=Path, required=True, help="run folder (after train)")
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--checkpoint", type=Path, help="default RUN/checkpoints/last.pt")
    e.add_argument("--views", default=None, help="comma-separated test-time views (default: the config's)")
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    e.add_argument("--open-set-from", type=Path, default=None, help="as for export")
    e.add_argument("--unknown-untagged", type=float, default=0.97, help="as for export")

    x = sub.add_parser("export", help="export model.onnx + labels.json + gallery.npz (a bundle)")
    x.add_argument("--run", type=Path, required=True)
    x.add_argument("--data", type=Path, required=True)
    x.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    x.add_argument("--checkpoint", type=Path)
    x.add_argument("--model-id", default=None, help="bundle id (default <backbone>-gem-<dim>-<data>-<date>)")
    x.add_argument("--views", default=None)
    x.add_argument("--rule", default=None, help="scoring rule (default: the best on the calibration split)")
    x.add_argument("--open-set-from", type=Path, default=None,
                   help="a run trained with --holdout (same recipe; exported first): its held-out photos outside the "
                        "report split calibrate how many unknown-landmark photos may be tagged (use the run itself "
                        "for a holdout run)")
    x.add_argument("--unknown-untagged", type=float, default=0.97,
                   help="share of those unknown-landmark photos the threshold must leave untagged (default 0.97)")

    g = sub.add_parser("add-generic", help="add the gallery's generic features to an existing bundle (no retraining)")
    g.add_argument("--bundle", type=Path, required=True, help="bundle folder whose gallery.npz gains 'generic'")
    g.add_argument("--data", type=Path, required=True, help="the dataset the bundle was exported from")
    g.add_argument("--run", type=Path, required=True, help="the run it was exported from (its split.json)")
    g.add_argument("--min-cos", type=float, default=0.999,
                   help="recomputed embeddings must match the stored ones this closely (default 0.999)")
    g.add_argument("--threads", type=int, default=None)
    g.add_argument("--dry-run", action="store_true", help="check the match, write nothing")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if args.cmd == "train":
        from training.train import train

        args.out.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(args.out / "train.log")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(fh)
        cfg = _config(args)
        path = train(cfg, args.data, args.out, layout=args.layout, clean_csv=args.clean_csv, resume=args.resume,
                     max_steps=args.max_steps, progress=not args.no_progress and sys.stderr.isatty())
        print(path)
        return 0
    if args.cmd == "evaluate":
        from training.evaluate import evaluate_run

        views = tuple(args.views.split(",")) if args.views else None
        report = evaluate_run(args.run, args.data, checkpoint=args.checkpoint, views=views,
                              open_set_from=args.open_set_from, unknown_untagged=args.unknown_untagged)
        print(json.dumps(report, indent=1) if args.json else report["summary"])
        return 0
    if args.cmd == "export":
        from training.export import export_run

        views = tuple(args.views.split(",")) if args.views else None
        path = export_run(args.run, args.data, args.out, checkpoint=args.checkpoint, model_id=args.model_id,
                          views=views, rule=args.rule, open_set_from=args.open_set_from,
                          unknown_untagged=args.unknown_untagged)
        print(path)
        return 0
    if args.cmd == "add-generic":
        from training.add_generic import add_generic

        print(json.dumps(add_generic(args.bundle, args.data, args.run, min_cos=args.min_cos, threads=args.threads,
                                     dry_run=args.dry_run), indent=1))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
