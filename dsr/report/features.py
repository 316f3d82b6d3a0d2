"""The cohort report's feature-space section for a hierarchical cohort fit.

Reads the cohort fit (``features.npy`` (R, S, P) and the materialised ``model.pt``) and the
subjects' evaluations, builds the consensus feature space (:mod:`dsr.report.feature_space`),
clusters the subjects in it and relates it to covariates (a subject sheet's numeric columns, the
demo's planted ρ). Writes ``features.tsv`` and the feature-space figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from dsr.atomic import write_text
from dsr.report.feature_space import (
    FeatureSpace,
    loo_r2,
    parameter_matrix,
    per_restart,
    restarts_loo_r2,
    select_restarts,
    ward_clusters,
)


def covariate_table(subjects, truths=None, sheet=None) -> pd.DataFrame:
    """Numeric covariates per subject (index): the demo's planted ``rho`` and true λ_max from
    ground-truth JSONs, and the numeric columns of a subject sheet (TSV with ``subject``)."""
    table = pd.DataFrame(index=pd.Index(list(subjects), name="subject"))
    if truths:
        t = [json.loads(Path(p).read_text(encoding="utf-8")) for p in truths]
        table["rho"] = [d.get("rho", np.nan) for d in t]
        table["true_lambda_max_per_s"] = [d.get("lambda_max_per_second", np.nan) for d in t]
    if sheet:
        frame = pd.read_csv(sheet, sep="\t").set_index("subject")
        numeric = frame.apply(pd.to_numeric, errors="coerce").dropna(axis=1, how="all")
        numeric = numeric.rename(columns=lambda c: f"{c}_sheet" if c in table else c)
        table = table.join(numeric.reindex(table.index))
    return table


def relate(space: FeatureSpace, covariates: pd.DataFrame) -> pd.DataFrame:
    """Per covariate: leave-one-out R² of a linear readout from the first ``min(k, S − 3)`` axes —
    ``loo_r2``: the mean of the consensus restarts' own readouts (``restarts_loo_r2``);
    ``loo_r2_consensus``: one readout of the consensus coordinates — and Spearman ρ with the
    first two consensus axes."""
    coords = space.coords
    n_dims = max(1, min(coords.shape[1], len(coords) - 3))
    rows = []
    for name, values in covariates.items():
        v = values.to_numpy(float)
        ok = np.isfinite(v)
        if ok.sum() < 3 or np.nanstd(v) == 0:
            continue
        row = {
            "covariate": name,
            "n": int(ok.sum()),
            "loo_r2": restarts_loo_r2(space.per_restart[..., :n_dims], v, space.restarts),
            "loo_r2_consensus": loo_r2(coords[:, :n_dims], v),
        }
        for j in range(min(2, coords.shape[1])):
            row[f"spearman_c{j + 1}"] = float(stats.spearmanr(coords[ok, j], v[ok]).statistic)
        rows.append(row)
    return pd.DataFrame(rows)


def _evaluation_table(eval_dirs) -> pd.DataFrame:
    return pd.concat([pd.read_csv(Path(d) / "metrics.tsv", sep="\t") for d in eval_dirs])


def feature_frame(subjects, features, space: FeatureSpace, labels) -> pd.DataFrame:
    """``features.tsv``: per restart and subject the raw features ``f*`` and the restart's
    canonical coordinates ``c*`` (rotated onto the consensus); then the consensus rows."""
    R, S, P = features.shape
    k = space.coords.shape[1]
    rows = []
    for r in range(R):
        for s in range(S):
            rows.append(
                {"subject": subjects[s], "restart": str(r), "in_consensus": r in space.restarts}
                | {f"f{j + 1}": features[r, s, j] for j in range(P)}
                | {f"c{j + 1}": space.per_restart[r, s, j] for j in range(k)}
            )
    for s in range(S):
        rows.append(
            {"subject": subjects[s], "restart": "consensus", "in_consensus": True}
            | {f"c{j + 1}": space.coords[s, j] for j in range(k)}
            | {"cluster": int(labels[s])}
        )
    frame = pd.DataFrame(rows)
    frame["cluster"] = frame["cluster"].astype("Int64")
    return frame


def plot_feature_space(space: FeatureSpace, subjects, labels, covariates: pd.DataFrame):
    """Consensus feature space (first two axes): subjects coloured by cluster, every averaged
    restart's own coordinates as small dots (clusters: Ward linkage); a second panel coloured by the first covariate."""
    import matplotlib.pyplot as plt

    from dsr.report.figures import MODEL_COLORS

    def xy(a):
        return a[..., 0], (a[..., 1] if a.shape[-1] > 1 else np.zeros(a.shape[:-1]))

    n_panels = 2 if covariates.shape[1] else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(5.2 * n_panels, 4.3), squeeze=False)
    ax = axes[0, 0]
    for s in range(len(subjects)):
        color = MODEL_COLORS[(labels[s] - 1) % 10]
        ax.scatter(*xy(space.per_restart[space.restarts, s]), s=10, color=color, alpha=0.35)
    x, y = xy(space.coords)
    ax.scatter(x, y, s=70, c=[MODEL_COLORS[(c - 1) % 10] for c in labels], edgecolor="black")
    for s, name in enumerate(subjects):
        ax.annotate(name, (x[s], y[s]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_title("Consensus feature space (colour: cluster)")
    if n_panels == 2:
        name = covariates.columns[0]
        sc = axes[0, 1].scatter(x, y, s=70, c=covariates[name].to_numpy(float), cmap="viridis")
        fig.colorbar(sc, ax=axes[0, 1], label=name)
        axes[0, 1].set_title(f"Coloured by {name}")
    for a in axes[0]:
        a.set_xlabel("c1")
        a.set_ylabel("c2")
    fig.tight_layout()
    return fig


def feature_text(R: int, space: FeatureSpace, relation: pd.DataFrame) -> str:
    text = (
        f"One hierarchical cohort model, {R} restarts. Features are compared in canonical "
        "coordinates: the principal axes of the subjects' materialised parameters p_s·G, which do "
        "not depend on the arbitrary basis a restart gives its features. Consensus: the average "
        f"of restarts {', '.join(str(int(r)) for r in space.restarts)} after rotation onto each "
        "other (restarts whose models were selected for at least half of the subjects). "
        "The axes are scaled to unit total variance; in parameter space the subjects lie a median "
        f"{100 * np.median(space.spread[space.restarts]):.2g} % of the parameter vector's norm "
        "from their mean (RMS), i.e. how much the fitted subjects differ at all."
    )
    if len(relation):
        best = relation.sort_values("loo_r2", ascending=False).iloc[0]
        text += (
            f" Covariates: {best['covariate']} is read out linearly from the features with "
            f"leave-one-out R² = {best['loo_r2']:.2f} (n = {best['n']}; each consensus restart's "
            "own readout, averaged)."
        )
    return text


def run_feature_space(
    subjects, fit_dir, eval_dirs, out_dir, figure_path, *, truths=None, sheet=None, n_clusters=2
) -> dict:
    """Feature space of the cohort fit in ``fit_dir``: writes ``features.tsv`` and the figure;
    returns what the cohort report shows (text, tables)."""
    from dsr.report import figures as F
    from dsr.training.ensemble import load_ensemble

    fit_dir = Path(fit_dir)
    features = np.load(fit_dir / "features.npy")
    fitted = load_ensemble(fit_dir / "model.pt", dtype=torch.float64)
    R, S, P = features.shape
    order = [fitted.subject_ids.index(s) for s in subjects]
    features = features[:, order]
    params = per_restart(parameter_matrix(fitted.model), R)[:, order]
    space = FeatureSpace.fit(params, P, select_restarts(_evaluation_table(eval_dirs)))
    labels = ward_clusters(space.coords, n_clusters)
    frame = feature_frame(list(subjects), features, space, labels)
    write_text(Path(out_dir) / "features.tsv", frame.to_csv(sep="\t", index=False, na_rep="nan"))
    covariates = covariate_table(subjects, truths, sheet)
    relation = relate(space, covariates)
    fig = plot_feature_space(space, list(subjects), labels, covariates)
    F.save_figure(fig, figure_path)
    consensus = frame[frame.restart == "consensus"].dropna(axis=1, how="all")
    consensus = consensus.drop(columns=["restart", "in_consensus"]).join(
        covariates.reset_index(drop=True).set_index(consensus.index)
    )
    return {
        "text": feature_text(R, space, relation),
        "table": consensus,
        "relation": relation,
    }
