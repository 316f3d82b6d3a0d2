"""Automatic model selection (spec section 5) and per-subject summaries of an evaluated ensemble.

Tables have one row per model (columns ``subject``, ``status`` and scores such as ``pe1_train``,
``dstsp_train``, ``dh_train``, ``lambda_max``), as :func:`dsr.analysis.evaluation.evaluate_ensemble` makes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dsr._validation import check_choice
from dsr.errors import DsrInputError


def iqr_outliers(values) -> np.ndarray:
    """Boolean mask of values outside ``[Q1 - 1.5 IQR, Q3 + 1.5 IQR]`` (NaN counts as outlier)."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    if not finite.any():
        return ~finite
    q1, q3 = np.percentile(v[finite], [25, 75])
    lo, hi = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    return ~finite | (v < lo) | (v > hi)


def select_models(
    table: pd.DataFrame,
    *,
    pe_key: str = "pe1_train",
    pe_threshold: float = 1.0,
    n_best_dstsp: int = 20,
    n_best_dh: int = 10,
    segment: str = "train",
    by: str = "subject",
    keep_fraction: float | None = None,
) -> pd.DataFrame:
    """Automatic model selection of spec section 5, per ``by`` group; returns a copy with columns
    ``pe_ok`` (status ok and ``pe_key <= pe_threshold``), ``eligible`` (``pe_ok`` and not
    ``escaped``, when the table has that column), ``top_dstsp`` (best ``n_best_dstsp`` eligible
    models by ``dstsp_<segment>``), ``selected`` (best ``n_best_dh`` of those by ``dh_<segment>``,
    the set used for lambda analyses) and ``selected_on`` (``segment``). NaN scores never
    qualify.

    ``keep_fraction`` (0 < f <= 1; None: the spec's counts only) scales the spec's two stages
    (20 by D_stsp, then the better half of those by D_H) to the group's ``n`` eligible models: the
    D_stsp stage keeps at most ``ceil(2f · n)`` (at least four where four are eligible), the D_H
    stage at most ``ceil(f · n)`` (at least two). With the spec's counts, 10 or fewer restarts are
    all kept. On the demo, 16 restarts with f = 1/4 (best 8 by held-out D_stsp, then best 4 by D_H)
    met the λ_max target for 18 of 40 subject fits against 12 with the best 4 by D_stsp alone:
    D_stsp of 125 held-out volumes does not tell a quasi-periodic model from a chaotic one, its
    power spectrum does (validation/RESULTS.md, "Demo targets")."""
    check_choice("segment", segment, ("train", "test"))
    if keep_fraction is not None and not 0.0 < keep_fraction <= 1.0:
        raise DsrInputError(f"'keep_fraction' must be in (0, 1] or None; got {keep_fraction}")
    need = {pe_key, f"dstsp_{segment}", f"dh_{segment}", "status", by}
    if need - set(table.columns):
        raise DsrInputError(f"table lacks column(s) {sorted(need - set(table.columns))}")
    t = table.copy()
    t["pe_ok"] = (t["status"] == "ok") & (t[pe_key] <= pe_threshold)
    t["eligible"] = t["pe_ok"] & ~t.get("escaped", pd.Series(False, index=t.index)).astype(bool)
    dstsp, dh = t[f"dstsp_{segment}"], t[f"dh_{segment}"]
    rank = dstsp.where(t["eligible"] & np.isfinite(dstsp)).groupby(t[by]).rank(method="first")
    keep_dstsp = pd.Series(float(n_best_dstsp), index=t.index)
    keep_dh = pd.Series(float(n_best_dh), index=t.index)
    if keep_fraction is not None:
        n = rank.notna().groupby(t[by]).transform("sum")
        share = lambda f, least: np.maximum(np.ceil(f * n), np.minimum(n, least))  # noqa: E731
        keep_dstsp = np.minimum(keep_dstsp, share(2 * keep_fraction, 4))
        keep_dh = np.minimum(keep_dh, share(keep_fraction, 2))
    t["top_dstsp"] = rank <= keep_dstsp
    rank = dh.where(t["top_dstsp"]).groupby(t[by]).rank(method="first")
    t["selected"] = rank <= keep_dh
    t["selected_on"] = segment
    return t


def _stats(v: pd.Series) -> dict:
    """Count, mean, sd (ddof 1; None for one value) and median of the finite values of ``v``."""
    v = v[np.isfinite(v)]
    if v.empty:
        return {"n": 0, "mean": None, "sd": None, "median": None}
    sd = float(v.std(ddof=1)) if len(v) > 1 else None
    return {"n": int(len(v)), "mean": float(v.mean()), "sd": sd, "median": float(v.median())}


def summarise(table: pd.DataFrame) -> dict:
    """JSON-serialisable per-subject summary of an evaluated (and selected) table."""
    out = {}
    score_cols = [c for c in table.columns if c.startswith(("dstsp", "dh", "pe", "lambda", "ky"))]
    for sid, g in table.groupby("subject", sort=False):
        sel = g[g["selected"]]
        out[str(sid)] = {
            "n_models": int(len(g)),
            "n_ok": int((g["status"] == "ok").sum()),
            "n_pe_ok": int(g["pe_ok"].sum()),
            "n_escaped": int(g["escaped"].sum()) if "escaped" in g else None,
            "n_eligible": int(g["eligible"].sum()),
            "selected_on": str(g["selected_on"].iloc[0]),
            "n_selected": int(len(sel)),
            "all": {c: _stats(g[c]) for c in score_cols if g[c].dtype.kind == "f"},
            "selected": {c: _stats(sel[c]) for c in score_cols if g[c].dtype.kind == "f"},
            "fraction_chaotic_selected": (
                float((sel["lambda_max"] > 0).mean()) if len(sel) else None
            ),
        }
    return out
