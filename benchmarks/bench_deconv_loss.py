"""The neural-level loss term (``fit.deconv_weight``) against the paper's loss alone: one training
batch at the demo's size (E = 64, M = N = 6, L = 50, 16 windows of 100), the two interleaved in
one process at one thread, timed by this thread's CPU time (steadier on shared cores).

Usage: python benchmarks/bench_deconv_loss.py
"""

from __future__ import annotations

import statistics
import time

import torch
from _harness import DEMO, make_step, time_calls

REPEATS = 7


def main() -> None:
    torch.set_num_threads(1)
    size = {k: v for k, v in DEMO.items() if k != "n_models"}
    steps = {w: make_step(64, **size, deconv_weight=w) for w in (0.0, 3.0)}
    times = {w: [] for w in steps}
    for _ in range(REPEATS):
        for w, step in steps.items():
            times[w].append(time_calls(step, 5, clock=time.thread_time))
    ms = {w: statistics.median(t) * 1e3 for w, t in times.items()}
    for w, m in ms.items():
        print(f"deconv_weight {w:g}: {m:6.1f} ms per batch")
    print(f"cost of the term: {ms[3.0] / ms[0.0]:.2f}x the paper's loss")


if __name__ == "__main__":
    main()
