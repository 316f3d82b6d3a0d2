"""convSSM vs standard SSM at the paper's Lorenz protocol, from ``lorenz_recipe.py`` runs.

Reads the per-model tables that ``lorenz_recipe.py`` writes (``validation/out/<section>.tsv``) for
the convolved and the standard decoder at each TR and compares their held-out D_stsp (observation
space, 30 bins per dim, test half) with a two-sided Mann–Whitney U test; the floor (the data's own
training half scored as a model of its test half) and λ_max per time unit stand beside them.

    python validation/lorenz_recipe.py --recipe paper --milestones 16650 50000             # convSSM
    python validation/lorenz_recipe.py --recipe paper --decoder standard --milestones 16650 50000
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


def table_path(recipe, tr, noise, decoder, extra, seed, steps):
    """The per-model table ``lorenz_recipe.py`` wrote for this run."""
    name = run_name(recipe, tr, noise, decoder, [extra] if extra else [], seed, steps)
    return C.OUT / f"{name}.tsv"


def dstsp_or_worst(table) -> np.ndarray:
    """Held-out D_stsp per model; a model whose free runs escaped (no score) ranks worst, +inf,
    instead of dropping out of the comparison."""
    d = table["dstsp_test"].to_numpy(float)
    return np.where(np.isnan(d) & table["escaped"].to_numpy(bool), np.inf, d)


def main() -> None:
    args = parse()
    timer = C.Timer()
    extra = dict(e.split("=", 1) for e in args.extra)
    rows, found = [], []
    for tr in args.trs:
        tables = {}
        for dec in DECODERS:
            parts = []
            for seed in args.seeds:
                path = table_path(args.recipe, tr, args.noise, dec, extra.get(str(tr), ""), seed,
                                  args.steps)  # fmt: skip
                if not path.exists():
                    raise SystemExit(f"missing {path}: run lorenz_recipe.py for TR {tr}, {dec}")
                parts.append(pd.read_csv(path, sep="\t"))
                found.append(path.name)
            tables[dec] = pd.concat(parts, ignore_index=True)
        conv, std = (dstsp_or_worst(tables[d]) for d in DECODERS)
        u, p = C.mannwhitney(conv, std)
        for dec, t in tables.items():
            d = dstsp_or_worst(t)
            rows.append([
                tr, DECODERS[dec], C.med_iqr(d), C.fmt(np.median(d[C.iqr_keep(d)])),
                " / ".join(C.fmt(f) for f in t["data_floor"].dropna().unique()) or "–"
                if "data_floor" in t else "–",
                C.med_iqr(t["lambda_per_tu"]), f"{int(t['faithful'].sum())}/{len(t)}",
                C.med_iqr(t["pe20_test"]),
                f"U = {u:.0f}, p = {C.fmt(p)}" if dec == "convolved" else "",
                ("yes" if np.median(conv) < np.median(std) and p < 0.05 else "no")
                if dec == "convolved" else "",
            ])  # fmt: skip
    body = (
        f"Recipe `{args.recipe}` at {args.steps} gradient steps, σ {args.noise}, data sets (seeds) "
        f"{args.seeds} per TR pooled, the same seeds for both decoders. Tables: "
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
                "Mann–Whitney (two-sided)",
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
            f"lorenz-compare{suffix}", f"convSSM vs standard SSM, Lorenz paper protocol, σ {args.noise}",
            body, "cpu", dict(trs=args.trs, steps=args.steps, recipe=args.recipe, noise=args.noise),
            timer(),
        )  # fmt: skip


if __name__ == "__main__":
    main()
