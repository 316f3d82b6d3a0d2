"""The default demo's targets (issue 14) for a training recipe, run as the workflow runs them.

The demo cohort of ``config.yaml`` (4 Lorenz-63 subjects with planted ρ, 6 regions, TR 1.4 s, motion,
noise) is written and extracted once into ``validation/out/demo_recipe/`` with the workflow's own
functions (``dsr.pipeline.run_demo`` / ``run_extract``, the config's extraction options). Then, per
recipe, every subject is fitted (``run_fit``, the config's ``fit`` section with ``--set`` overrides,
all subjects × restarts in one ensemble), evaluated (``run_evaluate``, the config's ``evaluate``
section) and compared (``run_cohort``), and the targets are checked:

* every subject: its selected models are chaotic (median λ_max > 0) with median λ_max within ±25 % of
  the planted value;
* the cohort D_stsp matrix is diagonal-dominant (each subject's models fit its own data best: the
  diagonal entry is the smallest of its row) for ≥ 3 of 4 subjects.

    python validation/demo_recipe.py                            # the config's recipe
    python validation/demo_recipe.py --set epochs=1500 --name e1500

The fit's wall time is printed: the workflow's fit jobs run two at a time on 2 cores, so the demo's
fit stage takes about half the single-process time printed here.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import _common as C
import numpy as np
import pandas as pd
import yaml

from dsr.io import ExtractionResult, save_extraction
from dsr.pipeline import run_cohort, run_demo, run_evaluate, run_extract, run_fit
from dsr.report.cohort import data_reference, own_best
from dsr.training.loop import TrainingConfig
from dsr.training.windows import train_length

ROOT = Path(__file__).resolve().parents[1]
LAMBDA_TOLERANCE = 0.25


def parse():
    p = C.base_parser(__doc__)
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override fit-section keys (TrainingConfig fields), e.g. epochs=1500")  # fmt: skip
    p.add_argument("--restarts", type=int, default=None, help="default: fit.n_restarts")
    p.add_argument("--name", default="config", help="label of the recipe (folder, section)")
    p.add_argument("--rho-range", type=float, nargs=2, default=None, metavar=("FIRST", "LAST"),
                   help="planted ρ of the demo cohort (default: demo.rho_range of config.yaml)")  # fmt: skip
    p.add_argument("--volumes", type=int, default=None,
                   help="volumes per subject (default: demo.n_volumes of config.yaml)")  # fmt: skip
    p.add_argument("--cohort", nargs="+", default=[], metavar="KEY=VALUE",
                   help="write_demo_cohort options (numbers), e.g. time_unit_s=40 noise_sd=0; "
                   "keys of config.yaml's demo section (n_regions=10) replace its values")  # fmt: skip
    p.add_argument("--oracle", action="store_true",
                   help="fit the planted Lorenz states themselves (no HRF, mixing or noise; "
                   "standard decoder): what the subjects' 375 training samples allow")  # fmt: skip
    p.add_argument("--hierarchical", action="store_true",
                   help="one hierarchical cohort model (fit.hierarchical of config.yaml, enabled)")  # fmt: skip
    return p.parse_args()


def training_params(cfg: dict, extra: dict) -> dict:
    """The workflow's TrainingConfig fields (workflow/rules/common.smk) plus ``extra``."""
    keys = [f.name for f in dataclasses.fields(TrainingConfig) if f.name in cfg["fit"]]
    return {k: cfg["fit"][k] for k in keys} | {
        "test_fraction": cfg["evaluate"]["test_fraction"], "checkpoint_every": 0, **extra,
    }  # fmt: skip


def extracted_cohort(cfg: dict, base: Path) -> tuple[list[str], list[Path], Path]:
    """Demo cohort written and extracted once (cached in ``base``); subjects, extract dirs, demo dir."""
    d = cfg["demo"]
    subjects = [f"sub-{i + 1:02d}" for i in range(d["n_subjects"])]
    demo = base / "demo"
    if not (demo / "ground_truth").exists():
        run_demo(demo, subjects, n_volumes=d["n_volumes"], n_regions=d["n_regions"],
                 tr_s=d["tr_s"], rho_range=tuple(d["rho_range"]), seed=d["seed"],
                 **d.get("generator", {}))  # fmt: skip
    atlas = {"atlas": str(demo / "atlas/atlas-demo_dseg.nii.gz"),
             "labels": str(demo / "atlas/atlas-demo_dseg.tsv")}  # fmt: skip
    options = {**atlas, "task": cfg["input"]["task"], "space": cfg["input"]["space"],
               "tr_s": None, "fs_hz": None, **cfg["extract"]}  # fmt: skip
    dirs = []
    for s in subjects:
        out = base / "extract" / s
        if not (out / "meta.json").exists():
            run_extract("demo", demo, s, out, **options)
        dirs.append(out)
    return subjects, dirs, demo


def planted_states(subjects, demo: Path, out: Path, tr_s: float) -> list[Path]:
    """Each subject's planted Lorenz states ``(T, 3)`` written as an extraction (``--oracle``).
    The rate is given as ``fs_hz`` = 1 / TR, for which the standard decoder's forcing is the
    states themselves (no HRF to deconvolve); λ per second is unchanged."""
    dirs = []
    for s in subjects:
        x = np.load(demo / "ground_truth" / f"{s}_latent.npy")
        meta = {"subject": s, "fs_hz": 1 / tr_s, "region_ids": [0, 1, 2],
                "region_names": ["x", "y", "z"], "empty_regions": []}  # fmt: skip
        save_extraction(ExtractionResult((x - x.mean(0)) / x.std(0, ddof=1), None, meta), out / s)
        dirs.append(out / s)
    return dirs


def targets(subjects, eval_dirs, truths, dissimilarity: pd.DataFrame) -> tuple[list, int, int]:
    """Rows per subject (λ and D_stsp against the truth and the floor), subjects meeting the λ
    target, subjects whose own data is the best-fitted column of their row."""
    rows, n_lambda, n_diag = [], 0, 0
    for s, ev, truth in zip(subjects, eval_dirs, truths, strict=True):
        t = pd.read_csv(Path(ev) / "metrics.tsv", sep="\t")
        floor = json.loads((Path(ev) / "summary.json").read_text())[s]["data_floor"]["dstsp"]
        sel = t[t["selected"].astype(bool)]
        lam = sel["lambda_max_per_s"].to_numpy()
        true = json.loads(Path(truth).read_text())["lambda_max_per_second"]
        med = float(np.median(lam)) if len(lam) else float("nan")
        ok = bool(med > 0 and abs(med / true - 1) <= LAMBDA_TOLERANCE)
        row = dissimilarity.loc[s]
        diag = bool(row.idxmin() == s)
        n_lambda, n_diag = n_lambda + ok, n_diag + diag
        rows.append([
            s, f"{len(sel)}/{len(t)}", f"{(lam > 0).mean():.2f}" if len(lam) else "–",
            C.fmt(med), C.fmt(true), "yes" if ok else "no", C.fmt(sel["dstsp_test"].min()),
            C.med_iqr(sel["dstsp_test"]), C.fmt(floor),
            " ".join(C.fmt(v, 2) for v in row.to_numpy()), "yes" if diag else "no",
        ])  # fmt: skip
    return rows, n_lambda, n_diag


def cohort_reference(subjects, extract_dirs, test_fraction: float) -> tuple[pd.DataFrame, int]:
    """The cohort matrix with each subject's *training data* in place of its models: D_stsp of
    subject t's held-out part against subject s's training part (rows s, columns t), and the
    number of rows whose own column is smallest — what perfect models could reach at best."""
    series = {
        s: np.load(Path(d) / "timeseries.npy") for s, d in zip(subjects, extract_dirs, strict=True)
    }
    n_train = {s: train_length(len(x), test_fraction) for s, x in series.items()}
    matrix = data_reference({s: x[n_train[s]:] for s, x in series.items()},
                            {s: x[:n_train[s]] for s, x in series.items()})  # fmt: skip
    return matrix, own_best(matrix)


def main() -> None:
    args = parse()
    C.setup(args)
    timer = C.Timer()
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    if args.rho_range:
        cfg["demo"]["rho_range"] = args.rho_range
    low, high = cfg["demo"]["rho_range"]
    suffix = ""  # one cached cohort per planted cohort; other lengths are named
    if args.volumes and args.volumes != cfg["demo"]["n_volumes"]:
        cfg["demo"]["n_volumes"], suffix = args.volumes, f"-T{args.volumes}"
    generator = {k: float(v) for k, v in (c.split("=", 1) for c in args.cohort)}
    if generator:  # one cached cohort per set of generator options
        suffix += "".join(f"-{k}{v:g}" for k, v in sorted(generator.items()))
        for key in set(generator) & set(cfg["demo"]):  # demo-section keys (n_regions, tr_s, ...)
            cfg["demo"][key] = type(cfg["demo"][key])(generator.pop(key))
        cfg["demo"]["generator"] = generator
    base = C.OUT / f"demo_recipe_rho{low:g}-{high:g}{suffix.replace('-', '_')}"
    subjects, extract_dirs, demo = extracted_cohort(cfg, base)
    if args.oracle:
        extract_dirs = planted_states(subjects, demo, base / "oracle_extract", cfg["demo"]["tr_s"])
    extra = C.config_overrides(args.set) | ({"decoder": "standard"} if args.oracle else {})
    training = training_params(cfg, extra)
    run = base / args.name
    hierarchical = {**cfg["fit"]["hierarchical"], "enabled": True} if args.hierarchical else None
    fit_dirs = [run / s / "fit" for s in subjects]
    t0 = time.perf_counter()
    run_fit(extract_dirs, fit_dirs, subjects, training,
            n_restarts=args.restarts or cfg["fit"]["n_restarts"], seed=args.seed,
            device="cpu", threads=1, cohort_dir=run / "cohort_fit",
            hierarchical=hierarchical)  # fmt: skip
    fit_s = time.perf_counter() - t0
    eval_dirs = [run / s / "evaluate" for s in subjects]
    options = {k: v for k, v in cfg["evaluate"].items() if k not in ("threads", "test_fraction")}
    for s, ex in zip(subjects, extract_dirs, strict=True):
        run_evaluate(run / s / "fit", ex, run / s / "evaluate", seed=args.seed, **options)
    truths = [demo / "ground_truth" / f"{s}.json" for s in subjects]
    figures = {k: run / "cohort" / f"{k}.png" for k in ("lambda", "dissimilarity", "embedding")}
    run_cohort(subjects, extract_dirs, eval_dirs, {s: "" for s in subjects}, run / "cohort",
               figures, truths=truths, n_show=cfg["report"]["n_show"])  # fmt: skip
    long = pd.read_csv(run / "cohort" / "dissimilarity.tsv", sep="\t")
    dstsp = long.pivot(index="models_of", columns="data_of", values="dstsp").loc[subjects, subjects]
    rows, n_lambda, n_diag = targets(subjects, eval_dirs, truths, dstsp)
    reference, n_ref = cohort_reference(subjects, extract_dirs, cfg["evaluate"]["test_fraction"])
    n = len(subjects)
    body = (
        f"Recipe `{args.name}`: the config's fit section with {extra or 'no changes'}; "
        f"{args.restarts or cfg['fit']['n_restarts']} restarts per subject"
        + (" (one hierarchical cohort model per restart)" if hierarchical else "")
        + ". Fit of all subjects "
        f"in one process: {fit_s:.0f} s (the workflow runs two fit jobs at a time).\n\n"
        + C.markdown_table(
            ["subject", "selected", "frac. chaotic", "λ_max /s median", "planted", "±25 %",
             "D_stsp test best", "D_stsp test selected", "floor", "cohort D_stsp row",
             "own data best"], rows)
        + f"\n\nTargets: λ_max (chaotic, ±25 %) for {n_lambda}/{n} subjects (all needed); "
        f"diagonal-dominant rows {n_diag}/{n} (≥ 3 needed). Reference: the same matrix with each "
        f"subject's training data in place of its models (the best models could do) has its own "
        f"data best in {n_ref}/{n} rows: "
        + " | ".join(" ".join(C.fmt(v, 2) for v in row) for row in reference.to_numpy()) + "."
    )  # fmt: skip
    print(body, flush=True)
    if not args.no_write:
        settings = {
            "recipe": args.name,
            **({"cohort": generator} if generator else {}),
            **extra,
            "restarts": args.restarts or cfg["fit"]["n_restarts"],
            **({"hierarchical": hierarchical} if hierarchical else {}),
        }
        name = args.name + suffix
        C.write_section(f"demo-{name}", f"Demo targets: recipe {name}", body, "cpu",
                        settings, timer())  # fmt: skip


if __name__ == "__main__":
    main()
