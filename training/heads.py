"""ArcFace additive angular margin head (training only; never exported).

Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019.
logits = s * cos(theta_y + m) for the true class, s * cos(theta_j) otherwise, where
cos(theta_j) = <x / |x|, w_j / |w_j|>. When theta_y + m would pass pi the logit falls back to
cos(theta_y) - m * sin(m) (the usual "th/mm" trick), keeping it monotonic in theta.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def arcface_logits(emb: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, s: float, m: float) -> torch.Tensor:
    """ArcFace logits.

    Args:
        emb: (N, D) embeddings (any norm).
        weight: (C, D) class centres (any norm).
        labels: (N,) int64 class indices.
        s: scale.
        m: additive angular margin in radians.

    Returns:
        (N, C) logits for cross-entropy.
    """
    cos = F.linear(F.normalize(emb, dim=1), F.normalize(weight, dim=1)).clamp(-1.0, 1.0)
    sin = torch.sqrt((1.0 - cos * cos).clamp(min=1e-9))
    phi = cos * math.cos(m) - sin * math.sin(m)
    th = math.cos(math.pi - m)
    mm = math.sin(math.pi - m) * m
    phi = torch.where(cos > th, phi, cos - mm)
    one_hot = F.one_hot(labels, num_classes=weight.shape[0]).to(cos.dtype)
    return s * (one_hot * phi + (1.0 - one_hot) * cos)


class ArcFace(nn.Module):
    """ArcFace head: class centres plus :func:`arcface_logits`."""

    def __init__(self, in_features: int, num_classes: int, s: float = 30.0, m: float = 0.3) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight)
        self.s = s
        self.m = m

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return arcface_logits(emb, self.weight, labels, self.s, self.m)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, num_classes={self.weight.shape[0]}, s={self.s}, m={self.m}"
