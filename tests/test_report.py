"""Figures and HTML of dsr.report on a tiny fitted subject (T=200, N=4 regions, E=3 models)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from dsr import pipeline
from dsr.report import SUBJECT_FIGURES, encode_png, write_subject_report
from dsr.report import figures as F
from dsr.report.html import lambda_text, shown_models, step_seconds


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    """extract/fit/evaluate folders of one tiny demo subject."""
    root = tmp_path_factory.mktemp("subject")
    demo = pipeline.run_demo(
        root / "demo", ["sub-01"], n_volumes=200, n_regions=4, lyapunov_steps=1000
    )
    atlas = demo / "atlas"
    pipeline.run_extract(
        "demo",
        demo,
        "sub-01",
        root / "extract",
        atlas=atlas / "atlas-demo_dseg.nii.gz",
        labels=atlas / "atlas-demo_dseg.tsv",
        task="rest",
        confounds_strategy=["motion"],
    )
    _fit_and_evaluate(root / "extract", root)
    return root, demo / "ground_truth" / "sub-01.json"


def _fit_and_evaluate(extract, out):
    """Tiny fit (3 restarts, 2 epochs) and evaluation into ``out/fit`` and ``out/evaluate``."""
    training = {"epochs": 2, "batches_per_epoch": 2, "batch_size": 4, "seq_len": 40}
    training |= {"hidden_dim": 8, "checkpoint_every": 0}
    pipeline.run_fit([extract], [out / "fit"], ["sub-01"], training, n_restarts=3)
    pipeline.run_evaluate(
        out / "fit",
        extract,
        out / "evaluate",
        n_trajectories=2,
        lyap_steps=200,
        lyap_transient=20,
        max_order=1,
    )


def _subject_html(root, out, truth) -> str:
    """Subject report of the fit/evaluate folders in ``out`` (figures in ``out/figures``)."""
    figs = {name: out / "figures" / f"{name}.png" for name in SUBJECT_FIGURES}
    path = write_subject_report(
        "sub-01",
        root / "extract",
        out / "fit",
        out / "evaluate",
        out / "report.html",
        figs,
        truth=truth,
        n_show=2,
    )
    return path.read_text(encoding="utf-8")


def test_subject_report_is_self_contained(subject):
    root, truth = subject
    html = _subject_html(root, root, truth)
    figs = {name: root / "figures" / f"{name}.png" for name in SUBJECT_FIGURES}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in figs.values())
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', html)) == len(figs)
    assert "Ground truth" in html and "TR (s)" in html and "No restart diverged" in html
    assert html.count("<tr") > 3  # metric table, one row per model


def test_shown_models_best_dstsp_first():
    table = pd.DataFrame(
        {
            "model": [0, 1, 2],
            "selected": [False] * 3,
            "dstsp_train": [3.0, np.nan, 1.0],
            "dh_train": [0.1, 0.2, 0.3],
        }
    )
    assert shown_models(table, 5) == ([2, 0], False)
    table["selected"] = [True, False, True]  # selected ones in D_stsp order, not D_H order
    assert shown_models(table, 5) == ([2, 0], True)
    table["selected"] = [True, False, False]
    assert shown_models(table, 1) == ([0], True)


def test_lambda_text_reports_median_range_and_agreement():
    """Per-step exponents / TR 2 s: median and range per second, chaotic count, and agreement
    only when every selected model lies within ±25 % of the median."""
    table = pd.DataFrame(
        {"selected": [True, True, True, False], "lambda_max": [0.10, 0.12, 0.11, -5.0]}
    )
    text = lambda_text(table, 2.0)
    assert "3 selected models: median 0.0550 1/s (range 0.0500 to 0.0600; 3 chaotic)" in text
    assert "agree within ±25%" in text and "not agree" not in text
    table.loc[2, "lambda_max"] = 0.30  # median 0.12: 0.30 is 2.5x it
    assert "do not agree within ±25%" in lambda_text(table, 2.0)
    table["selected"] = False
    assert lambda_text(table, 2.0) == "No selected model has a finite λ_max."


@pytest.mark.parametrize(("meta", "dt"), [({"tr_s": 2.0}, 2.0), ({"fs_hz": 4.0}, 0.25), ({}, 1.0)])
def test_step_seconds(meta, dt):
    assert step_seconds(meta) == dt


def test_figures_accept_distinct_shapes(tmp_path):
    rng = np.random.default_rng(0)
    x, gen = rng.normal(size=(60, 7)), rng.normal(size=(2, 60, 7))
    figs = [
        F.plot_timeseries(x, 1.4),
        F.plot_connectivity(x),
        F.plot_loss(np.abs(rng.normal(size=(5, 3))) + 0.1, ["ok", "diverged", "ok"]),
        F.plot_trajectories(x, gen, [0, 4], 1.4),
        F.plot_state_space(x, gen, [0, 4]),
        F.plot_spectra(x, gen, [0, 4], 1.4),
        F.plot_lyapunov(rng.normal(size=(3, 5)), np.array([True, False, True]), 0.05),
        F.plot_fixed_points([], 0, rng.normal(size=(60, 5))),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    F.save_figure(figs[0], tmp_path / "a.png")
    assert len(encode_png(tmp_path / "a.png")) > 1000
    freqs, power = F.power_spectrum(x, 0.5)
    assert freqs[0] > 0 and freqs[-1] == pytest.approx(1.0) and power.sum() == pytest.approx(1.0)


def test_diverged_restart_flows_through_evaluate_and_report(subject, tmp_path, monkeypatch):
    """A restart that diverges is kept (last finite parameters), scored, and named in the report."""
    import torch

    import dsr.training.state as train_state

    root, truth = subject
    real = train_state.make_model

    def corrupting(*args, **kwargs):
        model = real(*args, **kwargs)
        with torch.no_grad():
            model.A[1] = 50.0  # restart 1 explodes within a few steps
        return model

    monkeypatch.setattr(train_state, "make_model", corrupting)
    _fit_and_evaluate(root / "extract", tmp_path)
    monkeypatch.undo()
    table = pd.read_csv(tmp_path / "evaluate" / "metrics.tsv", sep="\t")
    assert table["status"].tolist() == ["ok", "diverged", "ok"]
    assert not table.loc[1, "selected"]
    assert "Failed (diverged) restarts: 1" in _subject_html(root, tmp_path, truth)
