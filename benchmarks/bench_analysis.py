"""Item 4: Lyapunov spectrum and metric throughput for E = 64 ... 1024 models (M = 16, L = 50).

Usage: python benchmarks/bench_analysis.py [--sizes 64 256 1024] [--lyap-steps 10000]
       [--qr-compare-steps 1000]

Prints seconds for: a Lyapunov spectrum (``--lyap-steps`` steps, 4 initial conditions, float64,
QR every step) of E models, with the default orthonormalisation (CholeskyQR with checked fallback)
and, interleaved on ``--qr-compare-steps`` steps, with ``torch.linalg.qr``; D_stsp (bins on 3 dims,
GMM on 16 dims), D_H and PE_10 of E models scored against one T = 1000 data set. 1 thread.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import dsr.analysis.lyapunov as dyn
from dsr.analysis.metrics import power_spectrum_error, state_space_divergence
from dsr.analysis.prediction import prediction_error
from dsr.models import make_model
from dsr.models.decoders import make_decoder
from dsr.signal.kernels import make_kernel


def _householder(q):
    q, r = torch.linalg.qr(q)
    return q, torch.diagonal(r, dim1=-2, dim2=-1).abs()


def _seconds(fn, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--lyap-steps", type=int, default=10_000)
    ap.add_argument("--qr-compare-steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    M, L, N, T = 16, 50, 16, 1000
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal((T, N)), 0)
    x = (x - x.mean(0)) / x.std(0)
    fast = dyn._orthonormalize
    print(f"# torch {torch.__version__}, 1 thread, M={M}, L={L}, N={N}, T={T}")
    print("E\tlyap_s\tqr_ratio\tdstsp_bins_s\tdstsp_gmm_s\tdH_s\tPE10_s")
    for E in args.sizes:
        model = make_model("cshPLRNN", E, M, L, generator=torch.Generator().manual_seed(0))
        ratios = []
        for _ in range(args.repeats):  # interleaved: linalg.qr vs default, same process
            times = {}
            for name, fn in (("qr", _householder), ("fast", fast)):
                dyn._orthonormalize = fn
                times[name] = _seconds(
                    dyn.lyapunov_spectrum, model, n_steps=args.qr_compare_steps, transient=0
                )
            ratios.append(times["qr"] / times["fast"])
        dyn._orthonormalize = fast
        t_lyap = _seconds(dyn.lyapunov_spectrum, model, n_steps=args.lyap_steps, transient=0)
        x_gen = x[:, None, :] + 0.3 * rng.standard_normal((T, E, N))
        t_bins = _seconds(state_space_divergence, x[:, :3], x_gen[..., :3], method="bins")
        t_gmm = _seconds(state_space_divergence, x, x_gen, method="gmm")
        t_dh = _seconds(power_spectrum_error, x, x_gen)
        dec = make_decoder("convolved", E, N, M, make_kernel("hrf", tr_s=1.4))
        t_pe = _seconds(prediction_error, model, dec, x, x, n_steps=10)
        print(
            f"{E}\t{t_lyap:.2f}\t{statistics.median(ratios):.2f}\t{t_bins:.2f}\t{t_gmm:.2f}"
            f"\t{t_dh:.2f}\t{t_pe:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
