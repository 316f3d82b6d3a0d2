"""Item 1: E models trained together vs the same models one after another (LEMON size).

Usage: python benchmarks/bench_ensemble.py [--threads 1 2] [--sizes 1 4 16 64 256 1024]
       [--repeats 3] [--device cpu|cuda|auto]

For each thread count, prints the speed-up of E = 64 together over 64 sequential E = 1 fits,
``64 * t(E=1) / t(E=64)``, measured in one process, interleaved, ``--repeats`` times (median of
the ratios); then, with the first thread count, the median seconds per training batch and
models·batches/s per ensemble size E.
"""

from __future__ import annotations

import argparse
import platform
import statistics

import torch
from _harness import LEMON, make_step, time_calls


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64, 256, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    args = ap.parse_args()
    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"threads={args.threads}, device={args.device}, LEMON {LEMON}"
    )
    steps = {e: make_step(e, device=args.device) for e in (1, 64)}
    for threads in args.threads:
        torch.set_num_threads(threads)
        ratios = []
        for r in range(args.repeats):
            t1 = time_calls(steps[1], 5 * args.batches)
            t64 = time_calls(steps[64], args.batches)
            ratios.append(64 * t1 / t64)
            print(
                f"threads {threads}, repeat {r}: E=1 {t1 * 1e3:.1f} ms/batch, "
                f"E=64 {t64 * 1e3:.1f} ms/batch, together/sequential = {ratios[-1]:.1f}x",
                flush=True,
            )
        print(
            f"threads {threads}: median speed-up E=64 together vs sequential: "
            f"{statistics.median(ratios):.1f}x"
        )
    torch.set_num_threads(args.threads[0])
    print("E\tms_per_batch\tmodel_batches_per_s")
    for E in args.sizes:
        step = steps.get(E) or make_step(E, device=args.device)
        t = time_calls(step, args.batches if E <= 256 else 1)
        print(f"{E}\t{t * 1e3:.1f}\t{E / t:.1f}", flush=True)
        steps.pop(E, None)


if __name__ == "__main__":
    main()
