"""GeM and ArcFace against their reference formulas."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from training.heads import ArcFace, arcface_logits  # noqa: E402
from training.layers import GeM, gem, l2n  # noqa: E402


def test_gem_matches_reference_formula():
    x = torch.rand(2, 5, 7, 9) + 0.01
    p = 3.0
    ref = (x.pow(p).sum(dim=(2, 3)) / (7 * 9)).pow(1 / p)
    torch.testing.assert_close(gem(x, p), ref)


def test_gem_limits_and_sizes():
    x = torch.rand(3, 4, 6, 6) + 0.01
    torch.testing.assert_close(gem(x, 1.0), x.mean(dim=(2, 3)))                     # p = 1: average pooling
    assert torch.allclose(gem(x, 60.0), x.amax(dim=(2, 3)), rtol=0.1)               # p -> inf: max pooling
    for hw in ((5, 5), (7, 11), (1, 1)):                                            # any feature-map size
        assert gem(torch.rand(1, 4, *hw), 3.0).shape == (1, 4)


def test_gem_module_learns_p_and_reprs_it():
    m = GeM(p=3.0)
    x = torch.rand(2, 3, 4, 4)
    m(x).sum().backward()
    assert m.p.grad is not None and m.p.grad.shape == (1,)
    assert "p=3.0000" in repr(m)


def test_l2n_rows_are_unit():
    x = torch.randn(4, 16)
    torch.testing.assert_close(l2n(x).norm(dim=1), torch.ones(4), atol=1e-5, rtol=0)


def test_arcface_against_reference():
    torch.manual_seed(0)
    emb, w = torch.randn(6, 8), torch.randn(4, 8)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    s, m = 30.0, 0.3
    got = arcface_logits(emb, w, labels, s, m)
    cos = (emb / emb.norm(dim=1, keepdim=True)) @ (w / w.norm(dim=1, keepdim=True)).T
    for i in range(6):
        for j in range(4):
            c = float(cos[i, j])
            if j == int(labels[i]):
                theta = math.acos(max(-1.0, min(1.0, c)))
                want = math.cos(theta + m) if theta + m < math.pi else c - math.sin(math.pi - m) * m
            else:
                want = c
            assert float(got[i, j]) == pytest.approx(s * want, abs=1e-3)


def test_arcface_margin_lowers_true_class_logit_only():
    head = ArcFace(8, 4, s=10.0, m=0.5)
    emb, labels = torch.randn(5, 8), torch.tensor([0, 1, 2, 3, 0])
    with_margin = head(emb, labels)
    head.m = 0.0
    plain = head(emb, labels)
    true = torch.nn.functional.one_hot(labels, 4).bool()
    assert torch.all(with_margin[true] < plain[true])
    torch.testing.assert_close(with_margin[~true], plain[~true])
