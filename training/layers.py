"""Retrieval layers as functional + module pairs (cirtorch style): GeM pooling and L2 normalisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gem(x: torch.Tensor, p: torch.Tensor | float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling over the spatial axes.

    Args:
        x: feature map (N, C, H, W).
        p: pooling exponent (1 = average pooling, large = max pooling).
        eps: clamp floor that keeps the power well defined.

    Returns:
        (N, C) pooled features. A mean over the spatial axes (not ``avg_pool2d`` with a kernel the size of
        the map), so an exported ONNX graph accepts any image size.
    """
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


class GeM(nn.Module):
    """GeM pooling with a learnable exponent ``p``."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = True) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * p, requires_grad=learnable)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p, self.eps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={float(self.p.detach()[0]):.4f}, eps={self.eps})"


def l2n(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """L2-normalise rows of an (N, D) tensor."""
    return x / (x.norm(p=2, dim=1, keepdim=True) + eps)


class L2N(nn.Module):
    """Row-wise L2 normalisation."""

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return l2n(x, self.eps)


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """Alias of ``F.normalize(x, dim=1)`` used by the ArcFace head."""
    return F.normalize(x, dim=1)
