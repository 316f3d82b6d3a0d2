"""Cross-subject statistics of dsr.report.cohort."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import pdist, squareform

from dsr.errors import DsrInputError
from dsr.report import cohort, embedding


def test_lambda_variance_test_matches_anova():
    rng = np.random.default_rng(0)
    values = {f"s{i}": rng.normal(i, 0.1, 5 + i) for i in range(3)}
    out = cohort.lambda_variance_test(values)
    ref = stats.f_oneway(*values.values())
    assert out["f"] == pytest.approx(ref.statistic)
    assert out["p"] == pytest.approx(ref.pvalue)
    within = np.mean([v.var(ddof=1) for v in values.values()])
    assert out["within_var"] == pytest.approx(within)
    assert out["between_var"] > out["within_var"]  # subjects differ far more than restarts
    assert "lower than" in cohort.variance_text(out)


def test_lambda_variance_test_ignores_nan_and_needs_two_subjects():
    out = cohort.lambda_variance_test({"a": np.array([0.1, np.nan, 0.2]), "b": np.array([1.0])})
    assert out["subjects"] == ["a"]
    assert np.isnan(out["f"]) and np.isnan(out["ratio"])
    assert "Too few" in cohort.variance_text(out)


def test_classical_mds_recovers_planar_distances():
    pts = np.random.default_rng(1).normal(size=(7, 2))
    d = squareform(pdist(pts))
    coords = embedding.classical_mds(d, 2)
    assert coords.shape == (7, 2)
    np.testing.assert_allclose(squareform(pdist(coords)), d, atol=1e-8)


def test_cluster_separates_two_groups():
    pts = np.r_[np.zeros((3, 2)), np.full((4, 2), 10.0)] + 0.01 * np.arange(14).reshape(7, 2)
    labels, link = embedding.cluster(squareform(pdist(pts)), 2)
    assert len(set(labels[:3])) == 1 and len(set(labels[3:])) == 1 and labels[0] != labels[3]
    assert link.shape == (6, 4)


def test_symmetric_distance():
    d = np.array([[5.0, 1.0, np.nan], [3.0, 2.0, -1.0], [4.0, 0.0, 7.0]])
    s = embedding.symmetric_distance(d)
    np.testing.assert_allclose(s, s.T)
    assert np.all(np.diag(s) == 0) and s.min() >= 0 and np.isfinite(s).all()
    assert s[0, 1] == pytest.approx(2.0)


def test_dissimilarity_prefers_own_subject():
    rng = np.random.default_rng(2)
    t = np.arange(300)[:, None]
    data = {
        "a": np.sin(0.1 * t + np.arange(3)) + 0.05 * rng.normal(size=(300, 3)),
        "b": np.sin(0.5 * t + np.arange(3)) * 2 + 1 + 0.05 * rng.normal(size=(300, 3)),
    }
    gen = {s: x[None] + 0.05 * rng.normal(size=(2, 300, 3)) for s, x in data.items()}
    dstsp, dh = cohort.dissimilarity(data, gen)
    assert dstsp.shape == dh.shape == (2, 2)
    assert list(dstsp.index) == list(dstsp.columns) == ["a", "b"]
    for frame in (dstsp, dh):
        m = frame.to_numpy()
        assert m[0, 0] < m[0, 1] and m[1, 1] < m[1, 0]


def test_dissimilarity_rejects_mismatched_subjects():
    with pytest.raises(DsrInputError, match="same subjects"):
        cohort.dissimilarity({"a": np.zeros((60, 2))}, {"b": np.zeros((1, 60, 2))})


def test_cohort_compares_held_out_parts(tmp_path):
    """The cohort stage scores every model on data it was not fitted to, the diagonal included."""
    import json

    import pandas as pd

    from dsr.io import ExtractionResult, save_extraction

    rng = np.random.default_rng(0)
    x, x_gen = rng.normal(size=(100, 2)), rng.normal(size=(3, 100, 2))
    ex, ev = tmp_path / "extract", tmp_path / "evaluate"
    meta = {"tr_s": 1.0, "nonstationarity": {"flagged": True, "subject_p": 0.01}}
    save_extraction(ExtractionResult(x.astype(np.float32), None, meta), ex)
    ev.mkdir()
    table = {"model": [0, 1, 2], "status": "ok", "selected": True, "selected_on": "test",
             "dstsp_test": [0.1, 0.2, 0.3], "dh_test": 0.1, "lambda_max": 0.01}  # fmt: skip
    pd.DataFrame(table).to_csv(ev / "metrics.tsv", sep="\t", index=False)
    (ev / "summary.json").write_text(json.dumps({"sub-01": {"n_train": 75}}))
    np.savez(ev / "trajectories.npz", x_gen=x_gen)
    data, gen, _, train, screen_p = cohort._cohort_inputs(
        ["sub-01"], [ex], [ev], cohort.read_summaries(["sub-01"], [ev]), n_show=2
    )
    np.testing.assert_allclose(data["sub-01"], x[75:].astype(np.float32))
    np.testing.assert_array_equal(gen["sub-01"], x_gen[:2, 75:])
    np.testing.assert_allclose(train["sub-01"], x[:75].astype(np.float32))
    assert screen_p == {"sub-01": 0.01}  # the extraction's screen reaches summary.tsv


def test_data_reference_puts_each_subjects_own_data_on_the_diagonal():
    """Training data as the "model" (the reference the models' matrix is read against): subjects
    whose recordings differ have their own data best in every row; the diagonal is each one's
    floor, the same number the dissimilarity of one subject gives."""
    rng = np.random.default_rng(1)
    shifts = {"a": 0.0, "b": 1.5, "c": 3.0}
    train = {s: rng.normal(m, 1, size=(300, 6)) for s, m in shifts.items()}
    test = {s: rng.normal(m, 1, size=(100, 6)) for s, m in shifts.items()}
    ref = cohort.data_reference(test, train)
    assert np.isfinite(ref.to_numpy()).all() and cohort.own_best(ref) == 3
    alone = cohort.dissimilarity({"a": test["a"]}, {"a": train["a"][None]})[0]
    np.testing.assert_allclose(ref.loc["a", "a"], alone.loc["a", "a"])
    assert "own data is best in 3 of 3" in cohort.dissimilarity_text(ref, ref)
    assert "Reference" not in cohort.dissimilarity_text(ref, None)
