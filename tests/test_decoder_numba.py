"""The compiled decode + masked MSE (dsr.models.decoder_numba) gives the torch path's values, and a
whole GTF batch (rollout, decoder, loss) matches the torch path in float64."""

from __future__ import annotations

import pytest
import torch

import dsr.models.rollout as rollout
from dsr.models import make_model
from dsr.models.decoders import decode_mse, make_decoder
from dsr.signal.kernels import spm_hrf
from dsr.training.gtf import _add_noise, gtf_loss, masked_mse

pytest.importorskip("numba")
from dsr.models.decoder_numba import DecodeMSE  # noqa: E402


def _case(name, E, Bt, M, N, T, tr, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    dec = make_decoder(name, E, N, M, spm_hrf(tr), generator=g, dtype=dtype)
    z = torch.randn(T, E, Bt, M, generator=g, dtype=dtype, requires_grad=True)
    x = torch.randn(T - dec.kernel_length + 1, E, Bt, N, generator=g, dtype=dtype)
    weight = torch.rand(E, generator=g, dtype=dtype)
    return dec, z, x, weight


def _loss_and_grads(fn, dec, z, x, weight):
    params = [z] + ([dec.B] if dec.B.requires_grad else [])
    loss = fn(z)
    return [loss, *torch.autograd.grad((loss * weight).sum(), params)]


@pytest.mark.parametrize(
    ("name", "E", "Bt", "M", "N", "T", "nan_target"),
    [
        ("convolved", 2, 5, 4, 3, 60, False),
        ("convolved", 3, 37, 6, 6, 101, True),  # three chunks, NaN and inf targets
        ("convolved", 2, 16, 16, 16, 200, False),  # LEMON-like
        ("standard", 2, 16, 4, 4, 50, False),  # kernel [1]
        ("identity", 2, 9, 6, 4, 60, True),  # fixed B, M > N
    ],
)
def test_compiled_decoder_loss_matches_torch(name, E, Bt, M, N, T, nan_target):
    dec, z, x, weight = _case(name, E, Bt, M, N, T, 1.4)
    if nan_target:
        x[3, 0, 1, 0] = torch.nan
        x[5:9, 1] = torch.inf
    compiled = _loss_and_grads(
        lambda z: DecodeMSE.apply(z, dec.B, dec.kernel, x), dec, z, x, weight
    )
    reference = _loss_and_grads(lambda z: masked_mse(dec.decode(z), x), dec, z, x, weight)
    for a, b in zip(compiled, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_compiled_decoder_float32():
    dec, z, x, weight = _case("convolved", 2, 16, 6, 6, 101, 1.4, torch.float32)
    compiled = _loss_and_grads(
        lambda z: DecodeMSE.apply(z, dec.B, dec.kernel, x), dec, z, x, weight
    )
    reference = _loss_and_grads(lambda z: masked_mse(dec.decode(z), x), dec, z, x, weight)
    for a, b in zip(compiled, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_a_non_finite_prediction_spoils_only_its_model():
    """Model 0 gets a NaN latent: its loss is NaN on both paths (it is flagged and restored, so its
    gradient is not compared); model 1's loss and gradient are unchanged."""
    dec, z, x, weight = _case("convolved", 2, 7, 5, 3, 60, 1.2)
    bad = z.detach().clone()
    bad[10, 0, 2, 1] = torch.nan
    bad.requires_grad_()
    loss = DecodeMSE.apply(bad, dec.B, dec.kernel, x)
    reference = masked_mse(dec.decode(bad), x)
    assert torch.isnan(loss[0]) and torch.isnan(reference[0])
    torch.testing.assert_close(loss[1], reference[1], rtol=1e-10, atol=0)
    g = torch.autograd.grad(loss[1], bad)[0][:, 1]
    g_ref = torch.autograd.grad(reference[1], bad)[0][:, 1]
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-14)


def test_decode_mse_applies_only_where_it_can(monkeypatch):
    dec, z, x, _ = _case("convolved", 2, 5, 4, 3, 60, 1.4)
    assert decode_mse(dec, z, x) is not None
    assert decode_mse(dec, z, torch.randn(60, 2, 5, 3, dtype=z.dtype), neural=True) is not None
    with_confounds = make_decoder("convolved", 2, 3, 4, spm_hrf(1.4), 2, dtype=torch.float64)
    assert decode_mse(with_confounds, z, x) is None
    assert decode_mse(dec, z.float(), x) is None  # mixed dtypes
    monkeypatch.setattr(rollout, "BACKEND", "torch")
    assert decode_mse(dec, z, x) is None


def _gtf_problem(E, Bt, N, M, T, nan_deconv, seed=4):
    g = torch.Generator().manual_seed(seed)
    model = make_model("cshPLRNN", E, M, 12, generator=g, dtype=torch.float64)
    dec = make_decoder("convolved", E, N, M, spm_hrf(1.4), generator=g, dtype=torch.float64)
    x = torch.randn(T + 1, E, Bt, N, generator=g, dtype=torch.float64)
    x_deconv = torch.randn(T + 1, E, Bt, N, generator=g, dtype=torch.float64)
    x[7, 1 % E, 3] = torch.nan  # a padded sample
    if nan_deconv:  # an unknown forcing sample: not forced there
        x_deconv[5, 0, 2, 1] = torch.nan
        x_deconv[T - 3 :, E - 1, Bt - 1] = torch.inf
    return model, dec, x, x_deconv


@pytest.mark.parametrize(
    ("alpha", "E", "Bt", "N", "M", "nan_deconv", "deconv_weight"),
    [
        (0.1, 3, 20, 4, 6, False, 0.0),  # two chunks, the second partial; D = N < M
        (1.0, 3, 20, 4, 6, True, 0.0),  # sparse forcing, non-finite forcing samples
        ("adaptive", 2, 16, 18, 18, True, 0.0),  # per-model alpha, N > LANES
        (0.3, 2, 5, 6, 6, False, 0.0),  # fewer windows than lanes
        (0.1, 3, 20, 4, 6, True, 2.0),  # the neural-level term, non-finite x^deconv samples
    ],
)
def test_whole_gtf_batch_matches_the_torch_path(
    monkeypatch, alpha, E, Bt, N, M, nan_deconv, deconv_weight
):
    """Forcing, rollout, decoder and loss (with the neural-level term where ``deconv_weight``)
    compiled vs tensor ops: loss and every gradient, float64 (noise added beforehand: the torch
    path samples it with torch's generator)."""
    model, dec, x, x_deconv = _gtf_problem(E, Bt, N, M, 60, nan_deconv)
    if alpha == "adaptive":
        alpha = torch.linspace(0.2, 0.9, E, dtype=torch.float64)
    params = [*model.parameters(), dec.B]  # (dec.J: no confounds)

    def run(backend):
        monkeypatch.setattr(rollout, "BACKEND", backend)
        assert backend == "torch" or rollout._use_compiled(x), "the compiled kernels did not load"
        window = (x, x_deconv, None, None)
        loss = gtf_loss(model, dec, window, alpha, 0.0, None, deconv_weight)
        return [loss, *torch.autograd.grad(loss.sum(), params)]

    compiled, reference = run("auto"), run("torch")
    assert torch.isfinite(compiled[0]).all()
    for a, b in zip(compiled, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_gtf_loss_adds_the_noise_to_both_windows(monkeypatch):
    """``noise_sd`` > 0: the same loss as noise-free on ``x[h:] + σ z₁``, ``x_deconv + σ z₂``, with
    z₁, z₂ the first two draws of the generator (compiled draw)."""
    model, dec, x, x_deconv = _gtf_problem(2, 16, 4, 6, 60, False)
    monkeypatch.setattr(rollout, "BACKEND", "auto")
    loss = gtf_loss(model, dec, (x, x_deconv, None, None), 0.1, 0.05, torch.Generator())
    g = torch.Generator()
    noisy = _add_noise(x[dec.kernel_length :], 0.05, g)
    noisy_deconv = _add_noise(x_deconv, 0.05, g)
    padded = torch.cat([x[: dec.kernel_length], noisy])
    reference = gtf_loss(model, dec, (padded, noisy_deconv, None, None), 0.1, 0.0, None)
    assert torch.equal(loss, reference)
    assert not torch.equal(loss, gtf_loss(model, dec, (x, x_deconv, None, None), 0.1, 0.0, None))


def test_compiled_batch_does_not_depend_on_threads(monkeypatch):
    model, dec, x, x_deconv = _gtf_problem(3, 37, 5, 7, 40, True)
    model, dec, x, x_deconv = model.float(), dec.float(), x.float(), x_deconv.float()
    monkeypatch.setattr(rollout, "BACKEND", "auto")
    before, runs = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            loss = gtf_loss(model, dec, (x, x_deconv, None, None), 0.2, 0.05, torch.Generator())
            runs.append([loss, *torch.autograd.grad(loss.sum(), list(model.parameters()))])
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
