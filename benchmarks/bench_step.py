"""Item 3: one model's training step, fused rollout vs the naive per-time-step autograd loop.

Usage: python benchmarks/bench_step.py [--repeats 3]   (LEMON size, E = 1, 1 thread)
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _harness import make_step, time_calls

import dsr.models.plrnn as models


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-models", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    fused_set = models._FUSED
    ratios = []
    for r in range(args.repeats):
        models._FUSED = fused_set
        t_fused = time_calls(make_step(args.n_models), 10)
        models._FUSED = ()  # forced_rollout falls back to autograd through model.step
        t_naive = time_calls(make_step(args.n_models), 10)
        ratios.append(t_naive / t_fused)
        print(
            f"repeat {r}: fused {t_fused * 1e3:.1f} ms, naive {t_naive * 1e3:.1f} ms, "
            f"speed-up {ratios[-1]:.2f}x",
            flush=True,
        )
    models._FUSED = fused_set
    print(f"median speed-up: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
