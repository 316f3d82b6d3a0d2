"""Command-line interface: ``dsr fit`` and ``dsr evaluate`` (the workflow runs the rest).

Each subcommand is one entry of ``COMMANDS`` (name -> (add_arguments, run)). Errors of the
``DsrError`` family end the program with their message and exit status 2, never a traceback.
torch, scipy and the model registries are imported only when a command runs or its options are
shown (``dsr --help`` took 3.9 s with them, most of it the torch import).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dsr.atomic import write_json, write_text
from dsr.errors import DsrError, DsrInputError

log = logging.getLogger("dsr")


class _RegistryNames:
    """argparse ``choices`` read from a registry on first use (the registries import torch)."""

    def __init__(self, module: str, name: str) -> None:
        self._where = module, name

    def _names(self) -> list[str]:
        import importlib

        module, name = self._where
        return sorted(getattr(importlib.import_module(module), name))

    def __iter__(self):
        return iter(self._names())

    def __contains__(self, value) -> bool:
        return value in self._names()


def _add_fit_arguments(p: argparse.ArgumentParser) -> None:
    DECODERS = _RegistryNames("dsr.models.decoders", "DECODERS")
    MODELS = _RegistryNames("dsr.models.registry", "MODELS")

    p.add_argument("data", type=Path, help="(T, N) series as .npy or .csv (time on axis 0)")
    unit = p.add_mutually_exclusive_group(required=True)
    unit.add_argument("--tr", type=float, help="repetition time in seconds (fMRI, HRF kernel)")
    unit.add_argument("--fs", type=float, help="sampling rate in Hz (calcium kernel)")
    p.add_argument("--tau", type=float, default=0.7, help="calcium decay time constant, s")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--confounds", type=Path, help="(T, P) nuisance regressors .npy/.csv")
    # a metavar, so that building the parser does not list (and import) the registries
    p.add_argument(
        "--decoder", default="convolved", choices=DECODERS, metavar="NAME", help="%(choices)s"
    )
    p.add_argument(
        "--model", default="cshPLRNN", choices=MODELS, metavar="NAME", help="%(choices)s"
    )
    p.add_argument("--latent-dim", type=int, help="M (default: N)")
    p.add_argument("--hidden-dim", type=int, default=50, help="L")
    p.add_argument("--alpha", type=float, default=0.1, help="GTF strength (0: no forcing)")
    p.add_argument(
        "--gtf",
        default="fixed",
        choices=["fixed", "adaptive"],
        help="fixed alpha, or adaptive GTF (alpha per model from the Jacobians)",
    )
    p.add_argument(
        "--deconv-weight",
        type=float,
        default=0.0,
        help="weight of the neural-level loss, B z against the deconvolved data (0: paper's loss)",
    )
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--batches-per-epoch", type=int, default=50)
    p.add_argument("--seq-len", type=int, default=200, help="training window length")
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.25,
        help="last part of the series held out for 'dsr evaluate' (0.25 = 3:1; 0: none)",
    )
    p.add_argument(
        "--checkpoint-every", type=int, default=25, help="epochs between checkpoints (0: never)"
    )
    p.add_argument("--n-models", type=int, default=8, help="restarts in the ensemble")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--no-zscore", action="store_true", help="do not z-score the columns")


def _load_series(path: Path, zscore: bool) -> np.ndarray:  # noqa: F821 (numpy: imported below)
    """A ``(T, N)`` file, z-scored per column unless ``zscore`` is false."""
    import numpy as np

    from dsr.io import load_array

    x = load_array(path)
    return (x - np.nanmean(x, 0)) / np.nanstd(x, 0, ddof=1) if zscore else x


def _run_fit(args: argparse.Namespace) -> None:
    from dsr.io import load_array
    from dsr.signal.kernels import make_kernel
    from dsr.training.ensemble import save_ensemble
    from dsr.training.loop import TrainingConfig, fit_ensemble

    x = _load_series(args.data, zscore=not args.no_zscore)
    r = load_array(args.confounds) if args.confounds else None
    kernel = (
        make_kernel("hrf", tr_s=args.tr)
        if args.tr is not None
        else make_kernel("calcium", tau_s=args.tau, fs_hz=args.fs)
    )
    config = TrainingConfig(
        model=args.model,
        decoder=args.decoder,
        latent_dim=args.latent_dim,
        hidden_dim=args.hidden_dim,
        alpha=args.alpha,
        gtf=args.gtf,
        deconv_weight=args.deconv_weight,
        epochs=args.epochs,
        batches_per_epoch=args.batches_per_epoch,
        seq_len=args.seq_len,
        checkpoint_every=args.checkpoint_every,
        test_fraction=args.test_fraction,
    )
    fitted = fit_ensemble(
        [x],
        kernel,
        confounds=None if r is None else [r],
        subject_ids=[args.data.stem],
        n_restarts=args.n_models,
        config=config,
        seed=args.seed,
        device=args.device,
        checkpoint_dir=args.out / "checkpoints",
    )
    save_ensemble(fitted, args.out / "model.pt")
    write_fit_outputs(
        fitted,
        args.out,
        extra={
            "data": str(args.data),
            "zscored": not args.no_zscore,
            "tr_s": args.tr,
            "fs_hz": args.fs,
        },
    )
    log.info(
        "wrote %s (%d models, %.1f s on %s)",
        args.out / "model.pt",
        fitted.n_models,
        fitted.wall_time_s,
        fitted.device,
    )


def write_fit_outputs(fitted, out_dir: Path, extra: dict | None = None) -> None:
    """Write ``fit.json`` (config, per-model status and loss, wall time) and ``loss.tsv``."""
    models = [
        {
            "model": e,
            "subject": fitted.subject_ids[s],
            "restart": int(r),
            "status": st,
            "final_loss": float(loss),
        }
        for e, (s, r, st, loss) in enumerate(
            zip(
                fitted.model_subject,
                fitted.model_restart,
                fitted.status,
                fitted.final_loss,
                strict=True,
            )
        )
    ]
    write_json(
        out_dir / "fit.json",
        {
            "config": fitted.config,
            "models": models,
            "wall_time_s": fitted.wall_time_s,
            "device": fitted.device,
            **(extra or {}),
        },
    )
    header = "epoch\t" + "\t".join(f"model_{e}" for e in range(fitted.n_models))
    rows = [
        f"{i + 1}\t" + "\t".join(f"{v:.6g}" for v in row)
        for i, row in enumerate(fitted.loss_history)
    ]
    write_text(out_dir / "loss.tsv", "\n".join([header, *rows]) + "\n")


def _add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="folder written by 'dsr fit' (holds model.pt)")
    p.add_argument(
        "data",
        type=Path,
        help="the (T, N) series the run was fitted to; its last test_fraction (see 'dsr fit "
        "--test-fraction') is scored as held-out data",
    )
    p.add_argument(
        "--test-data",
        type=Path,
        help="a held-out (T', N) continuation of DATA (for runs fitted with --test-fraction 0)",
    )
    p.add_argument("--lyap-steps", type=int, default=10_000, help="Lyapunov iterations")
    p.add_argument("--n-trajectories", type=int, default=100, help="free runs per model")
    p.add_argument(
        "--select-fraction",
        type=float,
        default=0.25,
        help="fraction f of the eligible models that selection keeps: the best 2f by held-out "
        "D_stsp, then the better half of those by D_H (at least two; 1: the paper's counts only)",
    )


def _run_evaluate(args: argparse.Namespace) -> None:
    import json

    from dsr.analysis.evaluation import SubjectData, evaluate_run

    fit_json = args.run_dir / "fit.json"
    if not fit_json.is_file():
        raise DsrInputError(f"{fit_json} not found; point RUN_DIR at a folder written by 'dsr fit'")
    fit = json.loads(fit_json.read_text(encoding="utf-8"))
    zscore = fit.get("zscored", True)
    x = _load_series(args.data, zscore)
    x_test = _load_series(args.test_data, zscore) if args.test_data else None
    subject = fit["models"][0]["subject"]
    result = evaluate_run(
        args.run_dir,
        {subject: SubjectData(x, x_test=x_test)},
        out_dir=args.run_dir,
        tr_s=fit.get("tr_s"),
        fs_hz=fit.get("fs_hz"),
        lyap_steps=args.lyap_steps,
        n_trajectories=args.n_trajectories,
        select_fraction=args.select_fraction,
    )
    log.info(
        "wrote %s and summary.json (%d models)", args.run_dir / "metrics.tsv", len(result.table)
    )


COMMANDS = {
    "fit": (_add_fit_arguments, _run_fit, "fit an ensemble of convSSMs to one (T, N) series"),
    "evaluate": (
        _add_evaluate_arguments,
        _run_evaluate,
        "score a fitted ensemble: D_stsp, D_H, PE_n, Lyapunov spectrum, selection",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsr", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch (default 1, best with one process per core; 2 helps a single "
        "ensemble of >= 32 models on idle cores)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_arguments, run, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    import torch

    torch.set_num_threads(max(1, args.threads))
    try:
        args.run(args)
    except DsrError as exc:
        print(f"dsr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
