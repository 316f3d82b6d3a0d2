"""Mean-field whole-brain benchmark (spec section 6): 16-region Wilson–Cowan network (mean_field.py,
oscillatory regime, τ = 2 s), BOLD at TR 0.5 s (spm_hrf, noise σ 0.1); convSSM vs standard SSM on
≥ 10 simulated data sets, scored in LATENT space: the free run is mapped to the true excitatory
activity (16 dims) by the affine least-squares map from B⁺x^deconv (training part) and compared on
the test part with the GMM D_stsp (σ² = 1). Each method is ONE ensemble over data sets × restarts.
Per data set the median over converged restarts; rank-sum (Mann–Whitney) and paired Wilcoxon tests.

    python validation/mean_field_benchmark.py          # reduced: 10 sets x 2 restarts, 60x20
    python validation/mean_field_benchmark.py --full   # 1000 epochs, 10 restarts (GPU)
"""

from __future__ import annotations

import _common as C
import numpy as np
import pandas as pd
from mean_field import bold, simulate_network
from scipy import stats

from dsr.analysis.evaluation import SubjectData, evaluate_ensemble
from dsr.signal.kernels import spm_hrf
from dsr.training.loop import resolve_device

TR = 0.5


def parse():
    p = C.base_parser(__doc__)
    p.add_argument("--sets", type=int, default=10)
    p.add_argument("--restarts", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batches", type=int, default=None)
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--noise-sd", type=float, default=0.1)
    return C.fill_scaled(
        p.parse_args(), dict(restarts=(10, 2), epochs=(1000, 60), batches=(50, 20))
    )


def main():
    a = parse()
    C.setup(a)
    device = str(resolve_device(a.device))
    timer = C.Timer()
    kernel = spm_hrf(TR)
    h = len(kernel)
    n = a.n_train + a.n_test
    lat, _ = simulate_network(a.sets, 16, n + h - 1, TR, tau_s=2.0, coupling=1.5, seed=a.seed)
    pairs = [bold(lat[s], kernel, a.noise_sd, a.seed + s) for s in range(a.sets)]
    x_tr = [x[: a.n_train] for x, _ in pairs]
    z_tr = [z[: a.n_train] for _, z in pairs]
    z_te = [z[a.n_train :] for _, z in pairs]
    sids = [f"set{s:02d}" for s in range(a.sets)]
    data = {
        s: SubjectData(x[: a.n_train], x_test=x[a.n_train :])
        for s, (x, _) in zip(sids, pairs, strict=True)
    }
    print(f"[{timer():.0f}s] simulated {a.sets} networks", flush=True)
    frames = []
    for name, dec in [("convSSM", "convolved"), ("standardSSM", "standard")]:
        fitted = C.fit(
            a,
            x_tr,
            kernel,
            sids,
            device,
            decoder=dec,
            alpha=0.1,
            hidden_dim=50,
            seq_len=200 if a.full else h + 50,
        )
        ev = evaluate_ensemble(
            fitted,
            data,
            n_trajectories=10 if not a.full else 100,
            pe_steps=10,
            lyap_steps=2000,
            lyap_transient=200,
            tr_s=TR,
            seed=a.seed,
        )
        t = ev.table
        t["dstsp_latent"] = C.latent_dstsp(fitted, x_tr, z_tr, z_te, n_traj=5 if not a.full else 20)
        t["method"], t["train_s"] = name, fitted.wall_time_s
        frames.append(t)
        print(f"[{timer():.0f}s] {name}: trained {fitted.wall_time_s:.0f}s", flush=True)
    df = pd.concat(frames, ignore_index=True)
    df.to_csv(C.OUT / "mean_field_benchmark.tsv", sep="\t", index=False)

    floor = [
        C.state_space_divergence(z_te[s], z_tr[s][-len(z_te[s]) :][:, None])[0]
        for s in range(a.sets)
    ]
    per_set, rows = {}, []
    for name in ("convSSM", "standardSSM"):
        m = df[df.method == name]
        ok = (m.status == "ok") & np.isfinite(m.dstsp_latent)
        keep = ok & C.iqr_keep(m.dstsp_latent.where(ok))
        per_set[name] = m[keep].groupby("subject").dstsp_latent.median().reindex(sids)
        rows.append(
            [
                name,
                f"{int(keep.sum())}/{len(m)}",
                C.med_iqr(m.dstsp_latent[keep]),
                C.med_iqr(m.dstsp_test[keep]),
                C.med_iqr(m.dh_test[keep]),
                C.med_iqr(m.pe10_test[keep]),
                C.med_iqr(per_set[name]),
            ]
        )
    u, p = C.mannwhitney(per_set["convSSM"], per_set["standardSSM"])
    both = per_set["convSSM"].notna() & per_set["standardSSM"].notna()
    w = (
        stats.wilcoxon(per_set["convSSM"][both], per_set["standardSSM"][both])
        if both.sum() > 1
        else None
    )
    wins = int((per_set["convSSM"][both] < per_set["standardSSM"][both]).sum())
    body = (
        C.markdown_table(
            [
                "method",
                "converged",
                "D_stsp latent (models)",
                "D_stsp obs (GMM)",
                "D_H",
                "PE10 test",
                "D_stsp latent (per-set medians)",
            ],
            rows,
        )
        + f"\n\nFloor (true latent, training-half end vs test half of the same network, median "
        f"over sets): {np.median(floor):.3g}.\n\nconvSSM better on {wins}/{int(both.sum())} data "
        f"sets; rank-sum U = {u:.0f}, "
        f"p = {p:.3g}; paired Wilcoxon p = {(w.pvalue if w else float('nan')):.3g}. "
        "Target (spec §6): convSSM beats the standard SSM in latent space."
    )
    if not a.no_write:
        C.write_section(
            "meanfield",
            "3. Mean-field network (16 Wilson–Cowan regions, TR 0.5 s)",
            body,
            device,
            dict(
                sets=a.sets,
                restarts=a.restarts,
                epochs=a.epochs,
                batches_per_epoch=a.batches,
                n_train=a.n_train,
                n_test=a.n_test,
                noise_sd=a.noise_sd,
                model="cshPLRNN M16 L50",
                tau_s=2.0,
                coupling=1.5,
                lr_end=a.lr_end,
                seq_len=200 if a.full else h + 50,
                grad_clip=10,
            ),
            timer(),
        )


if __name__ == "__main__":
    main()
