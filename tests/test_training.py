import dataclasses

import numpy as np
import pytest
import torch

import dsr.models.rollout as rollout
from dsr.analysis.lyapunov import max_lyapunov_exponent
from dsr.analysis.prediction import prediction_error
from dsr.errors import DsrInputError
from dsr.models.examples import limit_cycle_plrnn, simulate_convolved, simulate_latent
from dsr.signal.deconvolution import edge_samples, wiener_deconvolve
from dsr.signal.kernels import spm_hrf
from dsr.training.ensemble import load_ensemble, save_ensemble
from dsr.training.gtf import NOISE_STREAMS, _add_noise, gtf_loss, gtf_rollout, masked_mse
from dsr.training.loop import TrainingConfig, fit_ensemble

KERNEL = spm_hrf(0.5)  # 65 samples
TINY = TrainingConfig(
    epochs=3, batches_per_epoch=2, batch_size=4, seq_len=80, hidden_dim=8, checkpoint_every=1
)


@pytest.fixture(scope="module")
def cycle_bold():
    """HRF-convolved (TR 0.5) observations of a known 3-D cshPLRNN limit cycle, noise 0.01."""
    latent = simulate_latent(limit_cycle_plrnn(), 1600)
    return simulate_convolved(latent, KERNEL, noise_sd=0.01)  # (1536, 3)


def _pe10(fitted, x):
    n_left, n_right = (edge_samples(c, len(KERNEL)) for c in (0.25, 0.5))
    x_dec = wiener_deconvolve(x, KERNEL, cut_left=0.25, cut_right=0.5)
    return prediction_error(
        fitted.model, fitted.decoder, x, x_dec, n_steps=10, cut_left=n_left, cut_right=n_right
    )


def test_round_trip_gtf_beats_no_forcing(cycle_bold):
    """Simulate -> fit -> recover: loss falls >= 5x and GTF predicts held-out data better."""
    train, test = cycle_bold[:1000], cycle_bold[1000:]
    config = TrainingConfig(
        epochs=40, batches_per_epoch=20, seq_len=100, hidden_dim=20, lr_start=5e-3, lr_end=1e-4
    )
    gtf = fit_ensemble([train], KERNEL, n_restarts=4, config=config, seed=0, device="cpu")
    free = fit_ensemble(
        [train],
        KERNEL,
        n_restarts=4,
        seed=0,
        device="cpu",
        config=dataclasses.replace(config, alpha=0.0),
    )
    assert gtf.status == ["ok"] * 4
    drop = gtf.loss_history[0] / gtf.loss_history[-1]
    assert np.all(drop >= 5), drop
    pe_gtf, pe_free = _pe10(gtf, test), _pe10(free, test)
    assert np.nanmean(pe_gtf) < np.nanmean(pe_free), (pe_gtf, pe_free)
    assert np.nanmean(pe_gtf) < 0.5
    # the recovered attractor: the fitted lambda_max spread brackets the true cycle's (about 0)
    true_lam = max_lyapunov_exponent(limit_cycle_plrnn(), n_steps=3000, transient=500)[0]
    lam = max_lyapunov_exponent(gtf.model, n_steps=3000, transient=500)
    assert lam.min() - 0.05 <= true_lam <= lam.max() + 0.05, (lam, true_lam)


def test_subjects_share_one_ensemble(cycle_bold):
    data = [cycle_bold[:400], -cycle_bold[400:900, ::-1]]  # two "subjects", different lengths
    fitted = fit_ensemble(
        data, KERNEL, n_restarts=2, subject_ids=["a", "b"], config=TINY, device="cpu"
    )
    assert fitted.n_models == 4
    np.testing.assert_array_equal(fitted.model_subject, [0, 0, 1, 1])
    np.testing.assert_array_equal(fitted.model_restart, [0, 1, 0, 1])
    assert fitted.loss_history.shape == (3, 4) and np.isfinite(fitted.loss_history).all()


def test_save_and_load_roundtrip(tmp_path, cycle_bold):
    fitted = fit_ensemble([cycle_bold[:300]], KERNEL, n_restarts=2, config=TINY, device="cpu")
    save_ensemble(fitted, tmp_path / "model.pt")
    loaded = load_ensemble(tmp_path / "model.pt")
    for a, b in zip(fitted.model.parameters(), loaded.model.parameters(), strict=True):
        torch.testing.assert_close(a.detach(), b)
    torch.testing.assert_close(fitted.decoder.B.detach(), loaded.decoder.B)
    np.testing.assert_allclose(loaded.kernel, KERNEL)
    assert loaded.config == fitted.config and loaded.status == fitted.status
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file


def test_resume_gives_same_parameters_as_uninterrupted(tmp_path, cycle_bold):
    data = [cycle_bold[:300]]
    full = fit_ensemble(
        data, KERNEL, n_restarts=2, config=dataclasses.replace(TINY, epochs=4), seed=3, device="cpu"
    )
    # "killed" after 2 of 4 epochs: a 2-epoch run leaves its checkpoint at epoch 2 ...
    ckpt = tmp_path / "ckpt"
    half = dataclasses.replace(TINY, epochs=4)
    _run_epochs(data, half, ckpt, stop_after=2)
    # ... and the restarted run picks it up and finishes
    resumed = fit_ensemble(
        data, KERNEL, n_restarts=2, config=half, seed=3, device="cpu", checkpoint_dir=ckpt
    )
    for a, b in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    np.testing.assert_array_equal(full.loss_history, resumed.loss_history)


def _run_epochs(data, config, ckpt, stop_after):
    """Train with checkpoints until ``stop_after`` epochs are saved, then abort like a kill."""
    from dsr.training.state import TrainState

    class Killed(Exception):
        pass

    original = TrainState.save

    def save_then_maybe_die(self, directory, fingerprint):
        original(self, directory, fingerprint)
        if self.epoch >= stop_after:
            raise Killed

    TrainState.save = save_then_maybe_die
    try:
        with pytest.raises(Killed):
            fit_ensemble(
                data, KERNEL, n_restarts=2, config=config, seed=3, device="cpu", checkpoint_dir=ckpt
            )
    finally:
        TrainState.save = original


def test_gtf_alpha_one_reproduces_forcing():
    """With alpha = 1 and M = N every state is replaced by the forcing signal d_t."""
    model = limit_cycle_plrnn(dtype=torch.float32)
    from dsr.models.decoders import make_decoder

    dec = make_decoder("standard", 1, 3, 3, None)
    x_dec = torch.randn(12, 1, 2, 3)
    preds = gtf_rollout(model, dec, x_dec, None, alpha=1.0)
    d = dec.forcing(x_dec)
    expected = model.step(d[:-1].permute(1, 0, 2, 3).reshape(1, 22, 3)).reshape(1, 11, 2, 3)
    torch.testing.assert_close(preds, expected.transpose(0, 1))


@pytest.mark.parametrize("confounds", [0, 2])
def test_deconv_weight_adds_the_neural_level_mse(confounds):
    """``gtf_loss`` with w > 0 adds w · mean((B ẑ_t + J r^deconv_t − x^deconv_t)²) over the finite
    deconvolved samples: checked against the same sum in numpy on the rollout's ẑ."""
    from dsr.models.decoders import make_decoder
    from dsr.models.registry import make_model

    g = torch.Generator().manual_seed(4)
    E, B, N, M, T = 2, 3, 4, 5, 30
    model = make_model("cshPLRNN", E, M, 8, generator=g, dtype=torch.float64)
    dec = make_decoder("convolved", E, N, M, spm_hrf(2.0), confounds, generator=g)
    dec = dec.double()
    x, x_dec = torch.randn(2, T, E, B, N, generator=g, dtype=torch.float64)
    x_dec[-3:, 1] = float("nan")  # a cut right edge in model 1's windows
    r, r_dec = (torch.randn(2, T, E, B, confounds, generator=g, dtype=torch.float64)
                if confounds else (None, None))  # fmt: skip
    window = (x, x_dec, r, r_dec)
    plain = gtf_loss(model, dec, window, 0.1, 0.0, None)
    with_term = gtf_loss(model, dec, window, 0.1, 0.0, None, deconv_weight=0.5)
    z_hat = gtf_rollout(model, dec, x_dec, r_dec, 0.1).detach().numpy()  # (T-1, E, B, M)
    neural = np.einsum("tebm,enm->tebn", z_hat, dec.B.detach().numpy())
    if confounds:
        neural += np.einsum("teba,ena->tebn", r_dec[1:].numpy(), dec.J.detach().numpy())
    sq = (neural - x_dec[1:].numpy()) ** 2  # NaN where x^deconv is NaN
    expected = 0.5 * np.nanmean(sq.transpose(1, 0, 2, 3).reshape(E, -1), axis=1)
    np.testing.assert_allclose((with_term - plain).detach().numpy(), expected, rtol=1e-10)
    assert np.isfinite(expected).all() and (expected > 0).all()


def test_masked_mse_ignores_nan():
    pred = torch.zeros(5, 2, 3, 4)
    target = torch.ones(5, 2, 3, 4)
    target[0, 1] = float("nan")
    torch.testing.assert_close(masked_mse(pred, target), torch.ones(2))


def test_masked_mse_gradient_and_divergence():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(7, 3, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(7, 3, 2, 4, generator=g, dtype=torch.float64)
    target[2, 1] = target[5, 0, 1, 3] = float("nan")
    valid = torch.isfinite(target)
    diff = torch.where(valid, pred - torch.nan_to_num(target), 0.0)
    expected = (diff**2).sum(dim=(0, 2, 3)) / valid.sum(dim=(0, 2, 3))
    torch.testing.assert_close(masked_mse(pred, target), expected)
    weight = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    got = torch.autograd.grad((masked_mse(pred, target) * weight).sum(), pred)[0]
    torch.testing.assert_close(got, torch.autograd.grad((expected * weight).sum(), pred)[0])
    bad = pred.detach().clone()
    bad[0, 2, 0, 0] = float("inf")  # a model's prediction blows up at a valid target
    loss = masked_mse(bad, target)
    assert torch.isfinite(loss[:2]).all() and not torch.isfinite(loss[2])


def test_nan_samples_are_left_out(cycle_bold):
    x = cycle_bold[:300].copy()
    x[150:153, 1] = np.nan  # e.g. scrubbed volumes
    fitted = fit_ensemble([x], KERNEL, config=TINY, device="cpu")
    assert np.isfinite(fitted.loss_history).all()


@pytest.mark.parametrize(
    ("data", "kwargs", "match"),
    [
        ([np.full((300, 2), np.nan)], {}, r"column\(s\) \[0, 1\] are entirely NaN"),
        ([np.random.default_rng(0).normal(size=(3, 300))], {}, "time must be axis 0"),
        ([np.random.default_rng(0).normal(size=(60, 2))], {}, "only 60 time points"),
        (
            [np.random.default_rng(0).normal(size=(300, 2))],
            {"confounds": [np.zeros((299, 1))]},
            "confounds of subject 'sub-01'.*299",
        ),
        (
            [np.random.default_rng(0).normal(size=(300, 2))] * 2,
            {"subject_ids": ["a", "a"]},
            "must be unique",
        ),
        (np.random.default_rng(0).normal(size=(300, 2)), {}, "list of"),
    ],
)
def test_bad_input_is_refused(data, kwargs, match):
    with pytest.raises(DsrInputError, match=match):
        fit_ensemble(data, KERNEL, config=TINY, device="cpu", **kwargs)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("decoder", "poisson", "'decoder' must be one of"),
        ("alpha", 1.5, r"'alpha' must be in \[0, 1\]"),
        ("epochs", 0, "'epochs' must be a positive integer"),
        ("model", "GRU", "'model' must be one of"),
        ("deconv_weight", -0.5, "'deconv_weight'.* must be >= 0"),
    ],
)
def test_bad_config_is_refused(field, value, match):
    with pytest.raises(DsrInputError, match=match):
        TrainingConfig(**{field: value})


def test_standard_decoder_keeps_the_kernel_it_trained_with(cycle_bold):
    """The standard SSM trains without a kernel; evaluation must not deconvolve with the HRF."""
    config = dataclasses.replace(TINY, decoder="standard")
    fitted = fit_ensemble([cycle_bold[:300]], KERNEL, config=config, device="cpu")
    np.testing.assert_array_equal(fitted.kernel, [1.0])
    assert fitted.decoder.kernel_length == 1


def test_for_subject_keeps_each_subjects_models(cycle_bold):
    """A joint cohort ensemble split per subject keeps parameters and bookkeeping."""
    data = [cycle_bold[:300], cycle_bold[300:600]]
    fitted = fit_ensemble(
        data, KERNEL, subject_ids=["a", "b"], n_restarts=2, config=TINY, device="cpu"
    )
    part = fitted.for_subject("b")
    assert part.subject_ids == ["b"] and part.n_models == 2 and part.model.n_models == 2
    assert list(part.model_restart) == [0, 1] and part.loss_history.shape == (3, 2)
    np.testing.assert_array_equal(part.model_subject, [0, 0])
    torch.testing.assert_close(part.model.W1, fitted.model.W1[2:])
    torch.testing.assert_close(part.decoder.B, fitted.decoder.B[2:])
    torch.testing.assert_close(part.decoder.kernel, fitted.decoder.kernel)
    z = torch.zeros(2, 1, 3)
    torch.testing.assert_close(part.model.step(z), fitted.model.step(torch.zeros(4, 1, 3))[2:])


@pytest.mark.parametrize("backend", ["auto", "torch"])  # compiled Philox draw / torch's sampler
def test_augmentation_noise_is_standard_normal_and_independent_of_threads(monkeypatch, backend):
    monkeypatch.setattr(rollout, "BACKEND", backend)
    a = torch.zeros(2000, 4, 16)
    threads = torch.get_num_threads()
    try:
        draws = []
        for n in (1, 2):
            torch.set_num_threads(n)
            draws.append(_add_noise(a, 1.0, torch.Generator().manual_seed(5)))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(*draws)  # the values depend on the seed, not on the thread count
    noise = draws[0].flatten()
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 1) < 0.01
    streams = noise.view(NOISE_STREAMS, -1)  # slices of a draw (torch: per-stream generators)
    corr = torch.corrcoef(streams)
    assert (corr - torch.eye(NOISE_STREAMS)).abs().max() < 0.05  # ~6 SE of 16 000 pairs
    other = _add_noise(a, 1.0, torch.Generator().manual_seed(6))
    assert not torch.equal(other, draws[0])
