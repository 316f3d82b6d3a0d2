"""Shared set-up for the benchmarks: one training step of an ensemble exactly as ``fit_ensemble``
runs it (window sampling, GTF loss, backward, RAdam step), on synthetic LEMON-sized data."""

from __future__ import annotations

import dataclasses
import importlib
import statistics
import time

import numpy as np
import torch

LEMON = dict(n_obs=16, latent_dim=16, hidden_dim=50, seq_len=200, batch_size=16, tr_s=1.4)
# the demo's fit (config.yaml): 8 restarts, M = N = 6 regions, L = 50, windows 16 x 100
DEMO = dict(n_models=8, n_obs=6, latent_dim=6, hidden_dim=50, seq_len=100, batch_size=16)


def _api(package: str) -> dict:
    """The functions one training step uses, from ``package`` (``dsr``, or a renamed older copy of
    it for a baseline in the same process)."""

    def get(module, *names):
        mod = importlib.import_module(f"{package}.{module}")
        return [getattr(mod, n) for n in names]

    api = {}
    for module, names in [
        ("models", ("make_model",)),
        ("models.decoders", ("make_decoder",)),
        ("signal.kernels", ("make_kernel",)),
        ("training.gtf", ("gtf_loss",)),
        ("training.loop", ("TrainingConfig", "resolve_device")),
        ("training.windows", ("prepare_cohort", "sample_windows")),
    ]:
        api.update(zip(names, get(module, *names), strict=True))
    return api


def model_flop(n_models, n_obs, latent_dim, hidden_dim, seq_len, batch_size, h):
    """FLOP of the model arithmetic in one training batch (multiply-add = 2): the forced rollout,
    forward ``4 M L`` and backward ``8 M L`` per sequence step (two and four M x L products), and
    the decoder, forward ``2 h M + 2 N M`` per sequence output and twice that backward."""
    sequences = n_models * batch_size
    rollout = 12 * latent_dim * hidden_dim * seq_len
    decoder = 3 * (2 * h * latent_dim + 2 * n_obs * latent_dim) * (seq_len + 1 - h)
    return sequences * (rollout + decoder)


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
    package: str = "dsr",
    deconv_weight: float = 0.0,
):
    """Return a closure running one training batch for an ensemble of ``n_models`` models on
    ``device`` (``"auto"``: CUDA when available); on CUDA the closure synchronises before it
    returns, so wall-clock timings are honest. ``package``: see ``_api``."""
    api = _api(package)
    make_model, make_decoder, make_kernel = (
        api["make_model"],
        api["make_decoder"],
        api["make_kernel"],
    )
    TrainingConfig, resolve_device = api["TrainingConfig"], api["resolve_device"]
    prepare_cohort, sample_windows, gtf_loss = (
        api["prepare_cohort"],
        api["sample_windows"],
        api["gtf_loss"],
    )
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
    # as TrainState.new: multi-tensor RAdam in this checkout (an older package: its default)
    opt = torch.optim.RAdam(params, lr=1e-3, foreach=True if package == "dsr" else None)
    gen = torch.Generator(dev).manual_seed(seed + 1)

    extra = (deconv_weight,) if deconv_weight else ()  # an older package has no such term

    def step() -> torch.Tensor:
        window = sample_windows(cohort, model_subject, batch_size, seq_len, gen)
        loss = gtf_loss(model, dec, window, alpha, config.noise_sd, gen, *extra)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return loss.detach()

    step.config = dataclasses.replace(config)
    step.flop = model_flop(
        n_models, n_obs, latent_dim, hidden_dim, seq_len, batch_size, len(kernel)
    )
    return step


def time_calls(fn, n: int, warmup: int = 1, clock=time.perf_counter) -> float:
    """Median seconds per call of ``fn`` over ``n`` calls after ``warmup`` calls (``clock``:
    ``time.thread_time`` counts this thread's CPU time only, steadier on shared cores)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)
