"""Shared set-up for the benchmarks: one training step of an ensemble exactly as ``fit_ensemble``
runs it (window sampling, GTF loss, backward, RAdam step), on synthetic LEMON-sized data."""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np
import torch

from dsr.models import make_model
from dsr.models.decoders import make_decoder
from dsr.signal.kernels import make_kernel
from dsr.training.gtf import gtf_loss
from dsr.training.loop import TrainingConfig, resolve_device
from dsr.training.windows import prepare_cohort, sample_windows

LEMON = dict(n_obs=16, latent_dim=16, hidden_dim=50, seq_len=200, batch_size=16, tr_s=1.4)


def make_step(
    n_models: int,
    *,
    n_obs: int = 16,
    latent_dim: int = 16,
    hidden_dim: int = 50,
    seq_len: int = 200,
    batch_size: int = 16,
    tr_s: float = 1.4,
    n_time: int = 652,
    alpha: float = 0.1,
    decoder: str = "convolved",
    seed: int = 0,
    device: str = "cpu",
):
    """Return a closure running one training batch for an ensemble of ``n_models`` models on
    ``device`` (``"auto"``: CUDA when available); on CUDA the closure synchronises before it
    returns, so wall-clock timings are honest."""
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.standard_normal((n_time, n_obs)), 0)
    x = (x - x.mean(0)) / x.std(0)
    kernel = make_kernel("hrf", tr_s=tr_s)
    config = TrainingConfig(
        latent_dim=latent_dim,
        hidden_dim=hidden_dim,
        seq_len=seq_len,
        batch_size=batch_size,
        alpha=alpha,
        decoder=decoder,
    )
    g = torch.Generator().manual_seed(seed)
    dev = resolve_device(device)
    model = make_model(config.model, n_models, latent_dim, hidden_dim, generator=g).to(dev)
    dec = make_decoder(decoder, n_models, n_obs, latent_dim, kernel, 0, generator=g).to(dev)
    cohort = prepare_cohort([x], None, kernel, config, ["s"], dev, torch.float32)
    model_subject = torch.zeros(n_models, dtype=torch.long, device=dev)
    params = [*model.parameters(), *dec.parameters()]
    opt = torch.optim.RAdam(params, lr=1e-3)
    gen = torch.Generator(dev).manual_seed(seed + 1)

    def step() -> torch.Tensor:
        window = sample_windows(cohort, model_subject, batch_size, seq_len, gen)
        loss = gtf_loss(model, dec, window, alpha, config.noise_sd, gen)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return loss.detach()

    step.config = dataclasses.replace(config)
    return step


def time_calls(fn, n: int, warmup: int = 1) -> float:
    """Median seconds per call of ``fn`` over ``n`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
