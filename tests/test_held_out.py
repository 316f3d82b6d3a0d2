"""Evaluation you can trust: the held-out split, no silent drops, escaped models, linear-time
test deconvolution. Each test fails on the code before the evaluation issue."""

import time

import numpy as np
import pandas as pd
import pytest
import torch

from dsr.analysis.evaluation import evaluate_ensemble
from dsr.analysis.free_runs import escaped_runs
from dsr.analysis.prediction import prediction_error
from dsr.analysis.selection import select_models
from dsr.models import causal_valid_convolution, make_decoder, make_model
from dsr.models.examples import limit_cycle_plrnn, simulate_convolved, simulate_latent
from dsr.signal.deconvolution import sliding_deconvolve, wiener_deconvolve
from dsr.signal.kernels import spm_hrf
from dsr.training.gtf import gtf_rollout
from dsr.training.loop import TrainingConfig, fit_ensemble
from dsr.training.windows import train_length

FAST = dict(epochs=2, batches_per_epoch=2, seq_len=60, hidden_dim=8, checkpoint_every=0)


@pytest.fixture(scope="module")
def series():
    kernel = spm_hrf(1.2)
    return simulate_convolved(
        simulate_latent(limit_cycle_plrnn(), 400), kernel, noise_sd=0.05
    ), kernel


# --------------------------------------------------------------------------- the split
def test_train_length_is_the_papers_three_to_one_split():
    assert train_length(652, 0.25) == 489 and train_length(500, 0.25) == 375
    assert train_length(500, 0.0) == 500


def test_fit_trains_on_the_first_part_only(series):
    x, kernel = series
    held_out = fit_ensemble([x], kernel, config=TrainingConfig(**FAST), device="cpu")
    first_part = fit_ensemble(
        [x[: train_length(len(x), 0.25)]],
        kernel,
        config=TrainingConfig(**FAST, test_fraction=0),
        device="cpu",
    )
    for a, b in zip(held_out.model.parameters(), first_part.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_evaluate_scores_the_held_out_part(series):
    x, kernel = series
    fitted = fit_ensemble([x], kernel, n_restarts=2, config=TrainingConfig(**FAST), device="cpu")
    res = evaluate_ensemble(fitted, {"sub-01": x}, n_trajectories=3, lyap_steps=100)
    t = res.table
    for col in ("dstsp_test", "dh_test", "pe10_test", "dstsp_train"):
        assert np.isfinite(t[col]).all(), col
    assert (t["selected_on"] == "test").all() and t["lyap_n_finite"].between(0, 4).all()
    assert res.summary["sub-01"]["selected_on"] == "test"


def test_too_short_test_part_names_the_subject(series):
    x, kernel = series
    with pytest.raises(Exception, match="subject 'short'.*test_fraction"):
        fit_ensemble(
            [x[:200]],
            kernel,
            subject_ids=["short"],
            config=TrainingConfig(**FAST, test_fraction=0.1),
            device="cpu",
        )


# --------------------------------------------------------------------------- PE_n never drops
def _threshold_model(w1: float):
    """Two 1-D shPLRNNs: model 0 decays, model 1 adds ``w1 · relu(z - 1)``: finite from starts
    below 1, overflowing to inf from starts above ~1 + 1.8e308 / w1."""
    model = make_model("shPLRNN", 2, 1, 1, dtype=torch.float64)
    dec = make_decoder("standard", 2, 1, 1, None, dtype=torch.float64)
    with torch.no_grad():
        model.A.fill_(0.5)
        model.W2.fill_(1.0)
        model.h2.fill_(-1.0)
        model.h1.zero_()
        model.W1.zero_()
        model.W1[1] = w1
        dec.B.fill_(1.0)
    return model, dec


def test_exploding_forecast_makes_pe_non_finite_and_is_not_selected():
    x = 2.0 * np.sin(np.arange(200) / 5.0)[:, None]  # half the starts above 1
    model, dec = _threshold_model(1e308)
    pe = prediction_error(model, dec, x, x, n_steps=1)
    assert np.isfinite(pe[0]) and np.isinf(pe[1])
    table = pd.DataFrame(
        dict(subject="s", status="ok", pe1_train=pe, dstsp_train=[1.0, 0.1], dh_train=[0.1, 0.1])
    )
    assert select_models(table)["selected"].tolist() == [True, False]


def test_pe_skips_times_without_forcing_but_not_bad_predictions():
    x = 0.5 * np.sin(np.arange(200) / 5.0)[:, None]  # every start below 1: both models finite
    model, dec = _threshold_model(1e308)
    xd = x.copy()
    xd[150:] = np.nan  # no forcing there (like a padded subject): those times are not scored
    pe = prediction_error(model, dec, x, xd, n_steps=3)
    assert np.isfinite(pe).all()


# --------------------------------------------------------------------------- banded convolution
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_banded_convolution_keeps_every_output_with_a_finite_history(bad):
    kernel = torch.tensor(spm_hrf(1.4))  # h = 23, blocks of 34 outputs
    h = len(kernel)
    z = torch.randn(200, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z[:30, 0] = bad
    z[100, 2] = bad
    y = causal_valid_convolution(z, kernel)
    windows = z.unfold(0, h, 1)  # (T - h + 1, 4, h): window ending at each output time
    finite = torch.isfinite(windows).all(-1)
    direct = (windows * kernel.flip(0)).sum(-1)
    assert torch.equal(torch.isfinite(y), finite)
    torch.testing.assert_close(y[finite], direct[finite], rtol=1e-12, atol=1e-12)
    assert int(finite[:, 0].sum()) == 200 - 30 - h + 1  # 148, was 144


# --------------------------------------------------------------------------- forcing with M > N
def test_forcing_leaves_the_unobserved_latents_free():
    E, N, M, T = 2, 2, 5, 12
    model = make_model("shPLRNN", E, M, 4, dtype=torch.float64)
    dec = make_decoder("convolved", E, N, M, spm_hrf(3.0), dtype=torch.float64)
    assert dec.forced_dims == N
    with torch.no_grad():
        model.W1.zero_()
        model.h1.zero_()
    xd = torch.randn(T, E, 3, N, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    z_hat = gtf_rollout(model, dec, xd, None, alpha=0.3)
    z1 = dec.initial_state(xd[0])
    steps = torch.arange(1, T, dtype=torch.float64)[:, None, None, None]
    free = model.A[None, :, None, N:] ** steps * z1[None, ..., N:]  # z_t = A^t z_1, unforced
    torch.testing.assert_close(z_hat[..., N:], free, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- escaped models
def test_escaped_runs_flags_slow_escape_only():
    model = make_model("shPLRNN", 2, 1, 1, dtype=torch.float64)
    dec = make_decoder("standard", 2, 1, 1, None, dtype=torch.float64)
    with torch.no_grad():
        model.W1.zero_()
        model.h1.zero_()
        model.A[0] = 0.9
        model.A[1] = 1.002  # in range for 300 steps (x1.8), far out after 3000 (x400)
        dec.B.fill_(1.0)
    z0 = torch.full((2, 3, 1), 0.5, dtype=torch.float64)
    low, high = np.full((2, 1), -1.0), np.full((2, 1), 1.0)
    escaped, n_bounded = escaped_runs(model, dec, z0, low, high, 300)
    assert not escaped.any() and (n_bounded == 3).all()
    escaped, n_bounded = escaped_runs(model, dec, z0, low, high, 3000)
    assert escaped.tolist() == [False, True] and n_bounded.tolist() == [3, 0]


def test_escaping_model_is_flagged_and_not_selected(series):
    x, kernel = series
    fitted = fit_ensemble([x], kernel, n_restarts=2, config=TrainingConfig(**FAST), device="cpu")
    with torch.no_grad():  # model 1: a slowly growing linear map, good at short horizons
        fitted.model.W1[1] = 0.0
        fitted.model.A[1] = 1.003
        fitted.model.h1[1] = 0.0
    res = evaluate_ensemble(fitted, {"sub-01": x}, n_trajectories=3, lyap_steps=100)
    t = res.table
    assert t["escaped"].tolist()[1] and not t["selected"].tolist()[1]
    assert t["n_bounded"].tolist()[1] == 0 and res.summary["sub-01"]["n_escaped"] >= 1


# --------------------------------------------------------------------------- sliding deconvolution
def test_sliding_deconvolution_equals_separate_windows():
    rng = np.random.default_rng(0)
    x, k = rng.standard_normal((600, 2)), spm_hrf(1.4)
    out = sliding_deconvolve(x, 400, 10, 11, k, 1e-5, window=128)
    for u in (400, 477, 589):
        ref = wiener_deconvolve(x[u + 11 - 128 : u + 11], k, 1e-5)[128 - 11]
        np.testing.assert_allclose(out[u], ref, rtol=1e-12, atol=1e-12)
    assert np.isnan(out[:400]).all() and np.isnan(out[590:]).all()


def test_sliding_deconvolution_with_the_training_length_window_is_the_growing_window():
    rng = np.random.default_rng(1)
    x, k = rng.standard_normal((300, 2)), spm_hrf(2.0)
    out = sliding_deconvolve(x, 200, 5, 8, k, 1e-5, window=10_000)  # longer than any window: all
    ref = wiener_deconvolve(x[:206], k, 1e-5)[200]  # history up to u + min(cut_right, n)
    np.testing.assert_allclose(out[200], ref, rtol=1e-12, atol=1e-12)


def test_sliding_deconvolution_cost_is_linear():
    rng = np.random.default_rng(2)
    k = spm_hrf(1.4)

    def seconds(n_test):
        x = rng.standard_normal((1000 + n_test, 3))
        t0 = time.perf_counter()
        sliding_deconvolve(x, 1000, 10, 11, k, 1e-5)
        return time.perf_counter() - t0

    seconds(200)  # warm-up
    short, long = seconds(2_000), seconds(20_000)
    assert long < 10 * short and long < 30, (short, long)


def test_a_run_that_cannot_be_scored_is_not_averaged_away():
    from dsr.analysis.free_runs import free_run_scores

    model = make_model("shPLRNN", 1, 1, 1, dtype=torch.float64)
    dec = make_decoder("standard", 1, 1, 1, None, dtype=torch.float64)
    with torch.no_grad():
        model.W1.zero_()
        model.h1.zero_()
        model.A.fill_(1.0)  # constant runs: each stays where it starts
        dec.B.fill_(1.0)
    x = np.sin(np.arange(300) / 4.0)[:, None]  # data in [-1, 1]
    z0 = torch.tensor([[[0.5], [50.0]]], dtype=torch.float64)  # run 2 far outside the bins
    scores = free_run_scores(model, dec, z0, [x], [None], np.array([300]), np.array([0]), 10,
                             1.0, 1.0, 0)  # fmt: skip
    assert np.isnan(scores["dstsp_train"][0])
    one = free_run_scores(model, dec, z0[:, :1], [x], [None], np.array([300]), np.array([0]), 10,
                          1.0, 1.0, 0)  # fmt: skip
    assert np.isfinite(one["dstsp_train"][0])
