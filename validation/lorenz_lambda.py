"""λ_max recovery: convSSMs fitted to Lorenz-63 BOLD at TR 0.5 (T = 1000 training samples) →
distribution of λ_max per Lorenz time unit vs the true 0.906 (one sample = dt 0.01, see _common).

By default reuses the TR 0.5 convSSM ensemble saved by lorenz_benchmark.py
(``validation/out/lorenz_tr0.5_convSSM.pt``, noise σ 0.01 and 0.1); ``--refit`` (or a missing file)
fits a fresh ensemble (datasets × restarts, one ensemble). Spectra: Benettin QR with the analytic
Jacobian, 4 initial states per model taken from the data (B⁺x^deconv at cut_left, perturbed),
``--steps`` steps after a 10 % transient, float64. The true λ_max is recomputed with
``dsr.synthetic.lorenz.lyapunov_max_lorenz``.

    python validation/lorenz_lambda.py                 # reuse benchmark models (~1 min)
    python validation/lorenz_lambda.py --refit --full  # 10 datasets x 10 restarts, 1000 epochs
"""

from __future__ import annotations

import json

import _common as C
import numpy as np
from scipy import stats

from dsr.analysis.lyapunov import lyapunov_spectrum
from dsr.signal.kernels import spm_hrf
from dsr.synthetic.lorenz import lyapunov_max_lorenz
from dsr.training.ensemble import load_ensemble
from dsr.training.loop import resolve_device

TR = 0.5
SAVED = C.OUT / "lorenz_tr0.5_convSSM.pt"


def parse():
    p = C.base_parser(__doc__)
    p.add_argument("--refit", action="store_true")
    p.add_argument("--noise", type=float, nargs="+", default=[0.01, 0.1])
    p.add_argument("--datasets", type=int, default=None)
    p.add_argument("--restarts", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batches", type=int, default=None)
    p.add_argument("--steps", type=int, default=20_000)
    return C.fill_scaled(
        p.parse_args(),
        dict(datasets=(10, 3), restarts=(10, 3), epochs=(1000, 30), batches=(50, 20)),
    )


def main():
    a = parse()
    C.setup(a)
    device = str(resolve_device(a.device))
    timer = C.Timer()
    kernel = spm_hrf(TR)
    n_train = 1000
    if SAVED.exists() and not a.refit:
        fitted = load_ensemble(SAVED)
        source = f"reused `{SAVED.relative_to(C.HERE.parent)}` (written by lorenz_benchmark.py)"
        noise_of = {s: float(s.split("-")[0][1:]) for s in fitted.subject_ids}
        # regenerate the exact training series of the benchmark (same seeds and lengths)
        meta = json.loads(SAVED.with_suffix(".json").read_text())
        source += (
            f", trained {meta.get('epochs')} epochs x {meta.get('batches')} batches, "
            f"lr_end {meta.get('lr_end')}, by `{meta.get('command')}`"
        )
        x_tr = []
        for s in fitted.subject_ids:
            sd, k = noise_of[s], int(s.split("-d")[1])
            seed = fitted.config["seed"] + 1000 * k + int(round(sd * 1e4))
            x_tr.append(C.lorenz_bold(kernel, meta["n_total"], sd, seed)[0][:n_train])
    else:
        sids, x_tr, noise_of = [], [], {}
        for sd in a.noise:
            for k in range(a.datasets):
                sid = f"s{sd}-d{k}"
                x_tr.append(
                    C.lorenz_bold(kernel, n_train, sd, a.seed + 1000 * k + int(round(sd * 1e4)))[0]
                )
                sids.append(sid)
                noise_of[sid] = sd
        fitted = C.fit(
            a,
            x_tr,
            kernel,
            sids,
            device,
            model="shPLRNN",
            latent_dim=3,
            hidden_dim=50,
            alpha=0.1,
            seq_len=200 if a.full else len(kernel) + 50,
        )
        source = f"fitted here ({fitted.wall_time_s:.0f} s training)"
    _, d = C.latent_free_runs(fitted, x_tr, 2, n_traj=1)
    cl = int(np.flatnonzero(np.isfinite(d[:, 0, 0]))[0])
    g = np.random.default_rng(a.seed)
    z0 = d[cl][:, None] + 0.01 * g.standard_normal((d.shape[1], 4, d.shape[2]))
    spec = lyapunov_spectrum(fitted.model, z0=z0, n_steps=a.steps, transient=a.steps // 10)
    lam = spec[:, 0] / C.LORENZ_DT  # per Lorenz time unit
    true = float(lyapunov_max_lorenz(28.0, n_steps=50_000)[0])
    ok = np.array([s == "ok" for s in fitted.status]) & np.isfinite(lam)
    noise = np.array([noise_of[fitted.subject_ids[s]] for s in fitted.model_subject])
    rows = []
    for sd in sorted(set(noise)):
        v = lam[ok & (noise == sd)]
        keep = v[C.iqr_keep(v)]
        w = stats.wilcoxon(keep - true) if len(keep) > 1 else None
        rows.append(
            [
                f"{sd}",
                f"{len(v)}/{int((noise == sd).sum())}",
                C.med_iqr(v),
                f"{v.mean():.3g} ± {v.std(ddof=1):.3g}" if len(v) > 1 else "nan",
                f"{(v > 0).mean():.2f}" if len(v) else "nan",
                f"{np.mean(np.abs(v - true) < 0.2 * true):.2f}" if len(v) else "nan",
                f"{(np.median(keep) - true) / true:+.2f}" if len(keep) else "nan",
                f"{w.pvalue:.3g}" if w else "nan",
            ]
        )
    body = (
        f"Models: {source}. True λ_max (recomputed, RK4 Benettin, 50 000 steps): {true:.3f} per "
        "time unit (spec: 0.906).\n\n"
        + C.markdown_table(
            [
                "noise σ",
                "models ok",
                "λ_max /time unit median [IQR]",
                "mean ± sd",
                "frac. > 0",
                "frac. within ±20 %",
                "rel. error of median (IQR-kept)",
                "Wilcoxon vs true p",
            ],
            rows,
        )
    )
    if not a.no_write:
        C.write_section(
            "lambda",
            "2. λ_max recovery (convSSM, Lorenz BOLD, TR 0.5 s, T = 1000)",
            body,
            device,
            dict(
                steps=a.steps,
                transient=a.steps // 10,
                n_initial=4,
                refit=a.refit or not SAVED.exists(),
                **(
                    {}
                    if SAVED.exists() and not a.refit
                    else dict(
                        datasets=a.datasets,
                        restarts=a.restarts,
                        epochs=a.epochs,
                        batches=a.batches,
                        lr_end=a.lr_end,
                    )
                ),
            ),
            timer(),
        )
    else:
        print(body)


if __name__ == "__main__":
    main()
