"""Window length of the leak-free sliding deconvolution of the test part (spec section 3).

The authors deconvolve, for every test sample, a window of the training length that slides with
the test index; dsr does the same with the window capped at ``SLIDING_WINDOW_MAX`` samples
(``sliding_window``), so the cost is linear in the test length. This script measures how far the
held-out PE_n of fitted models moves when the window shrinks from the training length (the
reference) to half of it and to 4 ... 64 kernel lengths.

Data: Lorenz-63 through the HRF (see _common.py), noise σ 0.01; models: cshPLRNN convSSM fitted on
the training part at a reduced budget (the agreement of two deconvolutions does not need a
faithful model, only a model whose forecasts depend on the forcing).

    python validation/sliding_window.py --trs 0.5 0.2 1.4    # ~3 min on 1 core
"""

from __future__ import annotations

import _common as C
import numpy as np

from dsr.analysis.free_runs import analysis_setup
from dsr.analysis.prediction import prediction_error
from dsr.signal.deconvolution import sliding_deconvolve, sliding_window
from dsr.signal.kernels import spm_hrf


def parse():
    p = C.base_parser(__doc__)
    p.add_argument("--trs", type=float, nargs="+", default=[0.5, 1.4])
    p.add_argument("--n-train", type=int, default=5000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--restarts", type=int, default=4)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--pe-steps", type=int, default=20)
    return p.parse_args()


def main() -> None:
    args = parse()
    C.setup(args)
    timer, rows = C.Timer(), []
    for tr in args.trs:
        kernel = spm_hrf(tr)
        h = len(kernel)
        x, _ = C.lorenz_bold(kernel, args.n_train + args.n_test, 0.01, seed=args.seed)
        fitted = C.fit(args, [x[: args.n_train]], kernel, ["lorenz"], "cpu", seq_len=h + 100)
        model, decoder, kernel, floor, _, cr = analysis_setup(fitted)
        x_te = np.where(np.arange(len(x))[:, None] < args.n_train, np.nan, x)
        lengths = {f"{k} h": k * h for k in (4, 8, 16, 32, 64) if k * h < args.n_train} | {
            f"default ({sliding_window(args.n_train)})": sliding_window(args.n_train),
            f"half the training length ({args.n_train // 2})": args.n_train // 2,
            f"training length ({args.n_train})": args.n_train,
        }
        pe = {}
        for name, w in lengths.items():
            t = C.Timer()
            xd = sliding_deconvolve(x, args.n_train, args.pe_steps, cr, kernel, floor, window=w)
            seconds = t()
            pe[name] = prediction_error(model, decoder, x_te, xd, None, None, args.pe_steps)
            pe[name + " s"] = seconds
        ref = pe[f"training length ({args.n_train})"]
        for name in lengths:
            rel = np.abs(pe[name] / ref - 1)
            rows.append([f"{tr} ({h})", name, C.fmt(np.median(ref)), C.fmt(np.median(pe[name])),
                         f"{100 * np.max(rel):.2f} %", f"{pe[name + ' s']:.1f}"])
    body = (
        "PE of each model with the window against the training-length window; the largest relative "
        "difference over the models. Deconvolution time for the whole test part in seconds.\n\n"
        + C.markdown_table(
            ["TR s (h)", "window", "PE median, training-length window", "PE median",
             "max rel. PE difference", "time s"], rows)
    )
    settings = dict(n_train=args.n_train, n_test=args.n_test, restarts=args.restarts,
                    epochs=args.epochs, batches=args.batches, pe_steps=args.pe_steps)
    if not args.no_write:
        C.write_section("sliding_window", "Sliding deconvolution window (evaluation issue)", body,
                        "cpu", settings, timer())
    else:
        print(body)


if __name__ == "__main__":
    main()
