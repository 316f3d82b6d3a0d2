"""End-to-end evaluation of a (briefly) fitted ensemble; lambda_max round trip (slow)."""

import json

import numpy as np
import pandas as pd
import pytest

from dsr.analysis.evaluation import evaluate_run
from dsr.analysis.lyapunov import max_lyapunov_exponent
from dsr.errors import DsrInputError
from dsr.models.examples import limit_cycle_plrnn, simulate_convolved, simulate_latent
from dsr.signal.kernels import spm_hrf
from dsr.training.ensemble import save_ensemble
from dsr.training.loop import TrainingConfig, fit_ensemble


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory):
    kernel = spm_hrf(1.2)
    x = simulate_convolved(simulate_latent(limit_cycle_plrnn(), 460), kernel, noise_sd=0.05)
    cfg = TrainingConfig(epochs=2, batches_per_epoch=3, seq_len=60, test_fraction=0)
    fitted = fit_ensemble([x[:360], x[:380]], kernel, n_restarts=2, config=cfg, device="cpu")
    run = tmp_path_factory.mktemp("run")
    save_ensemble(fitted, run / "fit" / "model.pt")
    return run, {"sub-01": {"x": x[:360], "x_test": x[360:]}, "sub-02": x[:380]}


def test_evaluate_run_writes_outputs(fitted_run):
    run, data = fitted_run
    res = evaluate_run(run, data, n_trajectories=4, lyap_steps=200, lyap_transient=20, tr_s=1.2)
    table = pd.read_csv(run / "evaluate" / "metrics.tsv", sep="\t")
    assert len(table) == 4 and {"dstsp_train", "dh_test", "pe10_test", "lambda_max"} <= set(table)
    assert np.isfinite(table["pe1_train"]).all() and np.isfinite(table["dh_train"]).all()
    assert table.loc[table["subject"] == "sub-02", "pe10_test"].isna().all()
    summary = json.loads((run / "evaluate" / "summary.json").read_text())
    assert set(summary) == {"sub-01", "sub-02"} and summary["sub-01"]["n_models"] == 2
    assert np.load(run / "evaluate" / "lyapunov.npy").shape == res.spectra.shape == (4, 3)


def test_evaluate_run_errors(fitted_run, tmp_path):
    run, data = fitted_run
    with pytest.raises(DsrInputError, match="no data for subject"):
        evaluate_run(run, {"sub-01": data["sub-01"]}, out_dir=tmp_path)
    with pytest.raises(DsrInputError, match="no model.pt"):
        evaluate_run(tmp_path, data)
    x = data["sub-02"]
    bad_subjects = [
        ({"x": x, "r_test": np.zeros((50, 2))}, "test confounds given without test data"),
        ({"x": x, "x_tset": x[:50]}, "data keys must be 'x'"),
        ({"r": np.zeros((len(x), 2))}, "data keys must be 'x'"),
    ]
    for value, message in bad_subjects:
        with pytest.raises(DsrInputError, match=message):
            evaluate_run(run, {"sub-01": data["sub-01"], "sub-02": value}, out_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written for refused input


@pytest.mark.slow
def test_round_trip_lambda_max_brackets_truth():
    """Fit HRF-convolved data of a known cshPLRNN; fitted lambda_max spread covers the truth."""
    truth = limit_cycle_plrnn()
    kernel = spm_hrf(1.2)
    x = simulate_convolved(simulate_latent(truth, 1200), kernel, noise_sd=0.01)
    cfg = TrainingConfig(epochs=150, batches_per_epoch=20, seq_len=100, hidden_dim=10)
    fitted = fit_ensemble([x], kernel, n_restarts=8, config=cfg, device="cpu", seed=1)
    true_lam = max_lyapunov_exponent(truth, n_steps=3000, transient=500)[0]
    lam = max_lyapunov_exponent(fitted.model, n_steps=3000, transient=500)
    assert np.nanmin(lam) - 0.05 <= true_lam <= np.nanmax(lam) + 0.05
