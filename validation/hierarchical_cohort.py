"""Hierarchical cohort model vs independent per-subject fits on a planted cohort.

The planted cohort is the demo's (``write_demo_cohort``: fMRIPrep layout, 6 regions, TR 1.4 s,
planted motion, drift, region and voxel noise, default confound strategy regressed out), with
Lorenz-63 ρ evenly spaced over 172–292: ρ ≤ 208 chaotic, ρ ≥ 220 periodic (stable limit cycle,
λ_max ≈ 0; computed for each subject by ``lyapunov_max_lorenz``). One Lorenz time unit lasts 60 s
(the demo uses 20 s for ρ 28–45; at ρ ≥ 172 the orbit is ~3x faster). Every subject is put on the
same branch of the Lorenz symmetry (``one_branch``): a periodic ρ has two mirror-image cycles and
which one a simulation reaches depends on its initial state, a second planted factor that the
features pick up (``--both-branches`` keeps it, as sections 7a/7b did). One subject
(``--holdout``) is left out of both fits and later fitted to the trained cohort model by features
only.

Both arms train cshPLRNNs (M = N = 6, L = 50, α = 0.1, convolved decoder, demo learning rates,
per-model gradient clip 10) for the same number of gradient steps (epochs × batches, all
subjects in every batch) and are scored on the held-out last 25 % of each series with
``evaluate_ensemble`` (model selection as the workflow). Reported: planted ρ read out linearly
from the features (leave-one-out R²; hierarchical: the restarts' own readouts averaged, and the
consensus feature space, ``dsr.report.feature_space``; without a model: the data's spectral
centroid; independent: median λ_max of the selected models + 2-D MDS of the cross-subject D_stsp matrix, the
cohort stage's embedding), held-out D_stsp per subject, parameters per subject, 2-cluster agreement
with the planted regime (periodic vs chaotic), and the transferred subject's place in feature space.

    python validation/hierarchical_cohort.py              # reduced: 20 + 1 subjects x 8 restarts
    python validation/hierarchical_cohort.py --full       # 1000 epochs x 50 batches, 10 restarts
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import _common as C
import numpy as np

from dsr.analysis.evaluation import evaluate_ensemble
from dsr.analysis.free_runs import free_runs
from dsr.io.fmriprep import extract_fmriprep_subject
from dsr.report.cohort import dissimilarity
from dsr.report.embedding import classical_mds, cluster
from dsr.report.feature_space import (
    FeatureSpace,
    cluster_agreement,
    loo_r2,
    parameter_matrix,
    per_restart,
    restarts_loo_predictions,
    restarts_loo_r2,
    restarts_predict,
    select_restarts,
    ward_clusters,
)
from dsr.signal.kernels import spm_hrf
from dsr.synthetic.fmriprep_demo import SPACE, write_demo_cohort
from dsr.training.hierarchical import HierarchicalConfig, fit_hierarchical, transfer_subjects
from dsr.training.loop import TrainingConfig, fit_ensemble, resolve_device
from dsr.training.windows import train_length

TR = 1.4
READOUT_DIMS = 3  # consensus axes for clusters, distances and the secondary 3-axis readout
RHO = (172.0, 292.0)


def parse(argv=None):
    p = C.base_parser(__doc__)
    p.add_argument("--subjects", type=int, default=21, help="planted subjects incl. the held-out")
    p.add_argument("--holdout", type=int, default=10, help="index of the transfer subject")
    p.add_argument("--restarts", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batches", type=int, default=None)
    p.add_argument("--features", type=int, default=6, help="P, features per subject")
    p.add_argument("--subject-lr-factor", type=float, default=1.0)
    p.add_argument("--volumes", type=int, default=500)
    p.add_argument("--time-unit", type=float, default=60.0, help="seconds per Lorenz time unit")
    p.add_argument("--lr-start", type=float, default=5e-3)
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1], help="planted cohorts / fits to run"
    )
    p.add_argument("--name", default="hierarchical", help="RESULTS.md section key")
    p.add_argument(
        "--both-branches",
        action="store_true",
        help="leave each periodic subject on whichever of the two mirror-image cycles its "
        "simulation lands on (sections 7a/7b); default: all on one branch",
    )
    p.add_argument(
        "--transfer-lr",
        type=float,
        default=1e-3,
        help="initial learning rate of the transfer fit (features and decoder of a new subject)",
    )
    return C.fill_scaled(
        p.parse_args(argv), dict(restarts=(20, 8), epochs=(1000, 400), batches=(50, 10))
    )


def planted_cohort(a, seed):
    """Extracted (T, N) series and ground truth of the planted cohort."""
    with tempfile.TemporaryDirectory() as tmp:
        root = write_demo_cohort(
            Path(tmp) / "cohort",
            a.subjects,
            tr_s=TR,
            n_volumes=a.volumes,
            rho_range=RHO,
            time_unit_s=a.time_unit,
            seed=seed,
            one_branch=not a.both_branches,
        )
        data, truth = [], []
        for s in range(a.subjects):
            sid = f"sub-{s + 1:02d}"
            bold = root / sid / "func" / f"{sid}_task-rest_space-{SPACE}_desc-preproc_bold.nii.gz"
            res = extract_fmriprep_subject(
                bold, root / "atlas/atlas-demo_dseg.nii.gz", root / "atlas/atlas-demo_dseg.tsv"
            )
            data.append(np.asarray(res.timeseries, np.float64))
            truth.append(json.loads((root / "ground_truth" / f"{sid}.json").read_text()))
    return data, truth


def evaluate(fitted, data, sids, a):
    """``evaluate_ensemble`` with reduced free runs and Lyapunov steps; the metrics table."""
    ev = evaluate_ensemble(
        fitted,
        dict(zip(sids, data, strict=True)),
        n_trajectories=10 if not a.full else 100,
        tr_s=TR,
        lyap_steps=2000,
        lyap_transient=200,
        seed=a.seed,
    )
    return ev.table


def training_configs(a) -> tuple[TrainingConfig, HierarchicalConfig]:
    """Both arms' training settings and the hierarchical model's settings."""
    cfg = TrainingConfig(
        epochs=a.epochs,
        batches_per_epoch=a.batches,
        seq_len=100,
        lr_start=a.lr_start,
        lr_end=a.lr_end,
        grad_clip=10.0,
        checkpoint_every=0,
    )
    return cfg, HierarchicalConfig(n_features=a.features, subject_lr_factor=a.subject_lr_factor)


def transfer_holdout(a, hfit, x, config, hcfg, seed, device):
    """The held-out subject's series ``x`` (T, N) fitted to the trained cohort model ``hfit`` by
    features and decoder only (``config``); the fit and its materialised parameters (R, 1, K)."""
    tfit = transfer_subjects(
        hfit,
        [x],
        spm_hrf(TR),
        config=config,
        hierarchical=hcfg,
        seed=seed + 7,
        device=device,
        subject_ids=[f"sub-{a.holdout + 1:02d}"],
    )
    return tfit, per_restart(parameter_matrix(tfit.ensemble.model), a.restarts)


def transfer_readout(coords, rho_tr, restarts, new_coords) -> tuple[float, np.ndarray]:
    """The transfer criterion's two sides: ρ̂ of a new subject by the restarts' mean readout
    fitted on the cohort's coordinates ``coords`` (R, S, k) and applied to the new subject's
    ``new_coords`` (R, 1, k), and the cohort subjects' leave-one-out errors (S,) of that readout."""
    rho_hat = float(restarts_predict(coords, rho_tr, restarts, new_coords)[0])
    return rho_hat, np.abs(rho_tr - restarts_loo_predictions(coords, rho_tr, restarts))


def centroid_transfer(centroids, rho, train, holdout) -> tuple[float, np.ndarray]:
    """The transfer's reference without a model: :func:`transfer_readout` with each subject's
    spectral centroid ``centroids`` (S,) as its only coordinate. Where the held-out subject's own
    data look like another ρ, no model of them can land it next to its planted neighbours."""
    c = np.asarray(centroids)[None, :, None]  # one "restart", one coordinate
    return transfer_readout(c[:, train], rho[train], [0], c[:, [holdout]])


def subject_scores(table, sids):
    """Per subject: median held-out D_stsp of the selected models (all ok models if none)."""
    out = {}
    for s in sids:
        g = table[table.subject == s]
        pool = g[g.selected] if g.selected.any() else g[g.status == "ok"]
        out[s] = float(np.nanmedian(pool.dstsp_test)) if len(pool) else np.nan
    return out


def independent_features(fitted, table, data, sids):
    """Per subject: median λ_max (selected models) and the 2-D MDS of the cross-subject D_stsp."""
    gen, lam = {}, []
    for s, x in zip(sids, data, strict=True):
        g = table[table.subject == s]
        pool = g[g.selected] if g.selected.any() else g[g.status == "ok"]
        lam.append(float(np.nanmedian(pool.lambda_max)))
        x_gen, _ = free_runs(fitted.for_subject(s), x)
        gen[s] = x_gen[pool.sort_values("dstsp_test").restart.to_numpy()[:3]]
    dstsp, _ = dissimilarity(dict(zip(sids, data, strict=True)), gen)
    coords = classical_mds(dstsp.to_numpy())
    return np.c_[lam, coords], coords


def n_params(model) -> int:
    return sum(p[0].numel() for p in model.parameters())


def main():
    a = parse()
    C.setup(a)
    device = str(resolve_device(a.device))
    timer = C.Timer()
    seeds = a.seeds if a.seeds is not None else [a.seed]
    runs = [run(a, seed, device, timer) for seed in seeds]
    settings = dict(
        subjects=f"{a.subjects - 1}+1 held out",
        rho=f"{RHO[0]:.0f}-{RHO[1]:.0f}",
        time_unit_s=a.time_unit,
        volumes=a.volumes,
        restarts=a.restarts,
        epochs=a.epochs,
        batches_per_epoch=a.batches,
        n_features=a.features,
        lr=f"{a.lr_start}->{a.lr_end}",
        subject_lr_factor=a.subject_lr_factor,
        seq_len=100,
        grad_clip=10,
        transfer_lr=a.transfer_lr,
        seeds=seeds,
    )
    body = _summary(a, runs) + "\n" + _report(a, runs[0])
    if a.no_write:
        print(body)
        return
    title = "7. Hierarchical cohort model vs independent fits (planted ρ)"
    C.write_section(a.name, title, body, device, settings, timer())


def run(a, seed, device, timer) -> dict:
    """Planted cohort of ``seed`` (data and training), both arms, evaluation, feature spaces,
    transfer; the results the report needs."""
    data, truth = planted_cohort(a, seed)
    rho = np.array([t["rho"] for t in truth])
    lam_true = np.array([t["lambda_max_per_time_unit"] for t in truth])
    periodic = lam_true < 0.1
    train = [i for i in range(a.subjects) if i != a.holdout]
    sids = [f"sub-{i + 1:02d}" for i in train]
    xs = [data[i] for i in train]
    print(
        f"[{timer():.0f}s] cohort: rho {rho.round(0)}, periodic {periodic.astype(int)}", flush=True
    )
    kernel = spm_hrf(TR)
    cfg, hcfg = training_configs(a)
    common = dict(subject_ids=sids, n_restarts=a.restarts, config=cfg, seed=seed, device=device)
    hfit = fit_hierarchical(xs, kernel, hierarchical=hcfg, **common)
    print(f"[{timer():.0f}s] hierarchical fit {hfit.ensemble.wall_time_s:.0f}s", flush=True)
    ifit = fit_ensemble(xs, kernel, **common)
    print(f"[{timer():.0f}s] independent fit {ifit.wall_time_s:.0f}s", flush=True)
    h_tab, i_tab = evaluate(hfit.ensemble, xs, sids, a), evaluate(ifit, xs, sids, a)
    if not a.no_write:  # a smoke run must not replace the tables of a recorded run
        h_tab.to_csv(C.OUT / f"hierarchical_metrics_seed{seed}.tsv", sep="\t", index=False)
        i_tab.to_csv(C.OUT / f"independent_metrics_seed{seed}.tsv", sep="\t", index=False)
    print(f"[{timer():.0f}s] evaluated", flush=True)

    # feature spaces
    restarts = select_restarts(h_tab)
    params = per_restart(parameter_matrix(hfit.ensemble.model), a.restarts)
    space = FeatureSpace.fit(params, min(a.features, READOUT_DIMS), restarts)
    space_all = FeatureSpace.fit(params, a.features, restarts)
    i_feat, i_mds = independent_features(ifit, i_tab, xs, sids)
    rho_tr, per_tr = rho[train], periodic[train]
    n_train = train_length(a.volumes, cfg.test_fraction)
    centroids = np.array([C.spectral_centroid(x[:n_train], 1 / TR) for x in data])
    res = dict(
        sids=sids,
        rho_tr=rho_tr,
        per_tr=per_tr,
        lam_tr=lam_true[train],
        space=space,
        space_all=space_all,
        restarts=restarts,
        hfit=hfit,
        ifit=ifit,
        h_scores=subject_scores(h_tab, sids),
        i_scores=subject_scores(i_tab, sids),
        readout={
            "hierarchical: leading consensus axis (1)": loo_r2(space.coords[:, :1], rho_tr),
            "hierarchical: consensus features (3)": loo_r2(space.coords, rho_tr),
            f"hierarchical: consensus features, all ({a.features})": loo_r2(
                space_all.coords, rho_tr
            ),
            f"hierarchical: mean of the restarts' own readouts ({a.features} each)": (
                restarts_loo_r2(space_all.per_restart, rho_tr, restarts)
            ),
            "independent: leading D_stsp MDS axis (1)": loo_r2(i_mds[:, :1], rho_tr),
            "independent: λ_max + D_stsp MDS (3)": loo_r2(i_feat, rho_tr),
            "independent: λ_max only (1)": loo_r2(i_feat[:, :1], rho_tr),
            "reference, no model: spectral centroid of the data (1)": loo_r2(
                centroids[train, None], rho_tr
            ),
        },
        per_restart_r2=[loo_r2(space.per_restart[r], rho_tr) for r in range(a.restarts)],
        subsets=_subset_r2(params, a.features, rho_tr, seed),
        agreement={  # 2 clusters vs the planted regime: Ward (Euclidean features), average linkage
            "hierarchical: consensus features": _agreement(space.coords, per_tr),
            "independent: λ_max + D_stsp MDS (z-scored)": _agreement(_z(i_feat), per_tr),
            "independent: D_stsp MDS": _agreement(i_mds, per_tr),
        },
    )

    # transfer of the held-out subject: features and decoder only, same steps
    tfit, new_params = transfer_holdout(
        a,
        hfit,
        data[a.holdout],
        dataclasses.replace(cfg, lr_start=a.transfer_lr),
        hcfg,
        seed,
        device,
    )
    new = space.transform(new_params)[0]
    new_all = space_all.transform_per_restart(new_params)
    t_tab = evaluate(tfit.ensemble, [data[a.holdout]], tfit.ensemble.subject_ids, a)
    rho_hat, loo_err = transfer_readout(space_all.per_restart, rho_tr, restarts, new_all)
    res["seed"] = seed
    res |= dict(
        rho_new=rho[a.holdout],
        dist=np.linalg.norm(space.coords - new, axis=1),
        rho_hat=rho_hat,
        loo_err=loo_err,
        c_new=new,
        t_score=subject_scores(t_tab, tfit.ensemble.subject_ids)[tfit.ensemble.subject_ids[0]],
        t_time=tfit.ensemble.wall_time_s,
        rho_centroid=centroid_transfer(centroids, rho, train, a.holdout)[0],
    )
    print(f"[{timer():.0f}s] transfer done", flush=True)
    np.savez(  # for re-analysis without refitting (--no-write: a scratch file)
        C.OUT / f"hierarchical_cohort_seed{seed}{'_scratch' if a.no_write else ''}.npz",
        params=params,
        features=hfit.features,
        new_params=per_restart(parameter_matrix(tfit.ensemble.model), a.restarts),
        rho=rho,
        lam=lam_true,
        train=train,
        independent_features=i_feat,
    )
    return res


def _subset_r2(params, n_features, rho, seed, draws=20) -> dict:
    """Median LOO R² of ρ from the consensus of n random restarts (20 draws per n)."""
    rng, n_restarts = np.random.default_rng(seed), len(params)
    sizes = sorted({1, 2, n_restarts // 2, n_restarts})
    return {
        n: float(np.median([
            loo_r2(FeatureSpace.fit(params, n_features, rng.permutation(n_restarts)[:n]).coords, rho)
            for _ in range(draws)
        ]))
        for n in sizes
    }  # fmt: skip


def _z(a):
    return (a - np.nanmean(a, 0)) / np.nanstd(a, 0)


def _agreement(coords, truth) -> list[float]:
    """2-cluster agreement with ``truth``: Ward linkage, average linkage (Euclidean distances)."""
    dist = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    return [
        cluster_agreement(ward_clusters(coords), truth),
        cluster_agreement(cluster(dist, 2)[0], truth),
    ]


def _key_numbers(a, res) -> dict:
    """The per-run numbers the targets are judged on."""
    h, i = res["h_scores"], res["i_scores"]
    dist, rho_tr = res["dist"], res["rho_tr"]
    planted = np.argsort(np.abs(rho_tr - res["rho_new"]), kind="stable")[:2]
    group = res["hfit"].model.n_parameters()["group"]
    dec = n_params(res["hfit"].ensemble.decoder)
    return {
        "r2_h": res["readout"]["hierarchical: leading consensus axis (1)"],
        "r2_h3": res["readout"]["hierarchical: consensus features (3)"],
        "r2_hP": res["readout"][f"hierarchical: consensus features, all ({a.features})"],
        "r2_hR": res["readout"][
            f"hierarchical: mean of the restarts' own readouts ({a.features} each)"
        ],
        "r2_i": res["readout"]["independent: leading D_stsp MDS axis (1)"],
        "r2_i3": res["readout"]["independent: λ_max + D_stsp MDS (3)"],
        "r2_data": res["readout"]["reference, no model: spectral centroid of the data (1)"],
        "d_h": float(np.nanmedian(list(h.values()))),
        "d_i": float(np.nanmedian(list(i.values()))),
        "agree_h": res["agreement"]["hierarchical: consensus features"][0],
        "agree_i": res["agreement"]["independent: λ_max + D_stsp MDS (z-scored)"][0],
        "matched": set(np.argsort(dist)[:2]) == set(planted),
        "rho_hat": res["rho_hat"],
        "t_err": abs(res["rho_hat"] - res["rho_new"]),
        "c_err": abs(res["rho_centroid"] - res["rho_new"]),
        "loo_err": res["loo_err"],
        "per_h": a.features + dec + group / len(res["sids"]),
        "per_i": n_params(res["ifit"].model) + dec,
    }


def _summary(a, runs) -> str:
    """Per-seed key numbers and the targets (medians over seeds)."""
    keys = [_key_numbers(a, r) for r in runs]
    rows = [
        [str(r["seed"]), C.fmt(k["r2_hR"]), f"{C.fmt(k['r2_hP'])} ({C.fmt(k['r2_h'])}, {C.fmt(k['r2_h3'])})",
         f"{C.fmt(k['r2_i'])} ({C.fmt(k['r2_i3'])})", C.fmt(k["r2_data"]), C.fmt(k["d_h"]), C.fmt(k["d_i"]),
         f"{100 * k['agree_h']:.0f} %", f"{100 * k['agree_i']:.0f} %",
         f"{k['rho_hat']:.0f} (true {r['rho_new']:.0f})",
         f"{k['t_err']:.0f} (median {np.median(k['loo_err']):.0f}, max {k['loo_err'].max():.0f})",
         f"{r['rho_centroid']:.0f} ({k['c_err']:.0f})",
         "yes" if k["matched"] else "no"]
        for r, k in zip(runs, keys, strict=True)
    ]  # fmt: skip
    table = C.markdown_table(
        ["seed", "LOO R² ρ hier. restarts' mean readout", f"LOO R² ρ hier. consensus {a.features} axes (1, 3)", "LOO R² ρ indep. 1 axis (3)", "LOO R² ρ data centroid", "D_stsp hier.", "D_stsp indep.",
         "2-cluster hier.", "2-cluster indep.", "transfer: ρ̂", "transfer |ρ̂ − ρ| (cohort LOO errors)",
         "data reference: held-out ρ̂ from its spectral centroid (error)",
         "transfer: planted neighbours nearest"],
        rows,
    )  # fmt: skip
    med = {
        k: float(np.median([x[k] for x in keys]))
        for k in ("r2_hR", "r2_hP", "r2_data", "d_h", "d_i")
    }
    agree = min(k["agree_h"] for k in keys)
    matched = sum(k["matched"] for k in keys)
    within = sum(k["t_err"] <= k["loo_err"].max() for k in keys)
    per_h, per_i = keys[0]["per_h"], keys[0]["per_i"]
    targets = C.markdown_table(
        ["target", "measured", "met"],
        [
            ["ρ readout, LOO R² ≥ 0.8 (hierarchical, restarts' mean readout; median over seeds; consensus space, then the data's own spectral centroid in brackets)", f"{C.fmt(med['r2_hR'])} ({C.fmt(med['r2_hP'])}, {C.fmt(med['r2_data'])})", _met(med["r2_hR"] >= 0.8)],
            ["median held-out D_stsp hier. ≤ indep. (median over seeds)", f"{med['d_h']:.3g} vs {med['d_i']:.3g}", _met(med["d_h"] <= med["d_i"])],
            ["parameters per subject hier. < indep.", f"{per_h:.0f} vs {per_i}", _met(per_h < per_i)],
            ["periodic vs chaotic, 2-cluster agreement ≥ 90 % (hier., Ward; every seed)", f"{100 * agree:.0f} % (lowest)", _met(agree >= 0.9)],
            ["transfer: ρ̂ error within the range of the cohort subjects' LOO errors (the issue's criterion)", f"{within} of {len(keys)} seeds", _met(within == len(keys))],
            ["transfer (stricter): nearest 2 cohort subjects = its planted neighbours", f"{matched} of {len(keys)} seeds", _met(matched == len(keys))],
        ],
    )  # fmt: skip
    return f"""
Seeds set the planted cohort's noise and the training. Both arms: {a.restarts} restarts,
{a.epochs} × {a.batches} gradient steps with every subject in every batch. Readout: leave-one-out
R² of ρ (OLS with intercept) from the hierarchical model's features — the target's readout: each
consensus restart's own readout of its P features (unchanged by the arbitrary invertible map that
makes a restart's features arbitrary), averaged over restarts; then the consensus feature space
with all P axes, in brackets its leading axis and its 3 leading axes — and
from the independent fits' leading MDS axis of the cross-subject D_stsp (in brackets: median
λ_max + 2-D MDS). Reference without a model: the spectral centroid of each subject's training
part (Welch, regions averaged), the data's most direct summary of the orbit's speed that ρ
sets. D_stsp: median over subjects of the held-out
D_stsp of their selected models. 2 clusters: Ward linkage, agreement with periodic vs chaotic.

{table}

{targets}

Details of seed {runs[0]["seed"]}:
"""


def _report(a, res) -> str:
    sids, space, rho_tr = res["sids"], res["space"], res["rho_tr"]
    h_scores, i_scores = res["h_scores"], res["i_scores"]
    rows = [
        [s, f"{r:.0f}", f"{lam:.2f}", "periodic" if p else "chaotic", h_scores[s], i_scores[s]]
        + [f"{v:.2f}" for v in space.coords[k, :2]]
        for k, (s, r, lam, p) in enumerate(
            zip(sids, rho_tr, res["lam_tr"], res["per_tr"], strict=True)
        )
    ]
    table = C.markdown_table(
        ["subject", "ρ", "true λ_max /tu", "regime", "D_stsp hier.", "D_stsp indep.", "c1", "c2"],
        rows,
    )
    hfit, ifit = res["hfit"], res["ifit"]
    group = hfit.model.n_parameters()["group"]
    dec = n_params(hfit.ensemble.decoder)
    n_sub = len(sids)
    per_h = a.features + dec + group / n_sub
    per_i = n_params(ifit.model) + dec
    dist = res["dist"]
    nearest = np.argsort(dist)[:2]
    planted = np.argsort(np.abs(rho_tr - res["rho_new"]), kind="stable")[:2]
    read = C.markdown_table(
        ["features (dims)", "LOO R² of ρ"], [[k, C.fmt(v)] for k, v in res["readout"].items()]
    )
    agreement = C.markdown_table(
        ["features", "Ward", "average linkage"],
        [[k, *(f"{100 * v:.0f} %" for v in vals)] for k, vals in res["agreement"].items()],
    )
    neighbours = ", ".join(
        f"{sids[i]} (ρ {rho_tr[i]:.0f}, distance {dist[i]:.2f})" for i in nearest
    )
    loss = lambda f: np.nanmedian(f.final_loss)  # noqa: E731
    return f"""
Planted cohort: {n_sub} subjects fitted (one more held out for transfer), ρ evenly spaced
{RHO[0]:.0f}–{RHO[1]:.0f}; regime from the true λ_max (per Lorenz time unit, "tu"). Both arms:
{a.restarts} restarts, {a.epochs} × {a.batches} gradient steps with every subject in every batch.
D_stsp: held-out last 25 % of each series, median over the subject's selected models (GMM,
N = 6). c1, c2: first two axes of the hierarchical model's consensus feature space (restarts
{", ".join(str(int(r)) for r in res["restarts"])}: those selected for ≥ half of the subjects).

{table}

Planted ρ read out linearly from subject features (leave-one-out over {n_sub} subjects; OLS with
intercept):

{read}

Hierarchical, each restart's own features alone: LOO R² {", ".join(C.fmt(v) for v in res["per_restart_r2"])}.
Consensus of n random restarts (median of 20 draws): {"; ".join(f"n = {n}: {v:.2f}" for n, v in res["subsets"].items())}.

Periodic vs chaotic, 2 clusters:

{agreement}

Parameters per subject: hierarchical {a.features} features + {dec} decoder + {group} group
parameters shared by {n_sub} subjects = {per_h:.0f}; independent {n_params(ifit.model)} latent +
{dec} decoder = {per_i}. Median final training loss: hierarchical {loss(hfit.ensemble):.3g},
independent {loss(ifit):.3g}; training time {hfit.ensemble.wall_time_s:.0f} s vs
{ifit.wall_time_s:.0f} s.

**Transfer**: sub-{a.holdout + 1:02d} (ρ {res["rho_new"]:.0f}), in neither fit, fitted to the trained
cohort model by its features and decoder only ({a.epochs} × {a.batches} steps, learning rate
{a.transfer_lr} → {a.lr_end}, {res["t_time"]:.0f} s), starting per restart from the cohort subject
whose features and decoder give the lowest GTF loss on its data. Consensus coordinates
({", ".join(f"{v:.2f}" for v in res["c_new"])}). Nearest cohort subjects in consensus feature space: {neighbours}; planted
neighbours (closest ρ): {", ".join(sids[i] for i in planted)}. ρ predicted by the restarts' mean
readout (each restart's OLS readout of the cohort, applied to the new subject's features in that
restart): {res["rho_hat"]:.0f}. Its held-out D_stsp: {C.fmt(res["t_score"])}.
"""


def _met(ok: bool) -> str:
    return "yes" if ok else "MISSED"


if __name__ == "__main__":
    main()
