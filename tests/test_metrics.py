"""Known answers and error paths of dsr.analysis.metrics (D_stsp, D_H) and dsr.analysis.prediction (PE_n)."""

import numpy as np
import pytest
import torch

from dsr.analysis.metrics import power_spectrum_error, state_space_divergence
from dsr.analysis.prediction import prediction_error
from dsr.errors import DsrInputError
from dsr.models import make_model
from dsr.models.decoders import make_decoder


@pytest.fixture
def lorenz_like():
    rng = np.random.default_rng(0)
    t = np.arange(3000) * 0.05
    x = np.stack([np.sin(t), np.cos(1.3 * t), np.sin(0.7 * t) ** 2], axis=1)
    return x + 0.05 * rng.standard_normal(x.shape)


@pytest.mark.parametrize("method", ["bins", "gmm"])
def test_dstsp_zero_for_identical_and_grows_with_distortion(lorenz_like, method):
    x = lorenz_like
    same = state_space_divergence(x, x, method=method)
    shifted = [state_space_divergence(x, x + s, method=method) for s in (0.03, 0.1)]
    assert abs(same) < 1e-9
    assert 0 < shifted[0] < shifted[1]
    assert state_space_divergence(x, 1.5 * x, method=method) > 0.05


def test_dstsp_bins_and_gmm_agree_in_ranking(lorenz_like):
    x = lorenz_like
    batch = np.stack([x + 0.15, x + 0.01, x + 0.05, 0.6 * x], axis=1)  # (T, K=4, N)
    bins = state_space_divergence(x, batch, method="bins")
    gmm = state_space_divergence(x, batch, method="gmm", gmm_scaling=0.1)
    assert bins.shape == gmm.shape == (4,)
    np.testing.assert_array_equal(np.argsort(bins), np.argsort(gmm))


def test_dstsp_batch_equals_single_and_nan_when_model_outside(lorenz_like):
    x = lorenz_like
    batch = np.stack([x + 0.3, x + 100.0], axis=1)
    out = state_space_divergence(x, batch)
    assert out[0] == pytest.approx(state_space_divergence(x, x + 0.3))
    assert np.isnan(out[1])  # every model point is outside the data range
    assert state_space_divergence(x, np.full_like(x, np.nan)) != state_space_divergence(x, x)


def test_dstsp_auto_uses_gmm_in_high_dims():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 7))
    assert state_space_divergence(x, x) == pytest.approx(0.0, abs=1e-12)
    assert state_space_divergence(x, x + 3.0) > 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "kde"}, "must be one of"),
        ({"n_bins": 0}, "n_bins"),
        ({"gmm_scaling": -1.0}, "gmm_scaling"),
    ],
)
def test_dstsp_rejects_bad_options(lorenz_like, kwargs, match):
    with pytest.raises(DsrInputError, match=match):
        state_space_divergence(lorenz_like, lorenz_like, **kwargs)


def test_dstsp_rejects_bad_shapes(lorenz_like):
    with pytest.raises(DsrInputError, match="2-D array"):
        state_space_divergence(lorenz_like[:, 0], lorenz_like)
    with pytest.raises(DsrInputError, match="with N = 3"):
        state_space_divergence(lorenz_like, lorenz_like[:, :2])
    with pytest.raises(DsrInputError, match="NaN"):
        state_space_divergence(np.full((10, 2), np.nan), np.zeros((10, 2)))
    with pytest.raises(DsrInputError, match="too many"):
        state_space_divergence(
            np.ones((20, 14)) * np.arange(20)[:, None], np.ones((20, 14)), method="bins"
        )


def test_power_spectrum_error_known_values():
    t = np.arange(512)
    a = np.sin(2 * np.pi * 8 * t / 512)[:, None]
    b = np.sin(2 * np.pi * 100 * t / 512)[:, None]
    assert power_spectrum_error(a, a) == pytest.approx(0.0, abs=1e-12)
    assert power_spectrum_error(a, b, smoothing=0.0) == pytest.approx(1.0, abs=1e-9)
    assert power_spectrum_error(a, b, smoothing=1.0) == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((512, 3)), rng.standard_normal((512, 3))
    assert power_spectrum_error(x, y) == pytest.approx(power_spectrum_error(y, x))
    scaled = x * np.array([5.0, 0.1, 1.0]) + 3.0
    assert power_spectrum_error(scaled, y) == pytest.approx(power_spectrum_error(x, y))
    batch = power_spectrum_error(x, np.stack([x, y], axis=1))
    np.testing.assert_allclose(batch, [0.0, power_spectrum_error(x, y)], atol=1e-12)


def test_power_spectrum_error_errors():
    x = np.zeros((64, 2)) + np.arange(64)[:, None]
    with pytest.raises(DsrInputError, match="equal lengths"):
        power_spectrum_error(x, x[:50])
    with pytest.raises(DsrInputError, match="smoothing"):
        power_spectrum_error(x, x, smoothing=-1.0)


def _pe_reference(model, decoder, x, xd, n, cl, cr):
    """Loop implementation of spec PE_n (1-based formulas, models one at a time)."""
    T, h = len(x), decoder.kernel_length
    k = decoder.kernel.numpy()
    out = []
    for e in range(model.n_models):
        preds = {}
        for u in range(cl + 1, T - max(cr, n) + 1):  # 1-based start
            z = decoder.initial_state(
                torch.from_numpy(xd[u - 1])[None, None].expand(model.n_models, 1, -1)
            )
            for _ in range(n):
                z = model.step(z)
            preds[u + n] = z[e, 0].numpy()
        errs = []
        for t in range(cl + n + h, T - max(cr - n, 0) + 1):
            zc = sum(k[s] * preds[t - s] for s in range(h))
            errs.append((decoder.B[e].detach().numpy() @ zc - x[t - 1]) ** 2)
        out.append(np.mean(errs))
    return np.array(out)


@pytest.mark.parametrize(("decoder_name", "n"), [("convolved", 3), ("standard", 1)])
def test_prediction_error_matches_loop_reference(decoder_name, n):
    g = torch.Generator().manual_seed(0)
    model = make_model("cshPLRNN", 3, 4, 6, generator=g, dtype=torch.float64)
    kernel = np.array([0.5, 0.3, 0.2])
    decoder = make_decoder(decoder_name, 3, 2, 4, kernel, generator=g, dtype=torch.float64)
    rng = np.random.default_rng(0)
    x, xd = rng.standard_normal((40, 2)), rng.standard_normal((40, 2))
    with torch.no_grad():
        ref = _pe_reference(model, decoder, x, xd, n, cl=2, cr=5)
    got = prediction_error(model, decoder, x, xd, n_steps=n, cut_left=2, cut_right=5)
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_prediction_error_errors():
    model = make_model("cshPLRNN", 2, 3, 4, dtype=torch.float64)
    decoder = make_decoder("convolved", 2, 2, 3, np.ones(10) / 10, dtype=torch.float64)
    x = np.zeros((30, 2))
    with pytest.raises(DsrInputError, match="n_steps"):
        prediction_error(model, decoder, x, x, n_steps=0)
    with pytest.raises(DsrInputError, match="too short"):
        prediction_error(model, decoder, x[:12], x[:12], n_steps=5)
    with pytest.raises(DsrInputError, match="both 'r' and 'r_deconv'"):
        prediction_error(model, decoder, x, x, r=x)
    with pytest.raises(DsrInputError, match="'x_deconv' must be"):
        prediction_error(model, decoder, x, np.zeros((30, 3, 2)))
    with pytest.raises(DsrInputError, match="cut_left"):
        prediction_error(model, decoder, x, x, cut_left=-1)


def test_dh_of_a_flat_run_is_maximal_not_missing():
    x = np.sin(np.arange(200) / 3.0)[:, None] + np.zeros((1, 2))
    flat = np.ones((200, 2))
    assert power_spectrum_error(x, flat) == 1.0
    half = np.c_[x[:, 0], np.ones(200)]  # one dim oscillates exactly like the data, one is flat
    assert power_spectrum_error(x, half) == pytest.approx(0.5)
