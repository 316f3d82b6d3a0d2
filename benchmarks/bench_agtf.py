"""Adaptive GTF's update vs one training batch, demo size (E = 64, M = N = 6, L = 50, 16 x 100).

Times, interleaved in one process: one training batch; one ``adaptive_alpha`` call; and its
spectral norms of the 102 400 Jacobians two ways, the SVD (``matrix_norm(ord=2)``) and the
largest eigenvalue of JᵀJ (``eigvalsh``, what ``adaptive_alpha`` uses), with their largest
relative difference. aGTF calls the update every 5 batches.

Usage: python benchmarks/bench_agtf.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _harness import DEMO, make_step, time_calls

from dsr.models import make_decoder, make_model
from dsr.signal.kernels import spm_hrf
from dsr.training.gtf import AGTF_EVERY, adaptive_alpha


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n-models", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    E, N, M, L = args.n_models, DEMO["n_obs"], DEMO["latent_dim"], DEMO["hidden_dim"]
    T, B = DEMO["seq_len"], DEMO["batch_size"]
    size = {k: v for k, v in DEMO.items() if k != "n_models"}
    step = make_step(E, **size)
    g = torch.Generator().manual_seed(0)
    model = make_model("cshPLRNN", E, M, L, generator=g)
    dec = make_decoder("convolved", E, N, M, spm_hrf(1.4), 0, generator=g)
    x = torch.randn(T, E, B, N, generator=g)
    window, alpha = (x, x, None, None), torch.full((E,), 0.1)
    z = torch.randn(E, T * B, M, generator=g)
    jac = model.jacobian(z).detach()
    svd = torch.linalg.matrix_norm(jac, ord=2)
    eig = torch.linalg.eigvalsh(jac.transpose(-1, -2) @ jac)[..., -1].sqrt()
    calls = {
        "training batch": step,
        "adaptive_alpha": lambda: adaptive_alpha(model, dec, window, alpha),
        "Jacobians": lambda: model.jacobian(z),
        "norms by SVD": lambda: torch.linalg.matrix_norm(jac, ord=2),
        "norms by eigvalsh(JᵀJ)": lambda: torch.linalg.eigvalsh(jac.transpose(-1, -2) @ jac),
    }
    times = {k: [] for k in calls}
    for _ in range(args.repeats):
        for name, call in calls.items():
            times[name].append(time_calls(call, 3))
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    for name, ms in med.items():
        print(f"{name:24s} {ms:8.1f} ms")
    batch = med["training batch"]
    print(f"SVD / eigvalsh: {med['norms by SVD'] / med['norms by eigvalsh(JᵀJ)']:.2f}x; largest "
          f"relative difference {((eig - svd).abs() / svd).max().item():.1e}")  # fmt: skip
    print(f"adaptive_alpha = {med['adaptive_alpha'] / batch:.1f} batches; aGTF fit / fixed-α fit "
          f"≈ {1 + med['adaptive_alpha'] / batch / AGTF_EVERY:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
