"""convSSM vs no-GTF vs standard SSM at the paper's Lorenz protocol, from ``lorenz_recipe.py`` runs.

Reads the per-model tables that ``lorenz_recipe.py`` writes (``validation/out/<section>.tsv``) for
the convolved and the standard decoder at each TR and compares their held-out D_stsp (observation
space, 30 bins per dim, test half) with a two-sided Mann–Whitney U test; the floor (the data's own
training half scored as a model of its test half) and λ_max per time unit stand beside them. The
no-GTF ablation (the convSSM trained with α = 0, ``--set ... alpha=0`` after the TR's own
overrides) gets its own row and test against the convSSM where it was run, and a "not run" row
where it was not.

    python validation/lorenz_recipe.py --recipe paper --milestones 16650 50000             # convSSM
    python validation/lorenz_recipe.py --recipe paper --decoder standard --milestones 16650 50000
    python validation/lorenz_recipe.py --recipe paper --set alpha=0 --milestones 50000     # no GTF
    python validation/lorenz_compare.py --trs 0.5 0.2 --steps 50000
"""

from __future__ import annotations

import _common as C
import numpy as np
import pandas as pd
from lorenz_recipe import run_name

DECODERS = {"convolved": "convSSM", "standard": "standard SSM"}


def parse():
    p = C.base_parser(__doc__)
    p.add_argument("--trs", type=float, nargs="+", default=[0.5, 0.2])
    p.add_argument("--steps", type=int, default=50_000, help="budget of the runs to compare")
    p.add_argument("--recipe", default="paper")
    p.add_argument("--noise", type=float, default=0.01)
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="data/training seeds whose models are pooled per TR")  # fmt: skip
    p.add_argument(
        "--extra", nargs="*", default=[], help="section-name parts of --set overrides per TR, "
        "e.g. 0.2=seq_len250",
    )  # fmt: skip
    return p.parse_args()


NO_GTF = "alpha0.0"  # section-name part of ``--set alpha=0``


def table_path(recipe, tr, noise, decoder, extra, seed, steps, no_gtf=False):
    """The per-model table ``lorenz_recipe.py`` wrote for this run."""
    parts = [p for p in (extra, NO_GTF if no_gtf else "") if p]
    return C.OUT / f"{run_name(recipe, tr, noise, decoder, parts, seed, steps)}.tsv"


def dstsp_or_worst(table) -> np.ndarray:
    """Held-out D_stsp per model; a model whose free runs escaped (no score) ranks worst, +inf,
    instead of dropping out of the comparison."""
    d = table["dstsp_test"].to_numpy(float)
    return np.where(np.isnan(d) & table["escaped"].to_numpy(bool), np.inf, d)


def read_tables(args, tr, extra, decoder, no_gtf=False) -> tuple[pd.DataFrame | None, list]:
    """The per-model tables of one arm at one TR, seeds pooled, and their paths; ``None`` and the
    missing paths when one is missing."""
    paths = [table_path(args.recipe, tr, args.noise, decoder, extra, seed, args.steps, no_gtf)
             for seed in args.seeds]  # fmt: skip
    if not all(p.exists() for p in paths):
        return None, [p for p in paths if not p.exists()]
    return pd.concat([pd.read_csv(p, sep="\t") for p in paths], ignore_index=True), paths


def arm_row(tr, name, t, test="", better="") -> list:
    """One table row: an arm's held-out D_stsp, floor, λ_max, faithful count and PE20."""
    d = dstsp_or_worst(t)
    floors = (
        " / ".join(C.fmt(f) for f in t["data_floor"].dropna().unique()) if "data_floor" in t else ""
    )
    return [
        tr, name, C.med_iqr(d), C.fmt(np.median(d[C.iqr_keep(d)])), floors or "–",
        C.med_iqr(t["lambda_per_tu"]), f"{int(t['faithful'].sum())}/{len(t)}",
        C.med_iqr(t["pe20_test"]), test, better,
    ]  # fmt: skip


def compare(conv, other) -> tuple[str, str]:
    """Mann–Whitney of the convSSM against another arm: (test text, convSSM better?)."""
    a, b = dstsp_or_worst(conv), dstsp_or_worst(other)
    u, p = C.mannwhitney(a, b)
    better = np.median(a) < np.median(b) and p < 0.05
    return f"U = {u:.0f}, p = {C.fmt(p)}", "yes" if better else "no"


def main() -> None:
    args = parse()
    timer = C.Timer()
    extra = dict(e.split("=", 1) for e in args.extra)
    rows, found = [], []
    for tr in args.trs:
        ex = extra.get(str(tr), "")
        arms = {}
        for dec in DECODERS:
            arms[dec], paths = read_tables(args, tr, ex, dec)
            if arms[dec] is None:
                raise SystemExit(f"missing {paths[0]}: run lorenz_recipe.py for TR {tr}, {dec}")
            found += [p.name for p in paths]
        conv, std = arms["convolved"], arms["standard"]
        no_gtf, paths = read_tables(args, tr, ex, "convolved", no_gtf=True)
        rows.append(arm_row(tr, DECODERS["convolved"], conv))
        if no_gtf is None:
            rows.append([tr, "no GTF (α = 0)", f"not run ({paths[0].name})", *[""] * 7])
        else:
            found += [p.name for p in paths]
            rows.append(arm_row(tr, "no GTF (α = 0)", no_gtf, *compare(conv, no_gtf)))
        rows.append(arm_row(tr, DECODERS["standard"], std, *compare(conv, std)))
    body = (
        f"Recipe `{args.recipe}` at {args.steps} gradient steps, σ {args.noise}, data sets (seeds) "
        f"{args.seeds} per TR pooled, the same seeds for every arm. Tables: "
        + ", ".join(f"`{f}`" for f in found)
        + ".\n\n"
        + C.markdown_table(
            [
                "TR s",
                "model",
                "D_stsp test [IQR]",
                "D_stsp inliers",
                "floor",
                "λ_max /tu",
                "faithful",
                "PE20 test",
                "Mann–Whitney vs convSSM (two-sided)",
                "convSSM better, p < 0.05",
            ],
            rows,
        )  # fmt: skip
    )
    print(body)
    if not args.no_write:
        suffix = "" if args.noise == 0.01 else f"-noise{args.noise}"
        suffix += "" if args.seeds == [0] else "-seeds" + "".join(map(str, args.seeds))
        C.write_section(
            f"lorenz-compare{suffix}",
            f"convSSM vs no-GTF vs standard SSM, Lorenz paper protocol, σ {args.noise}",
            body, "cpu", dict(trs=args.trs, steps=args.steps, recipe=args.recipe, noise=args.noise),
            timer(),
        )  # fmt: skip


if __name__ == "__main__":
    main()
