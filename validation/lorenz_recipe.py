"""Quality against gradient steps for a training recipe, on the paper's Lorenz protocol.

Data (spec section 6): Lorenz-63, one sample = dt 0.01 = one TR, standardised, through the HRF at
``--tr``, noise σ ``--noise``; the first ``--n-train`` samples train, the next ``--n-test`` are
held out. One ensemble of ``--restarts`` shPLRNNs (M = 3, L = 50) is trained with the recipe; at
each milestone (gradient steps) the current models are evaluated exactly as ``dsr evaluate`` does
(held-out D_stsp binned 30 per dim, D_H, PE_20 from the leak-free sliding deconvolution, λ_max
from 10⁴ QR steps, the escape check) and the table reports, per milestone: median held-out
D_stsp (all models, and the best quarter chosen by D_stsp on the TRAINING half, which never
sees the test half), the floor (the data's own training part scored as a
model of its test part), median λ_max per time unit (truth 0.906), the fraction of faithful
restarts (held-out D_stsp < 0.30, |λ_max − 0.906| < 10 %, not escaped), how many of the best
quarter are faithful (does selection pick the faithful restarts?) and the restarts a user needs
for a 95 % chance of at least one faithful model.

    python validation/lorenz_recipe.py --recipe paper      # alpha 0.1, lr 1e-3 -> 1e-6
    python validation/lorenz_recipe.py --recipe adaptive   # aGTF (Hess et al. 2023)
    python validation/lorenz_recipe.py --recipe paper --set batch_size=64 --milestones 16650
    python validation/lorenz_recipe.py --recipe paper --decoder standard --tr 0.2 --milestones 50000

``--set key=value`` overrides any :class:`dsr.training.loop.TrainingConfig` field of the recipe;
the section name carries the overrides. Each run also writes its per-model scores at the last
milestone to ``validation/out/<section>.tsv`` (read by ``lorenz_compare.py``). "D_stsp inliers"
is the median after removing 1.5·IQR outliers (the paper's rule for simulated benchmarks).
"""

from __future__ import annotations

import dataclasses
import math

import _common as C
import numpy as np
import torch

from dsr.analysis.evaluation import evaluate_ensemble
from dsr.signal.kernels import spm_hrf
from dsr.training.ensemble import FittedEnsemble
from dsr.training.loop import TrainingConfig
from dsr.training.state import TrainState
from dsr.training.windows import prepare_cohort

RECIPES = {
    "paper": dict(alpha=0.1, gtf="fixed", lr_start=1e-3, lr_end=1e-6),
    "adaptive": dict(gtf="adaptive", lr_start=1e-3, lr_end=1e-6),
    "adaptive-fast-lr": dict(gtf="adaptive", lr_start=3e-3, lr_end=1e-5),
}
FAITHFUL_DSTSP = 0.30
FAITHFUL_LAMBDA = 0.10  # relative error of λ_max


def parse():
    p = C.base_parser(__doc__)
    p.add_argument("--recipe", choices=list(RECIPES), default="paper")
    p.add_argument("--tr", type=float, default=0.5)
    p.add_argument("--noise", type=float, default=0.01)
    p.add_argument("--n-train", type=int, default=50_000)
    p.add_argument("--n-test", type=int, default=50_000)
    p.add_argument("--restarts", type=int, default=8)
    p.add_argument("--batches", type=int, default=50, help="batches per epoch")
    p.add_argument("--milestones", type=int, nargs="+", default=[2500, 5000, 10000, 16650],
                   help="gradient steps at which to evaluate; the last one is the budget")  # fmt: skip
    p.add_argument("--trajectories", type=int, default=10)
    p.add_argument("--decoder", choices=["convolved", "standard"], default="convolved")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override TrainingConfig fields of the recipe, e.g. batch_size=64")  # fmt: skip
    return p.parse_args()


def best_by_train(table) -> np.ndarray:
    """The best quarter of the eligible restarts (at least one) by D_stsp on the TRAINING half:
    a selection that never sees the test half (the paper keeps its best 20 % by D_stsp)."""
    ok = table["eligible"].astype(bool) & np.isfinite(table["dstsp_train"])
    k = max(1, round(ok.sum() / 4))
    rank = table["dstsp_train"].where(ok).rank(method="first")
    return (rank <= k).to_numpy()


def run_name(recipe, tr, noise, decoder, overrides: list[str], seed: int, steps: int) -> str:
    """Name of a run's RESULTS section and per-model table, e.g.
    ``recipe-paper-tr0.2-standard-seq_len250-seed1-steps50000`` (defaults left out)."""
    parts = [f"recipe-{recipe}", f"tr{tr}"] + ([f"noise{noise}"] if noise != 0.01 else [])
    parts += [decoder] if decoder != "convolved" else []
    parts += overrides + ([f"seed{seed}"] if seed else [])
    return "-".join(parts + [f"steps{steps}"])


def section_name(args, extra: dict, steps: int) -> str:
    overrides = [f"{k}{v}" for k, v in extra.items()]
    return run_name(args.recipe, args.tr, args.noise, args.decoder, overrides, args.seed, steps)


def _snapshot(state, config, kernel, seed) -> FittedEnsemble:
    """The models as they are now, as a fitted ensemble of one subject."""
    n = state.model.n_models
    return FittedEnsemble(
        model=state.model, decoder=state.decoder, subject_ids=["lorenz"],
        model_subject=np.zeros(n, int), model_restart=np.arange(n),
        status=["diverged" if f else "ok" for f in state.failed.cpu().numpy()],
        final_loss=np.full(n, np.nan), loss_history=state.history.numpy()[: state.epoch],
        config={**dataclasses.asdict(config), "seed": seed}, kernel=np.asarray(kernel),
        wall_time_s=0.0, device="cpu",
    )  # fmt: skip


def restarts_for_95(p: float) -> str:
    if p <= 0:
        return "∞"
    return "1" if p >= 1 else str(math.ceil(math.log(0.05) / math.log(1 - p)))


def main() -> None:
    args = parse()
    C.setup(args)
    timer = C.Timer()
    hrf = spm_hrf(args.tr)
    x, _ = C.lorenz_bold(hrf, args.n_train + args.n_test, args.noise, seed=args.seed)
    kernel = hrf if args.decoder == "convolved" else np.ones(1)
    extra = C.config_overrides(args.set)
    recipe = {**RECIPES[args.recipe], **extra}
    steps = args.milestones
    epochs = math.ceil(steps[-1] / args.batches)
    paper = dict(model="shPLRNN", latent_dim=3, hidden_dim=50)  # --set may override these
    config = TrainingConfig(**{
        **paper, "epochs": epochs, "batches_per_epoch": args.batches, "grad_clip": 10.0,
        "test_fraction": args.n_test / len(x), "checkpoint_every": 0, "decoder": args.decoder,
        **recipe,
    })  # fmt: skip
    state = TrainState.new(config, [x], kernel, None, args.restarts, args.seed, "cpu")
    cohort = prepare_cohort([x], None, kernel, config, ["lorenz"], "cpu", torch.float32)
    model_subject = torch.zeros(args.restarts, dtype=torch.long)
    rows, lam_true = [], C.LORENZ_LAMBDA_MAX
    for target in steps:
        while state.epoch * args.batches < target:
            state.train_epoch(cohort, model_subject, config)
        ev = evaluate_ensemble(
            _snapshot(state, config, kernel, args.seed), {"lorenz": x}, pe_steps=20,
            n_trajectories=args.trajectories, lyap_steps=10_000, seed=args.seed,
        )  # fmt: skip
        t, floor = ev.table, ev.summary["lorenz"]["data_floor"]["dstsp"]
        lam = t["lambda_max"].to_numpy() / C.LORENZ_DT
        faithful = (
            (t["dstsp_test"] < FAITHFUL_DSTSP)
            & (np.abs(lam / lam_true - 1) < FAITHFUL_LAMBDA)
            & ~t["escaped"].astype(bool)
        ).to_numpy()
        best = best_by_train(t)
        rows.append([
            state.epoch * args.batches, C.med_iqr(t["dstsp_test"]),
            C.fmt(np.median(t["dstsp_test"][C.iqr_keep(t["dstsp_test"])])),
            C.fmt(np.median(t["dstsp_test"][best])), C.fmt(floor),
            C.med_iqr(lam), C.fmt(np.median(lam[best])),
            f"{int(t['escaped'].sum())}/{len(t)}", f"{faithful.sum()}/{len(t)}",
            f"{faithful[best].sum()}/{best.sum()}", restarts_for_95(faithful.mean()),
            C.med_iqr(t["pe20_test"]), f"{timer() / 60:.1f}",
        ])  # fmt: skip
        print(rows[-1], flush=True)
        t.assign(lambda_per_tu=lam, faithful=faithful, best_by_train=best, data_floor=floor).to_csv(
            C.OUT / f"{section_name(args, extra, target)}.tsv", sep="\t"
        )
    name = section_name(args, extra, steps[-1])
    body = (
        f"Recipe `{args.recipe}`: {recipe}, decoder {args.decoder}; faithful = held-out D_stsp < "
        f"{FAITHFUL_DSTSP}, |λ_max − 0.906| < {FAITHFUL_LAMBDA:.0%}, not escaped. Medians over the "
        "restarts (IQR in brackets); λ per time unit.\n\n"
        + C.markdown_table(
            ["gradient steps", "D_stsp test, all", "D_stsp inliers", "D_stsp test, best ¼",
             "floor", "λ_max all", "λ_max best ¼", "escaped", "faithful", "best ¼ faithful",
             "restarts for 95 %", "PE20 test", "elapsed min"], rows)
    )  # fmt: skip
    settings = dict(tr=args.tr, noise=args.noise, n_train=args.n_train, n_test=args.n_test,
                    restarts=args.restarts, batches=args.batches, epochs=epochs,
                    decoder=args.decoder, **extra)  # fmt: skip
    if not args.no_write:
        title = f"Quality vs gradient steps: {name.removeprefix('recipe-')}"
        C.write_section(name, title, body,
                        "cpu", settings, timer())  # fmt: skip
    else:
        print(body)


if __name__ == "__main__":
    main()
