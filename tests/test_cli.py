import json

import numpy as np
import pytest

from dsr.cli import main
from dsr.models.examples import limit_cycle_plrnn, simulate_convolved, simulate_latent
from dsr.signal.kernels import spm_hrf

FAST = [
    "--epochs",
    "2",
    "--batches-per-epoch",
    "2",
    "--seq-len",
    "40",
    "--n-models",
    "2",
    "--hidden-dim",
    "6",
]


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    x = simulate_convolved(simulate_latent(limit_cycle_plrnn(), 400), spm_hrf(2.0))
    path = tmp_path_factory.mktemp("data") / "sub-07.npy"
    np.save(path, x[:300])
    np.save(path.with_name("test.npy"), x[300:])
    return path


def test_fit_then_evaluate(tmp_path, series):
    out = tmp_path / "run"
    assert main(["fit", str(series), "--tr", "2.0", "--out", str(out), *FAST]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert [m["subject"] for m in fit["models"]] == ["sub-07", "sub-07"]
    assert {m["status"] for m in fit["models"]} == {"ok"} and fit["tr_s"] == 2.0
    assert (out / "model.pt").is_file() and len((out / "loss.tsv").read_text().splitlines()) == 3
    rc = main(
        [
            "evaluate",
            str(out),
            str(series),
            "--test-data",
            str(series.with_name("test.npy")),
            "--lyap-steps",
            "300",
            "--n-trajectories",
            "3",
        ]
    )
    assert rc == 0
    table = (out / "metrics.tsv").read_text().splitlines()
    assert len(table) == 3 and "lambda_max" in table[0]


def test_errors_exit_2_with_message(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "missing.npy"), "--tr", "1", "--out", str(tmp_path)]) == 2
    assert "missing.npy" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), str(tmp_path / "x.npy")]) == 2
    assert "fit.json" in capsys.readouterr().err
