"""Self-contained HTML reports (jinja2 templates, figures embedded as base64 PNG)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from dsr import __version__
from dsr.atomic import write_text
from dsr.report import figures as F
from dsr.report.extraction import extraction_summary

SUBJECT_FIGURES = (
    "data",
    "connectivity",
    "loss",
    "trajectories",
    "state_space",
    "spectra",
    "lyapunov",
    "fixed_points",
)
_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("dsr.report", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
)


def encode_png(path) -> str:
    """Base64 text of a PNG file, for ``<img src="data:image/png;base64,...">``."""
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render(template: str, **context) -> str:
    """Render ``templates/<template>`` with ``context`` (plus the dsr version)."""
    return _ENV.get_template(template).render(version=__version__, **context)


def _read_json(path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def selection_segment(table: pd.DataFrame) -> str:
    """``"test"`` when the models were selected on held-out scores, else ``"train"``."""
    on = table["selected_on"].iloc[0] if "selected_on" in table and len(table) else "train"
    return "test" if on == "test" else "train"


def shown_models(table: pd.DataFrame, n_show: int) -> tuple[list[int], bool]:
    """Models to draw: the selected ones, else all finite ones — best D_stsp first either way
    (on the scores selection used: held-out when there is a test part).

    The figures show state-space geometry, so the order is by D_stsp; ordering the selected set by
    D_H put fixed-point models first in the demo (a flat run can have a low D_H)."""
    seg = selection_segment(table)
    dstsp, dh = f"dstsp_{seg}", f"dh_{seg}"
    sel = table[table["selected"].astype(bool)].sort_values([dstsp, dh])
    if len(sel):
        return [int(m) for m in sel["model"][:n_show]], True
    ok = table[np.isfinite(table[dstsp])].sort_values(dstsp)
    pool = ok if len(ok) else table
    return [int(m) for m in pool["model"][:n_show]], False


def load_subject_results(extract_dir, fit_dir, eval_dir) -> dict:
    """Everything a subject report shows, read from the stage folders."""
    from dsr.io import load_extraction

    extracted = load_extraction(extract_dir)
    x, meta = extracted.timeseries, extracted.meta
    ev, fit_dir = Path(eval_dir), Path(fit_dir)
    traj = np.load(ev / "trajectories.npz")
    loss = pd.read_csv(fit_dir / "loss.tsv", sep="\t").drop(columns="epoch").to_numpy()
    return {
        "x": x,
        "meta": meta,
        "fit": _read_json(fit_dir / "fit.json"),
        "loss": loss,
        "table": pd.read_csv(ev / "metrics.tsv", sep="\t"),
        "spectra": np.load(ev / "lyapunov.npy"),
        "cycles": _read_json(ev / "fixed_points.json")["cycles"],
        "max_order": _read_json(ev / "fixed_points.json").get("max_order"),
        "fp_method": _read_json(ev / "fixed_points.json").get("method", "region iteration"),
        "x_gen": traj["x_gen"],
        "z_gen": traj["z_gen"],
    }


def step_seconds(meta: dict) -> float:
    """Seconds per sample: ``tr_s`` or ``1 / fs_hz`` (1 when neither is known)."""
    if meta.get("tr_s"):
        return float(meta["tr_s"])
    return 1.0 / float(meta["fs_hz"]) if meta.get("fs_hz") else 1.0


def subject_figures(res: dict, shown: list[int], truth: dict | None) -> dict:
    """The subject report's figures (name -> matplotlib Figure)."""
    x, meta, dt = res["x"], res["meta"], step_seconds(res["meta"])
    names = meta.get("region_names")
    status = [m["status"] for m in res["fit"]["models"]]
    gen = res["x_gen"][shown]
    selected = res["table"]["selected"].astype(bool).to_numpy()
    best = shown[0] if shown else 0
    return {
        "data": F.plot_timeseries(x, dt, names),
        "connectivity": F.plot_connectivity(x, names),
        "loss": F.plot_loss(res["loss"], status),
        "trajectories": F.plot_trajectories(x, gen, shown, dt),
        "state_space": F.plot_state_space(x, gen, shown),
        "spectra": F.plot_spectra(x, gen, shown, dt),
        "lyapunov": F.plot_lyapunov(
            res["spectra"] / dt, selected, truth.get("lambda_max_per_second") if truth else None
        ),
        "fixed_points": F.plot_fixed_points(res["cycles"], best, res["z_gen"][best]),
    }


METRIC_COLUMNS = (  # the report's column order: identity, selection, then train | test pairs
    "model", "restart", "status", "selected", "escaped", "pe1_train", "pe10_train", "pe10_test",
    "pe20_train", "pe20_test", "dstsp_train", "dstsp_test", "dh_train", "dh_test",
    "lambda_max_per_s", "lyap_n_finite", "ky_dim", "n_bounded",
)  # fmt: skip


def _metric_table(table: pd.DataFrame, dt: float) -> str:
    t = table.copy()
    if "lambda_max_per_s" not in t:
        t["lambda_max_per_s"] = table["lambda_max"] / dt
    t = t[[c for c in METRIC_COLUMNS if c in t]]
    rows = t.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
    for m in table.loc[table["selected"].astype(bool), "model"]:  # highlight selected rows
        rows = rows.replace(
            f"<tr>\n      <td>{m}</td>", f'<tr class="selected">\n      <td>{m}</td>', 1
        )
    return rows


def selection_text(table: pd.DataFrame, floor: dict | None) -> str:
    """How the models were selected, with counts, and the data's own scores as the floor."""
    seg = selection_segment(table)
    n = len(table)
    n_pe = int(table["pe_ok"].sum()) if "pe_ok" in table else 0
    n_esc = int(table["escaped"].sum()) if "escaped" in table else 0
    n_sel = int(table["selected"].astype(bool).sum())
    n_top = int(table["top_dstsp"].astype(bool).sum()) if "top_dstsp" in table else n_sel
    text = (
        f"Selection: of {n} models, {n_pe} trained without divergence and predict one step ahead "
        f"on the training data with PE₁ ≤ 1; {n_esc} escaped (a free run of 10× the series "
        f"length left the data's range) and are never selected. Of the rest, the {n_top} best by "
        f"{'held-out' if seg == 'test' else 'training'} D_stsp (state-space geometry), then the "
        f"{n_sel} best of those by D_H (power spectrum) are selected."
    )
    if seg == "train":
        text += " There is no held-out part (test_fraction 0), so models are scored on the data they were trained on."
    if floor and floor.get("dstsp") is not None:
        text += (
            f" Floor (the data's own training part scored as a model of its held-out part): "
            f"D_stsp {floor['dstsp']:.3g}, D_H {floor['dh']:.3g}; held-out scores near these are "
            "as good as the data allow."
        )
    return text


LAMBDA_AGREEMENT = 0.25  # selected models whose λ_max all lie within ±25 % of their median agree


def lambda_text(table: pd.DataFrame, dt: float) -> str:
    """The selected models' λ_max per second: median, range, how many are chaotic, and whether
    they agree (every one within ±``LAMBDA_AGREEMENT`` of the median); without a selected model,
    say so."""
    sel = table["selected"].astype(bool)
    lam = (table.loc[sel, "lambda_max"] / dt).dropna().to_numpy()
    if not len(lam):
        return "No selected model has a finite λ_max."
    med = float(np.median(lam))
    text = (
        f"λ_max of the {len(lam)} selected models: median {med:.4f} 1/s (range {lam.min():.4f} "
        f"to {lam.max():.4f}; {int((lam > 0).sum())} chaotic)."
    )
    if med > 0 and np.all(np.abs(lam / med - 1) <= LAMBDA_AGREEMENT):
        return text + f" They agree within ±{LAMBDA_AGREEMENT:.0%}."
    return text + (
        f" They do not agree within ±{LAMBDA_AGREEMENT:.0%}: models that fit the data about "
        "equally well can differ in λ_max when the recording is short or noisy, so read the "
        "median as an estimate with this range, not as the subject's exponent (docs/method.md, "
        '"Reading the numbers").'
    )


def _cycles_table(cycles: list[dict]) -> str:
    if not cycles:
        return "<p>No fixed points or cycles found.</p>"
    keys = ("model", "period", "stable", "max_abs_eigenvalue", "residual")
    return pd.DataFrame([{k: c[k] for k in keys} for c in cycles]).to_html(
        index=False, float_format=lambda v: f"{v:.3g}", border=0
    )


def write_subject_report(
    subject, extract_dir, fit_dir, eval_dir, html_path, figure_paths: dict, truth=None, n_show=3
) -> Path:
    """Draw the figures (PNG files at ``figure_paths[name]``) and write the subject's HTML."""
    res = load_subject_results(extract_dir, fit_dir, eval_dir)
    truth = _read_json(truth) if truth else None
    shown, any_selected = shown_models(res["table"], n_show)
    for name, fig in subject_figures(res, shown, truth).items():
        F.save_figure(fig, figure_paths[name])
    dt = step_seconds(res["meta"])
    summary = _read_json(Path(eval_dir) / "summary.json").get(subject, {})
    html = render(
        "subject.html",
        title=f"dsr report: {subject}",
        subject=subject,
        sections=["data", "training", "models", "metrics", "dynamics"],
        extraction=extraction_summary(res["meta"], res["x"]),
        warnings=res["meta"].get("warnings", []),
        figures={k: encode_png(p) for k, p in figure_paths.items()},
        fit=res["fit"],
        n_models=len(res["table"]),
        failed=[m["model"] for m in res["fit"]["models"] if m["status"] != "ok"],
        shown=shown,
        any_selected=any_selected,
        table=jinja2.utils.markupsafe.Markup(_metric_table(res["table"], dt)),
        selection=selection_text(res["table"], summary.get("data_floor")),
        truth=truth,
        lambda_text=lambda_text(res["table"], dt),
        n_cycles=len(res["cycles"]),
        n_stable=sum(c["stable"] for c in res["cycles"]),
        max_order=res["max_order"],
        fp_method=res["fp_method"],
        model_name=res["fit"].get("config", {}).get("model", "this latent model"),
        cycles_table=jinja2.utils.markupsafe.Markup(_cycles_table(res["cycles"])),
    )
    return write_text(html_path, html)


def write_cohort_report(
    html_path,
    figure_paths: dict,
    summary,
    test_text,
    embedding,
    links,
    features=None,
    dissimilarity_text="",
):
    """Write the cohort HTML (summary table, variance test, figures, links to subject reports;
    ``features``: the feature-space section of a hierarchical fit, ``dsr.report.features``)."""
    html_path = Path(html_path)
    table = summary.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
    if features is not None:
        features = {
            "text": features["text"],
            **{
                k: jinja2.utils.markupsafe.Markup(
                    features[k].to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0)
                )
                for k in ("table", "relation")
            },
        }
    return write_text(
        html_path,
        render(
            "cohort.html",
            title="dsr cohort report",
            n_subjects=len(summary),
            subjects=[{"subject": s, "link": link} for s, link in links.items()],
            summary_table=jinja2.utils.markupsafe.Markup(table),
            variance_text=test_text,
            dissimilarity_text=dissimilarity_text,
            figures={k: encode_png(p) for k, p in figure_paths.items()},
            embedding_table=jinja2.utils.markupsafe.Markup(
                embedding.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0)
            ),
            features=features,
        ),
    )
