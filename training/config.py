"""Training configuration and the named recipe presets.

A preset is a complete :class:`TrainConfig`; command-line options override single fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    """Everything that determines a training run (stored in every checkpoint)."""

    preset: str = "lite0-cpu"
    backbone: str = "tf_efficientnet_lite0"
    pretrained: bool = True                 # ImageNet weights (offline package, or pretrained_file, or the hub)
    pretrained_file: str | None = None
    img_size: int = 224                     # training crop side; the bundle's preprocess size
    embed_dim: int = 512
    gem_p: float = 3.0
    arcface_s: float = 30.0
    arcface_m: float = 0.3
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.01                        # backbone learning rate
    head_lr_mult: float = 10.0              # projection + ArcFace centres learn faster
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    schedule: str = "cosine"                # "cosine" or "cosine-restarts"
    restart_epochs: int = 5                 # period of the first cycle with cosine-restarts (doubles after)
    min_images_per_class: int = 5
    # CPU recipe: freeze the backbone's stem and first ``freeze_blocks`` stages (-1: train everything); with
    # ``cache_copies`` > 0 the frozen trunk runs once on that many augmented copies of each training photo
    # and training iterates over the cached feature maps (no augmentation beyond the cached copies).
    freeze_blocks: int = -1
    cache_copies: int = 0
    trunk_cache_dir: str | None = None      # share trunk caches between runs (default: inside the run folder)
    # augmentation
    crop_scale: tuple[float, float] = (0.35, 1.0)
    color_jitter: float = 0.3
    # data split (fractions of near-duplicate groups, per class): train / calibration / report
    split_fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    holdout_labels: list[str] = field(default_factory=list)   # classes left out of training (open-set test)
    seed: int = 0
    checkpoint_every: int = 200             # steps
    num_threads: int = 0                    # torch intra-op threads (0: torch default)
    tta_views: list[str] = field(default_factory=lambda: ["center", "flip", "zoom1.15"])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        d = dict(d)
        for k in ("crop_scale", "split_fractions"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        return cls(**d)


PRESETS: dict[str, TrainConfig] = {
    # Minutes on 2 CPU cores: EfficientNet-Lite0 at 224 px with the packaged ImageNet weights (the shipped model).
    "lite0-cpu": TrainConfig(preset="lite0-cpu", backbone="tf_efficientnet_lite0", img_size=224, epochs=10,
                             freeze_blocks=6, cache_copies=3, tta_views=["center", "zoom1.15"]),
    # EfficientNet-Lite2 at its native 260 px, same recipe (about 2.5x the compute of lite0; not trained here yet).
    "lite2-cpu": TrainConfig(preset="lite2-cpu", backbone="tf_efficientnet_lite2", img_size=260, epochs=10,
                             freeze_blocks=6, cache_copies=3, tta_views=["center", "zoom1.15"]),
    # The Google Landmarks v2 recipe (GPU): EfficientNet-B7, GeM, 512-d, ArcFace (s=30, m=0.3), trained
    # progressively at growing image sizes as in the GLRC 2020 winning solutions (Henkel & Singer 2020:
    # B7 at 448-512 px, ~10 epochs on the GLDv2 "clean" subset of ~1.6 M images / 81 k classes).
    "b7-gldv2": TrainConfig(preset="b7-gldv2", backbone="tf_efficientnet_b7", pretrained=True, img_size=512,
                            epochs=10, batch_size=32, lr=0.01, arcface_m=0.3, arcface_s=30.0, embed_dim=512,
                            min_images_per_class=2, split_fractions=(0.9, 0.05, 0.05), checkpoint_every=2000,
                            tta_views=["center"]),
}


def get_preset(name: str) -> TrainConfig:
    """A fresh copy of a named preset."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return TrainConfig.from_dict(PRESETS[name].to_dict())
