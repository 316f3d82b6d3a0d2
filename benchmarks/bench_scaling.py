"""Item 2: time per training batch vs M, L, N and kernel length (TR 0.2 ... 3 s).

Usage: python benchmarks/bench_scaling.py   (E = 8, few batches per point, 1 thread)
Prints per-sweep values, linear-fit slope and R².
"""

from __future__ import annotations

import numpy as np
import torch
from _harness import make_step, time_calls

from dsr.signal.kernels import make_kernel

BASE = dict(n_obs=16, latent_dim=16, hidden_dim=50, tr_s=1.4)
SWEEPS = {
    "latent_dim": [8, 16, 32, 64],
    "hidden_dim": [25, 50, 100, 200],
    "n_obs": [8, 16, 32, 64],
    "tr_s": [0.2, 0.5, 1.0, 1.4, 2.0, 3.0],
}


def main() -> None:
    torch.set_num_threads(1)
    for key, values in SWEEPS.items():
        xs, ts = [], []
        for v in values:
            kw = {**BASE, key: v}
            if key == "n_obs":
                kw["latent_dim"] = v  # M = N as in the paper
            t = time_calls(make_step(8, n_time=700, **kw), 3)
            x = len(make_kernel("hrf", tr_s=v)) if key == "tr_s" else v
            xs.append(x)
            ts.append(t)
            print(f"{key}={v} (x={x}): {t * 1e3:.1f} ms/batch", flush=True)
        slope, icept = np.polyfit(xs, ts, 1)
        pred = slope * np.array(xs) + icept
        r2 = 1 - np.sum((np.array(ts) - pred) ** 2) / np.sum((np.array(ts) - np.mean(ts)) ** 2)
        print(
            f"{key}: slope {slope * 1e3:.3f} ms/unit, R^2 {r2:.3f}, "
            f"max/min {max(ts) / min(ts):.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
