"""Cross-subject statistics of a cohort of fitted subjects.

* :func:`lambda_variance_test`: is λ_max more alike within a subject (across restarts) than
  between subjects? One-way ANOVA of λ_max (per second) with subjects as groups, plus the ratio of
  the variance of subject means to the mean within-subject variance (paper Fig. 3G logic).
* :func:`dissimilarity`: D_stsp and D_H of subject i's models' free runs against subject j's data
  (the cohort stage compares held-out parts).
* :func:`data_reference`: the same comparison with each subject's training data in place of its
  models, what a perfect model could reach (:func:`own_best` counts diagonal-dominant rows).

The 2-D embedding and clustering of the D_stsp matrix are in :mod:`dsr.report.embedding`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from dsr.analysis.metrics import power_spectrum_error, state_space_divergence
from dsr.atomic import write_json, write_text
from dsr.errors import DsrInputError
from dsr.report.embedding import classical_mds, cluster


def lambda_variance_test(values: dict[str, np.ndarray]) -> dict:
    """Within- vs between-subject variance of λ_max.

    Parameters
    ----------
    values : dict
        Subject id -> λ_max of that subject's (selected) models, per second; non-finite ignored.

    Returns
    -------
    dict
        ``f``, ``p`` of a one-way ANOVA (``scipy.stats.f_oneway``; NaN with < 2 subjects having
        >= 2 models), ``within_var`` (mean within-subject variance, ddof=1), ``between_var``
        (variance of subject means, ddof=1), their ``ratio`` and the subjects used.
    """
    groups = {s: np.asarray(v, float)[np.isfinite(v)] for s, v in values.items()}
    groups = {s: v for s, v in groups.items() if len(v) >= 2}
    out = {"subjects": sorted(groups), "f": np.nan, "p": np.nan}
    if len(groups) < 2:
        return {**out, "within_var": np.nan, "between_var": np.nan, "ratio": np.nan}
    res = stats.f_oneway(*groups.values())
    within = float(np.mean([v.var(ddof=1) for v in groups.values()]))
    between = float(np.var([v.mean() for v in groups.values()], ddof=1))
    return {
        **out,
        "f": float(res.statistic),
        "p": float(res.pvalue),
        "within_var": within,
        "between_var": between,
        "ratio": between / within if within > 0 else np.inf,
    }


def dissimilarity(
    data: dict[str, np.ndarray], generated: dict[str, np.ndarray], gmm_scaling: float = 1.0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cross-subject D_stsp and D_H matrices.

    Parameters
    ----------
    data : dict
        Subject id -> data ``(T_j, N)``.
    generated : dict
        Subject id -> free runs of its models ``(K, T_i, N)`` (same N for all). The cohort stage
        passes the held-out parts of both (data and free runs after each subject's training
        length), so no model is scored on the data it was fitted to.

    Returns
    -------
    dstsp, dh : pd.DataFrame, (S, S)
        Row i (models of subject i), column j (data of subject j); mean over the K runs. Series
        are cut to the shorter length for D_H.
    """
    subjects = list(data)
    if set(subjects) != set(generated):
        raise DsrInputError("'data' and 'generated' must have the same subjects")
    ds = np.full((len(subjects),) * 2, np.nan)
    dh = ds.copy()
    for i, si in enumerate(subjects):
        g = np.transpose(generated[si], (1, 0, 2))  # (T, K, N)
        for j, sj in enumerate(subjects):
            x = data[sj]
            n = min(len(x), len(g))
            ds[i, j] = np.nanmean(state_space_divergence(x, g, gmm_scaling=gmm_scaling))
            dh[i, j] = np.nanmean(power_spectrum_error(x[:n], g[:n]))
    frame = lambda a: pd.DataFrame(a, index=subjects, columns=subjects)  # noqa: E731
    return frame(ds), frame(dh)


def data_reference(
    held_out: dict[str, np.ndarray], train: dict[str, np.ndarray], gmm_scaling: float = 1.0
) -> pd.DataFrame:
    """The cross-subject D_stsp with each subject's *training data* in place of its models' free
    runs: row i (training part of subject i ``(T_i, N)``), column j (held-out part of subject j).
    Its diagonal is each subject's floor. Where a row's own column is not its smallest, the
    subjects' recordings differ less than one subject's two parts do, and no model of that
    subject can be told apart from the others' by this comparison."""
    return dissimilarity(held_out, {s: x[None] for s, x in train.items()}, gmm_scaling)[0]


def own_best(d: pd.DataFrame) -> int:
    """Rows of a dissimilarity matrix (rows: models of, columns: data of) whose own column is
    the smallest."""
    return int(sum(d.loc[s].idxmin() == s for s in d.index))


def dissimilarity_text(dstsp: pd.DataFrame, reference: pd.DataFrame | None) -> str:
    n = len(dstsp)
    text = f"Each subject's models fit its own held-out data best in {own_best(dstsp)} of {n} rows."
    if reference is not None:
        text += (
            f" Reference: with each subject's training data in place of its models, own data is "
            f"best in {own_best(reference)} of {n} rows (column dstsp_data_reference of "
            "dissimilarity.tsv); a diagonal the data themselves do not show cannot be expected "
            "of models."
        )
    return text


def read_summaries(subjects, eval_dirs) -> dict[str, dict]:
    """Each subject's entry of its evaluation's ``summary.json``."""
    return {
        s: json.loads((Path(ev) / "summary.json").read_text(encoding="utf-8"))[s]
        for s, ev in zip(subjects, eval_dirs, strict=True)
    }


def subject_summary(summaries: dict[str, dict], truths=None) -> pd.DataFrame:
    """One row per subject of ``summaries`` (:func:`read_summaries`): counts, medians of the
    selected models' scores (train and held-out), the data's own floor, λ_max per second (mean,
    SD) and, for the demo, the true λ_max."""
    rows = []
    for k, (s, summ) in enumerate(summaries.items()):
        sel = summ["selected"] if summ["n_selected"] else summ["all"]
        row = {key: summ.get(key) for key in ("n_models", "n_ok", "n_escaped", "n_selected")}
        row["selected_on"] = summ.get("selected_on", "train")
        for col in sorted(c for c in sel if c.startswith(("dstsp", "dh", "pe"))) + ["ky_dim"]:
            row[f"{col}_median"] = sel.get(col, {}).get("median")
        floor = summ.get("data_floor") or {}
        row.update(dstsp_floor=floor.get("dstsp"), dh_floor=floor.get("dh"))
        lam = sel.get("lambda_max_per_s", {})
        row.update(lambda_max_per_s_mean=lam.get("mean"), lambda_max_per_s_sd=lam.get("sd"))
        if truths:
            truth = json.loads(Path(truths[k]).read_text(encoding="utf-8"))
            row["true_lambda_max_per_s"] = truth["lambda_max_per_second"]
        rows.append({"subject": s, **row})
    return pd.DataFrame(rows)


def variance_text(test: dict) -> str:
    """One sentence describing :func:`lambda_variance_test`."""
    if not np.isfinite(test["f"]):
        return "Too few subjects with >= 2 selected models for the variance test."
    verdict = "lower" if test["within_var"] < test["between_var"] else "not lower"
    return (
        f"One-way ANOVA of λ_max (1/s) across {len(test['subjects'])} subjects: "
        f"F = {test['f']:.3g}, p = {test['p']:.3g}. Mean within-subject variance "
        f"{test['within_var']:.3g} is {verdict} than the variance of subject means "
        f"{test['between_var']:.3g} (ratio {test['ratio']:.3g})."
    )


def write_tables(out_dir, summary, dstsp, dh, embedding, reference=None) -> None:
    """Write ``summary.tsv``, ``dissimilarity.tsv`` (long; with ``reference`` its column
    ``dstsp_data_reference``) and ``embedding.tsv`` atomically."""
    out = Path(out_dir)
    write_text(out / "summary.tsv", summary.to_csv(sep="\t", index=False, na_rep="nan"))
    long = dstsp.stack().rename("dstsp").to_frame().join(dh.stack().rename("dh"))
    if reference is not None:
        long = long.join(reference.stack().rename("dstsp_data_reference"))
    long.index.names = ["models_of", "data_of"]
    write_text(out / "dissimilarity.tsv", long.reset_index().to_csv(sep="\t", index=False))
    write_text(out / "embedding.tsv", embedding.to_csv(sep="\t", index=False))


def _cohort_inputs(subjects, extract_dirs, eval_dirs, summaries, n_show):
    from dsr.io import load_extraction
    from dsr.report.html import shown_models, step_seconds

    data, gen, lam, train, screen_p = {}, {}, {}, {}, {}
    for s, ex, ev in zip(subjects, extract_dirs, eval_dirs, strict=True):
        extracted = load_extraction(ex)
        x, meta = extracted.timeseries, extracted.meta
        screen_p[s] = (meta.get("nonstationarity") or {}).get("subject_p", np.nan)
        table = pd.read_csv(Path(ev) / "metrics.tsv", sep="\t")
        shown, _ = shown_models(table, n_show)
        # compare held-out parts: the models were fitted to the first n_train samples
        n_train = summaries[s].get("n_train", 0)
        x_gen = np.load(Path(ev) / "trajectories.npz")["x_gen"][shown]
        data[s], gen[s], train[s] = x[n_train:], x_gen[:, n_train:], x[:n_train]
        sel = table["selected"].astype(bool)
        pool = sel if sel.sum() >= 2 else table["status"] == "ok"
        lam[s] = table.loc[pool, "lambda_max"].to_numpy() / step_seconds(meta)
    return data, gen, lam, (train if all(len(t) for t in train.values()) else None), screen_p


def run_cohort(
    subjects,
    extract_dirs,
    eval_dirs,
    report_links: dict,
    out_dir,
    figure_paths: dict,
    *,
    truths=None,
    n_clusters: int = 2,
    n_show: int = 3,
    hierarchical_fit=None,
    subject_sheet=None,
) -> Path:
    """Cohort comparison: summary, λ_max variance test, dissimilarity, MDS, clustering, HTML.

    Writes ``summary.tsv``, ``dissimilarity.tsv``, ``embedding.tsv``, ``variance_test.json``,
    the figures (``figure_paths``: lambda, dissimilarity, embedding) and ``report.html`` linking
    ``report_links`` (subject -> relative path of its report). With ``hierarchical_fit`` (the
    cohort fit folder of a hierarchical model) also ``features.tsv`` and the feature-space section
    (figure ``figure_paths["features"]``; covariates from ``truths`` and ``subject_sheet``).
    """
    from dsr.report import figures as F
    from dsr.report.html import write_cohort_report

    summaries = read_summaries(subjects, eval_dirs)
    data, gen, lam, train, screen_p = _cohort_inputs(
        subjects, extract_dirs, eval_dirs, summaries, n_show
    )
    summary = subject_summary(summaries, truths)
    # the extraction's non-stationarity screen: p against stationary surrogates
    summary.insert(1, "nonstationarity_p", [screen_p[s] for s in subjects])
    test = lambda_variance_test(lam)
    dstsp, dh = dissimilarity(data, gen)
    reference = data_reference(data, train) if train is not None else None
    coords = classical_mds(dstsp.to_numpy())
    labels, link = cluster(dstsp.to_numpy(), n_clusters)
    emb = pd.DataFrame(
        {"subject": subjects, "mds1": coords[:, 0], "mds2": coords[:, 1], "cluster": labels}
    )
    out = Path(out_dir)
    write_tables(out, summary, dstsp, dh, emb, reference)
    write_json(out / "variance_test.json", test)
    truth = None
    if truths:
        truth = dict(zip(subjects, summary["true_lambda_max_per_s"], strict=True))
    F.save_figure(F.plot_lambda_by_subject(lam, truth), figure_paths["lambda"])
    F.save_figure(F.plot_dissimilarity(dstsp, dh), figure_paths["dissimilarity"])
    F.save_figure(F.plot_embedding(coords, subjects, labels, link), figure_paths["embedding"])
    features = None
    if hierarchical_fit is not None:
        from dsr.report.features import run_feature_space

        features = run_feature_space(
            subjects,
            hierarchical_fit,
            eval_dirs,
            out,
            figure_paths["features"],
            truths=truths,
            sheet=subject_sheet,
            n_clusters=n_clusters,
        )
    return write_cohort_report(
        out / "report.html",
        figure_paths,
        summary,
        variance_text(test),
        emb,
        report_links,
        features=features,
        dissimilarity_text=dissimilarity_text(dstsp, reference),
    )
