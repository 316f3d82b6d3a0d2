"""Latent models compared as the convSSM's latent map: cshPLRNN vs S4D (diagonal linear SSM) vs
the selective (gated) SSM, on the Lorenz benchmark at TR 0.5 s and on the demo cohort.

Lorenz: Lorenz-63 through spm_hrf(0.5), noise σ 0.01, one sample = dt 0.01 = one TR (see
_common.py); the first ``--n-train`` samples train, the next ``--n-test`` are held out; M = N = 3,
L = 50. Demo: ``write_demo_cohort`` (fMRIPrep-style, 6 regions, TR 1.4 s, ``--volumes``) extracted
with nilearn; the first 75 % of each series trains, the rest is held out; M = N = 6, L = 50. Every
model class is ONE ensemble (data sets × restarts), convolved decoder, α = 0.1, gradient clip 10.

Scores on the held-out part (median [IQR] over models that finished): D_stsp (observed, binned
for N < 6 else GMM), D_H, λ_max; for Lorenz also the latent D_stsp of the free run beyond the
training part vs the true orbit (as lorenz_benchmark.py). Parameters: latent map only (+ decoder).
Time per batch: one GTF batch (forward, backward, RAdam step) of the training loop at the
script's E, batch size and window, measured in this process with the model classes interleaved
(``--timing-reps`` rounds), median.

    python validation/latent_models.py                     # reduced scale (see RESULTS.md)
    python validation/latent_models.py --full              # paper scale (GPU): 1000 x 50
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path

import _common as C
import numpy as np
import pandas as pd
import torch

from dsr.analysis.evaluation import SubjectData, evaluate_ensemble
from dsr.io.fmriprep import extract_fmriprep_subject
from dsr.signal.kernels import spm_hrf
from dsr.synthetic.fmriprep_demo import SPACE, write_demo_cohort
from dsr.training.loop import TrainingConfig, resolve_device
from dsr.training.state import TrainState
from dsr.training.windows import prepare_cohort

MODELS = ["cshPLRNN", "S4D", "selectiveSSM"]
TR_LORENZ, TR_DEMO = 0.5, 1.4


def parse():
    p = C.base_parser(__doc__)
    p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    p.add_argument("--datasets", type=int, default=None, help="Lorenz data sets")
    p.add_argument("--subjects", type=int, default=None, help="demo subjects")
    p.add_argument("--restarts", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batches", type=int, default=None, help="batches per epoch")
    p.add_argument("--n-train", type=int, default=None, help="Lorenz training samples")
    p.add_argument("--n-test", type=int, default=None, help="Lorenz held-out samples")
    p.add_argument("--n-ref", type=int, default=None, help="true-latent reference (latent D_stsp)")
    p.add_argument("--volumes", type=int, default=500, help="demo volumes per subject")
    p.add_argument("--trajectories", type=int, default=None)
    p.add_argument("--timing-reps", type=int, default=30)
    p.add_argument("--skip-demo", action="store_true")
    scales = dict(
        datasets=(10, 2),
        subjects=(10, 3),
        restarts=(10, 3),
        epochs=(1000, 100),
        batches=(50, 20),
        n_train=(50_000, 50_000),
        n_test=(10_000, 5_000),
        n_ref=(100_000, 20_000),
        trajectories=(100, 10),
    )
    return C.fill_scaled(p.parse_args(), scales)


def config_for(a, model, n_latent, seq_len) -> dict:
    """TrainingConfig fields of one model class (the series passed to the fit are training-only)."""
    cfg = dict(model=model, latent_dim=n_latent, hidden_dim=50, seq_len=seq_len)
    if "test_fraction" in {f.name for f in dataclasses.fields(TrainingConfig)}:
        cfg["test_fraction"] = 0.0  # the held-out part is never passed to the fit
    return cfg


def n_parameters(fitted) -> tuple[int, int]:
    """Numbers per model in the latent map and in the decoder (all tensors carry the E axis)."""
    e = fitted.n_models
    count = [
        sum(p.numel() for p in mod.parameters()) // e for mod in (fitted.model, fitted.decoder)
    ]
    return count[0], count[1]


def time_per_batch(a, data, kernel, seq_len, n_latent, device, reps) -> dict:
    """Median seconds of one training batch per model class, classes interleaved ``reps`` times."""
    states, sids = {}, [f"s{i}" for i in range(len(data))]
    for name in a.models:
        cfg = TrainingConfig(
            batches_per_epoch=1, epochs=10 * reps, grad_clip=10.0, checkpoint_every=0,
            **config_for(a, name, n_latent, seq_len),
        )  # fmt: skip
        state = TrainState.new(cfg, data, kernel, None, a.restarts, a.seed, device)
        cohort = prepare_cohort(data, None, kernel, cfg, sids, device, torch.float32)
        subject = torch.arange(len(data), device=device).repeat_interleave(a.restarts)
        states[name] = (state, cohort, subject, cfg)
    times = {name: [] for name in a.models}
    for rep in range(reps + 2):  # two warm-up rounds
        for name, (state, cohort, subject, cfg) in states.items():
            t0 = time.perf_counter()
            state.train_epoch(cohort, subject, cfg)
            if rep >= 2:
                times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def score(fitted, data, tr_s, a) -> pd.DataFrame:
    ev = evaluate_ensemble(
        fitted,
        data,
        n_trajectories=a.trajectories,
        pe_steps=20,
        lyap_steps=3000 if not a.full else 10_000,
        lyap_transient=500 if not a.full else 1000,
        tr_s=tr_s,
        seed=a.seed,
    )
    return ev.table


def lorenz(a, device, timer) -> tuple[pd.DataFrame, dict]:
    kernel = spm_hrf(TR_LORENZ)
    seq_len = 200 if a.full else max(len(kernel) + 50, 100)
    n_total = a.n_train + max(a.n_test, a.n_ref)
    sets = [
        C.lorenz_bold(kernel, n_total, 0.01, a.seed + 1000 * k + 100) for k in range(a.datasets)
    ]
    x_tr = [x[: a.n_train] for x, _ in sets]
    z_tr = [z[: a.n_train] for _, z in sets]
    z_ref = [z[a.n_train : a.n_train + a.n_ref] for _, z in sets]
    sids = [f"lorenz-d{k}" for k in range(a.datasets)]
    test = slice(a.n_train, a.n_train + a.n_test)
    data = {
        s: SubjectData(x[: a.n_train], x_test=x[test]) for s, (x, _) in zip(sids, sets, strict=True)
    }
    timing = time_per_batch(a, x_tr, kernel, seq_len, 3, device, a.timing_reps)
    print(f"[{timer():.0f}s] Lorenz time per batch {timing}", flush=True)
    frames = []
    for name in a.models:
        fitted = C.fit(a, x_tr, kernel, sids, device, **config_for(a, name, 3, seq_len))
        t = score(fitted, data, TR_LORENZ, a)
        t["dstsp_latent"] = C.latent_dstsp(fitted, x_tr, z_tr, z_ref, n_traj=a.trajectories)
        t["lambda_max_per_tu"] = t["lambda_max"] / C.LORENZ_DT
        t["method"], t["train_s"] = name, fitted.wall_time_s
        t["n_params"], t["n_params_decoder"] = n_parameters(fitted)
        frames.append(t)
        print(f"[{timer():.0f}s] Lorenz {name}: trained {fitted.wall_time_s:.0f}s", flush=True)
    return pd.concat(frames, ignore_index=True), timing


def demo(a, device, timer) -> tuple[pd.DataFrame, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        root = write_demo_cohort(
            Path(tmp) / "cohort", a.subjects, tr_s=TR_DEMO, n_volumes=a.volumes, seed=a.seed
        )
        sids = [f"sub-{s + 1:02d}" for s in range(a.subjects)]
        series = []
        for sid in sids:
            bold = root / sid / "func" / f"{sid}_task-rest_space-{SPACE}_desc-preproc_bold.nii.gz"
            res = extract_fmriprep_subject(
                bold, root / "atlas/atlas-demo_dseg.nii.gz", root / "atlas/atlas-demo_dseg.tsv"
            )
            series.append(np.asarray(res.timeseries, np.float64))
    kernel = spm_hrf(TR_DEMO)
    n_train = int(round(0.75 * a.volumes))
    x_tr = [x[:n_train] for x in series]
    data = {
        s: SubjectData(x[:n_train], x_test=x[n_train:]) for s, x in zip(sids, series, strict=True)
    }
    n_latent = series[0].shape[1]
    timing = time_per_batch(
        a, x_tr, kernel, 200 if a.full else 100, n_latent, device, a.timing_reps
    )
    print(f"[{timer():.0f}s] demo time per batch {timing}", flush=True)
    frames = []
    for name in a.models:
        cfg = config_for(a, name, n_latent, 200 if a.full else 100)
        fitted = C.fit(a, x_tr, kernel, sids, device, **cfg)
        t = score(fitted, data, TR_DEMO, a)
        t["method"], t["train_s"] = name, fitted.wall_time_s
        t["n_params"], t["n_params_decoder"] = n_parameters(fitted)
        frames.append(t)
        print(f"[{timer():.0f}s] demo {name}: trained {fitted.wall_time_s:.0f}s", flush=True)
    return pd.concat(frames, ignore_index=True), timing


def summarise(df: pd.DataFrame, timing: dict, latent: bool) -> str:
    rows = []
    base = timing.get("cshPLRNN")
    for name, m in df.groupby("method", sort=False):
        ok = (m.status == "ok") & np.isfinite(m[["dstsp_test", "dh_test", "lambda_max"]]).all(
            axis=1
        )
        lam = m.lambda_max_per_tu if latent else m.lambda_max_per_s
        ratio = f" ({timing[name] / base:.1f}x)" if base and name != "cshPLRNN" else ""
        rows.append(
            [name, f"{int(ok.sum())}/{len(m)}"]
            + ([C.med_iqr(m.dstsp_latent[ok])] if latent else [])
            + [
                C.med_iqr(m.dstsp_test[ok]),
                C.med_iqr(m.dh_test[ok]),
                C.med_iqr(m.pe20_test[ok]),
                C.med_iqr(lam[ok]),
                f"{(lam[ok] > 0).mean():.2f}" if ok.any() else "nan",
                f"{int(m.n_params.iloc[0])} (+{int(m.n_params_decoder.iloc[0])})",
                f"{1e3 * timing[name]:.1f}{ratio}",
                f"{m.train_s.iloc[0]:.0f}",
            ]
        )
    header = ["latent model", "finite"] + (["D_stsp latent"] if latent else [])
    header += ["D_stsp test", "D_H test", "PE20 test"]
    header += ["λ_max /time unit" if latent else "λ_max /s", "frac. λ_max > 0"]
    header += ["params / model (+decoder)", "ms / batch", "fit s (ensemble)"]
    return C.markdown_table(header, rows)


def main():
    a = parse()
    C.setup(a)
    device = str(resolve_device(a.device))
    timer = C.Timer()
    df, timing = lorenz(a, device, timer)
    df.to_csv(C.OUT / "latent_models_lorenz.tsv", sep="\t", index=False)
    body = (
        f"**Lorenz-63, TR {TR_LORENZ} s, σ 0.01** ({a.datasets} data sets × {a.restarts} "
        f"restarts per class; held-out {a.n_test} samples; latent D_stsp vs the true orbit over "
        f"{a.n_ref} samples; M 3, L 50, E = {a.datasets * a.restarts}):\n\n"
        + summarise(df, timing, latent=True)
    )
    if not a.skip_demo:
        dd, dtiming = demo(a, device, timer)
        dd.to_csv(C.OUT / "latent_models_demo.tsv", sep="\t", index=False)
        body += (
            f"\n\n**Demo cohort, TR {TR_DEMO} s** ({a.subjects} subjects × {a.restarts} restarts "
            f"per class, {a.volumes} volumes, last 25 % held out; M = N = 6, L 50, "
            f"E = {a.subjects * a.restarts}):\n\n" + summarise(dd, dtiming, latent=False)
        )
    settings = dict(
        models=a.models,
        epochs=a.epochs,
        batches_per_epoch=a.batches,
        restarts=a.restarts,
        datasets=a.datasets,
        subjects=0 if a.skip_demo else a.subjects,
        n_train=a.n_train,
        n_test=a.n_test,
        n_ref=a.n_ref,
        trajectories=a.trajectories,
        lr_end=a.lr_end,
        batch_size=16,
        grad_clip=10,
        timing_reps=a.timing_reps,
        seed=a.seed,
    )
    (C.OUT / "latent_models.json").write_text(json.dumps({"settings": settings, "timing": timing}))
    if not a.no_write:
        C.write_section(
            "latent-models",
            "6. Latent models: cshPLRNN vs S4D (linear) vs selective SSM",
            body,
            device,
            settings,
            timer(),
        )
    else:
        print(body)


if __name__ == "__main__":
    main()
