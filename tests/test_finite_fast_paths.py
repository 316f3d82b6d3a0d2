"""Finite-data fast paths of the GTF loss and the convolution give the masked paths' exact values."""

from __future__ import annotations

import pytest
import torch

import dsr.training.gtf as gtf
from dsr.models.decoders import causal_valid_convolution


def test_all_finite_survives_an_overflowing_sum():
    big = torch.full((10,), 3e38)
    assert torch.isinf(big.sum()) and gtf._all_finite(big)
    for bad in (torch.nan, torch.inf, -torch.inf):
        assert not gtf._all_finite(torch.tensor([1.0, bad, 2.0]))


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("per_model", [False, True])
def test_forcing_weights_fast_path_is_exact(sparse, per_model):
    g = torch.Generator().manual_seed(0)
    d = torch.randn(3, 21, 5, 4, generator=g).transpose(0, 1)  # model-major, as the decoder's
    alpha = torch.rand(3, generator=g) if per_model else 0.3
    fast = gtf._forcing_weights(d, alpha, sparse, finite=True)
    slow = gtf._forcing_weights(d, alpha, sparse, finite=False)
    assert torch.equal(fast, slow) and fast.stride() == slow.stride()


def test_masked_mse_fast_path_is_exact(monkeypatch):
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(9, 3, 4, 2, generator=g, requires_grad=True)
    target = torch.randn(9, 3, 4, 2, generator=g)
    weight = torch.rand(3, generator=g)

    def loss_and_grad():
        loss = gtf.masked_mse(pred, target)
        return loss, torch.autograd.grad((loss * weight).sum(), pred)[0]

    fast = loss_and_grad()
    monkeypatch.setattr(gtf, "_all_finite", lambda a: False)
    slow = loss_and_grad()
    assert all(torch.equal(a, b) for a, b in zip(fast, slow, strict=True))


def test_convolution_keeps_finite_outputs_next_to_a_nan():
    z = torch.randn(40, 3, dtype=torch.float64)
    kernel = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    clean = causal_valid_convolution(z, kernel)
    z[10, 1] = torch.nan
    out = causal_valid_convolution(z, kernel)
    nan = torch.isnan(out)
    assert nan[:, 1].nonzero().flatten().tolist() == [8, 9, 10]  # outputs at times 10, 11, 12
    assert torch.equal(out[~nan], clean[~nan])
