"""Within- vs between-subject variance of λ_max on the demo cohort (paper Fig. 3G analogue).

``dsr.synthetic.fmriprep_demo.write_demo_cohort`` writes an fMRIPrep-style cohort (Lorenz-63 subjects with
ρ spread over 28–45, 6 regions, TR 1.4 s, planted motion, noise) to a temp dir; every subject is
extracted with ``dsr.io.extract_fmriprep_subject`` (default confound strategy, regressed out); all
subjects × restarts are fitted as ONE ensemble (cshPLRNN, M = N = 6, L = 50, α = 0.1); λ_max per
model is computed by ``evaluate_ensemble`` (per second with the TR) and the spec's model selection
(PE1 ≤ 1; best 20 by D_stsp; best 10 by D_H) applied.

Tests on the selected models: Kruskal–Wallis and one-way ANOVA of λ_max across subjects; and the
paired comparison of log variances (our reading of the paper's Fig. 3G): for draw b = 1..S, the
within-subject variance of subject b's models vs the between-subject variance of one randomly drawn
model per subject; paired t-test and Wilcoxon on log variances. Also Spearman ρ between subject
median λ_max and the true λ_max of the generating system.

    python validation/cohort_lambda_variance.py          # reduced: 6 subjects x 10 restarts
    python validation/cohort_lambda_variance.py --full   # 20 subjects x 20 restarts, 1000 epochs
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import _common as C
import numpy as np
from scipy import stats

from dsr.analysis.evaluation import evaluate_ensemble
from dsr.analysis.selection import select_models
from dsr.io.fmriprep import extract_fmriprep_subject
from dsr.signal.kernels import spm_hrf
from dsr.synthetic.fmriprep_demo import SPACE, write_demo_cohort
from dsr.training.loop import resolve_device

TR = 1.4


def parse():
    p = C.base_parser(__doc__)
    p.add_argument("--subjects", type=int, default=None)
    p.add_argument("--restarts", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batches", type=int, default=None)
    p.add_argument("--volumes", type=int, default=500)
    return C.fill_scaled(
        p.parse_args(),
        dict(subjects=(20, 6), restarts=(20, 10), epochs=(1000, 60), batches=(50, 20)),
    )


def log_variance_test(lam: dict, rng) -> dict:
    subs = list(lam)
    within = np.array([np.var(lam[s], ddof=1) for s in subs])
    between = np.array([np.var([rng.choice(lam[s]) for s in subs], ddof=1) for _ in subs])
    lw, lb = np.log(within), np.log(between)
    return dict(
        within_median=float(np.median(within)),
        between_median=float(np.median(between)),
        t=stats.ttest_rel(lw, lb),
        w=stats.wilcoxon(lw, lb),
        n_lower=int((within < between).sum()),
        n=len(subs),
    )


def main():
    a = parse()
    C.setup(a)
    device = str(resolve_device(a.device))
    timer = C.Timer()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_demo_cohort(
            Path(tmp) / "cohort", a.subjects, tr_s=TR, n_volumes=a.volumes, seed=a.seed
        )
        sids = [f"sub-{s + 1:02d}" for s in range(a.subjects)]
        data, truth = [], []
        for sid in sids:
            bold = root / sid / "func" / f"{sid}_task-rest_space-{SPACE}_desc-preproc_bold.nii.gz"
            res = extract_fmriprep_subject(
                bold, root / "atlas/atlas-demo_dseg.nii.gz", root / "atlas/atlas-demo_dseg.tsv"
            )
            data.append(np.asarray(res.timeseries, np.float64))
            truth.append(json.loads((root / "ground_truth" / f"{sid}.json").read_text()))
    print(f"[{timer():.0f}s] cohort written and extracted: {[d.shape for d in data]}", flush=True)
    kernel = spm_hrf(TR)
    fitted = C.fit(a, data, kernel, sids, device)
    print(
        f"[{timer():.0f}s] trained {fitted.n_models} models in {fitted.wall_time_s:.0f}s",
        flush=True,
    )
    ev = evaluate_ensemble(
        fitted,
        dict(zip(sids, data, strict=True)),
        n_trajectories=10 if not a.full else 100,
        tr_s=TR,
        lyap_steps=5000,
        lyap_transient=500,
        seed=a.seed,
    )
    t = select_models(ev.table, n_best_dstsp=20, n_best_dh=10)
    t.to_csv(C.OUT / "cohort_lambda.tsv", sep="\t", index=False)
    sel = t[t.selected & np.isfinite(t.lambda_max_per_s)]
    lam = {s: g.lambda_max_per_s.to_numpy() for s, g in sel.groupby("subject") if len(g) >= 2}
    rows = []
    for sid, tr_ in zip(sids, truth, strict=True):
        g = t[t.subject == sid]
        v = lam.get(sid, np.array([]))
        rows.append(
            [
                sid,
                f"{tr_['rho']:.1f}",
                f"{tr_['lambda_max_per_second']:.4f}",
                f"{int(g.pe_ok.sum())}/{len(g)}",
                f"{len(v)}",
                C.med_iqr(v),
                f"{np.var(v, ddof=1):.3g}" if len(v) > 1 else "nan",
                f"{(v > 0).mean():.2f}" if len(v) else "nan",
            ]
        )
    body = C.markdown_table(
        [
            "subject",
            "ρ",
            "true λ_max /s",
            "PE1 ≤ 1",
            "selected",
            "λ_max /s median [IQR]",
            "within var",
            "frac. chaotic",
        ],
        rows,
    )
    if len(lam) >= 3:
        kw = stats.kruskal(*lam.values())
        an = stats.f_oneway(*lam.values())
        lv = log_variance_test(lam, np.random.default_rng(a.seed))
        true = [
            tr_["lambda_max_per_second"] for tr_, s in zip(truth, sids, strict=True) if s in lam
        ]
        sp = stats.spearmanr(true, [np.median(v) for v in lam.values()])
        body += (
            f"\n\nAcross subjects (selected models, {len(lam)} subjects): Kruskal–Wallis H = "
            f"{kw.statistic:.3g}, p = {kw.pvalue:.3g}; one-way ANOVA F = {an.statistic:.3g}, "
            f"p = {an.pvalue:.3g}.\nLog-variance comparison: median within-subject variance "
            f"{lv['within_median']:.3g} vs between-subject {lv['between_median']:.3g}; within < "
            f"between for {lv['n_lower']}/{lv['n']} draws; paired t = {lv['t'].statistic:.3g}, "
            f"p = {lv['t'].pvalue:.3g}; Wilcoxon p = {lv['w'].pvalue:.3g}.\nSpearman ρ(true λ_max, "
            f"median fitted λ_max) = {sp.statistic:.3g} (p = {sp.pvalue:.3g}).\n"
            "Target (paper): within-subject λ_max variance lower than between-subject variance."
        )
    else:
        body += "\n\nFewer than 3 subjects with ≥ 2 selected models: no test possible."
    if not a.no_write:
        C.write_section(
            "cohort",
            "4. Within- vs between-subject λ_max variance (demo cohort)",
            body,
            device,
            dict(
                subjects=a.subjects,
                restarts=a.restarts,
                epochs=a.epochs,
                batches_per_epoch=a.batches,
                volumes=a.volumes,
                tr_s=TR,
                model="cshPLRNN M6 L50 α0.1",
                grad_clip=10,
                lr_end=a.lr_end,
                selection="PE1≤1, best 20 D_stsp, best 10 D_H",
            ),
            timer(),
        )


if __name__ == "__main__":
    main()
