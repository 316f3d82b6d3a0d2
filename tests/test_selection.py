"""Automatic model selection and the IQR outlier rule on planted score tables."""

import numpy as np
import pandas as pd
import pytest

from dsr.analysis.selection import iqr_outliers, select_models
from dsr.errors import DsrInputError


def _synthetic_table(rng):
    rows = []
    for sid in ("sub-01", "sub-02"):
        for restart in range(30):
            rows.append(
                {
                    "subject": sid,
                    "restart": restart,
                    "status": "ok",
                    "pe1_train": rng.uniform(0.1, 0.9),
                    "dstsp_train": rng.uniform(1, 5),
                    "dh_train": rng.uniform(0.3, 0.9),
                }
            )
    table = pd.DataFrame(rows)
    best = table.index[table["restart"] < 5]  # planted: best D_stsp and D_H
    table.loc[best, "dstsp_train"] = 0.1 + 0.01 * table.loc[best, "restart"]
    table.loc[best, "dh_train"] = 0.01
    trap = table.index[table["restart"] == 5]  # best scores but PE_1 > 1 or diverged
    table.loc[trap, ["dstsp_train", "dh_train", "pe1_train"]] = [0.0, 0.0, 1.5]
    table.loc[table["restart"] == 6, ["dstsp_train", "dh_train", "status"]] = [0.0, 0.0, "diverged"]
    return table


def test_selection_picks_planted_models():
    table = select_models(_synthetic_table(np.random.default_rng(0)), n_best_dh=5)
    for _, g in table.groupby("subject"):
        assert sorted(g.loc[g["selected"], "restart"]) == [0, 1, 2, 3, 4]
        assert g["top_dstsp"].sum() == 20
        assert not g.loc[g["restart"].isin([5, 6]), "pe_ok"].any()


def test_selection_and_outlier_errors():
    with pytest.raises(DsrInputError, match="lacks column"):
        select_models(pd.DataFrame({"subject": ["a"]}))
    mask = iqr_outliers([1.0, 1.1, 0.9, 1.05, 10.0, np.nan])
    np.testing.assert_array_equal(mask, [False, False, False, False, True, True])


def test_keep_fraction_scales_both_stages():
    """f = 1/4: the best half by D_stsp, then the better half of those by D_H."""
    table = _synthetic_table(np.random.default_rng(0))
    out = select_models(table, keep_fraction=0.25)
    for _, g in out.groupby("subject"):
        n = int(g["eligible"].sum())  # 28 of 30: restarts 5 (PE_1 > 1) and 6 (diverged) are not
        assert g["top_dstsp"].sum() == int(np.ceil(0.5 * n)) == 14
        assert g["selected"].sum() == int(np.ceil(0.25 * n)) == 7
        assert set(g.loc[g["selected"], "restart"]) >= {0, 1, 2, 3, 4}
    two = select_models(table[table["restart"].isin([0, 1, 2])], keep_fraction=0.1)
    assert two.groupby("subject")["selected"].sum().tolist() == [2, 2]  # at least two
    with pytest.raises(DsrInputError, match="keep_fraction"):
        select_models(table, keep_fraction=0.0)


def test_keep_fraction_prefers_the_broadband_model_among_equal_geometry():
    """Two models fit the held-out geometry equally well; the D_H stage keeps the one whose power
    spectrum matches (a quasi-periodic model's peaks give a large D_H)."""
    rows = [
        {"subject": "s", "restart": r, "status": "ok", "pe1_train": 0.5,
         "dstsp_test": d, "dh_test": h}
        for r, (d, h) in enumerate([(0.10, 0.6), (0.11, 0.2), (0.5, 0.4), (0.6, 0.5)] + [(2.0, 0.1)] * 4)
    ]  # fmt: skip
    out = select_models(pd.DataFrame(rows), segment="test", keep_fraction=0.25)
    assert sorted(out.loc[out["top_dstsp"], "restart"]) == [0, 1, 2, 3]
    assert sorted(out.loc[out["selected"], "restart"]) == [1, 2]
