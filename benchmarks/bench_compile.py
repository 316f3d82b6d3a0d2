"""torch.compile vs eager for one cshPLRNN forced step (the rollout's per-step body), LEMON size.

    python bench_compile.py [--models 64]

Prints microseconds per step for eager and Inductor-compiled code and the compile time.
"""

from __future__ import annotations

import argparse
import time

import torch


def forced_step(z, w2t, h2, w1t, a, h1, keep, target):
    """ẑ = A z + W1 [relu(W2 z + h2) − relu(W2 z)] + h1, then z̃ = keep·ẑ + target."""
    pre = torch.bmm(z, w2t)
    z_hat = torch.baddbmm(a * z + h1, torch.relu(pre + h2) - torch.relu(pre), w1t)
    return z_hat, z_hat * keep + target


def per_step_us(fn, args, n: int = 400) -> float:
    for _ in range(20):
        fn(*args)
    start = time.perf_counter()
    for _ in range(n):
        fn(*args)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=64)
    e = p.parse_args().models
    torch.set_num_threads(1)
    b, m, hidden = 16, 16, 50
    args = [
        torch.randn(e, b, m),
        torch.randn(e, m, hidden),
        torch.randn(e, 1, hidden),
        torch.randn(e, hidden, m),
        torch.rand(e, 1, m),
        torch.randn(e, 1, m),
        torch.rand(e, b, m),
        torch.randn(e, b, m),
    ]
    eager = per_step_us(forced_step, args)
    start = time.perf_counter()
    compiled = torch.compile(forced_step)
    compiled(*args)
    compile_s = time.perf_counter() - start
    print(
        f"E={e}: eager {eager:.0f} us/step, compiled {per_step_us(compiled, args):.0f} us/step "
        f"(compile {compile_s:.0f} s)"
    )


if __name__ == "__main__":
    main()
