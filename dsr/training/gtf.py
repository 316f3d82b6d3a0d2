"""Generalized teacher forcing on one batch of windows (spec section 4): the forced rollout and
the per-model loss. Tensors are ``(T, E, B, ·)``: time, model, batch, feature."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from dsr._allocator import tune_allocator
from dsr.models import rollout
from dsr.models._layout import rows_of
from dsr.models.decoders import LinearDecoder, decode_mse

SPARSE_FORCING_INTERVAL = 16


def _finite_float(a: torch.Tensor) -> torch.Tensor:
    """1.0 where ``a`` is finite, 0.0 where NaN/±inf, in ``a``'s dtype (float-only ops: the bool
    path of ``torch.isfinite(a).to(dtype)`` was measured several times slower on CPU)."""
    return a.mul(0.0).add_(1.0).nan_to_num_(0.0, 0.0, 0.0)


def _all_finite(a: torch.Tensor) -> bool:
    """Whether every entry of ``a`` is finite: one sum (a NaN or ±inf entry makes it non-finite),
    the elementwise check only when the sum is not finite (measured 0.2 vs 8 ms at E = 64)."""
    return bool(torch.isfinite(a.sum())) or bool(torch.isfinite(a).all())


def _forcing_weights(d: torch.Tensor, alpha, sparse: bool, finite: bool = False) -> torch.Tensor:
    """GTF weight per time and latent ``(T, E, B, D)``: alpha (a float, or per model (E,)) where
    d is finite, 0 elsewhere (``finite``: d is known to be finite everywhere)."""
    scale = alpha if isinstance(alpha, float) else alpha[:, None, None]
    if not finite:
        w = _finite_float(d).mul_(scale)
    elif isinstance(scale, float):
        w = torch.full_like(d, scale)  # alpha in d's dtype (as_tensor would round it to float32)
    else:
        w = torch.empty_like(d).copy_(scale)
    if sparse:  # alpha = 1 with N < M: force only every SPARSE_FORCING_INTERVAL steps
        keep = torch.arange(d.shape[0], device=d.device) % SPARSE_FORCING_INTERVAL == 0
        w = w * keep.to(d.dtype)[:, None, None, None]
    return w


def gtf_rollout(model, decoder, x_deconv, r_deconv, alpha) -> torch.Tensor:
    """Teacher-forced rollout over a window; returns the un-forced predictions ``(T-1, E, B, M)``.

    ``ẑ_t = F(z̃_{t-1})``, ``z̃_t = (1 − α) ẑ_t + α d_t`` on the first D latents where d_t is
    finite, ``z̃_1`` = the decoder's initial state from ``x^deconv_1`` (no gradient through d).
    ``alpha``: a float, or one value per model (E,) (adaptive GTF). On CPU the forcing of a
    ``LinearDecoder`` without confounds is one compiled pass (``dsr.models.forcing_numba``).
    """
    sparse = isinstance(alpha, float) and alpha == 1.0 and decoder.obs_dim < model.latent_dim
    kernels = _compiled_forcing(decoder, x_deconv, r_deconv)
    if kernels is not None:
        P = torch.linalg.pinv(torch.nan_to_num(decoder.B.detach(), 0.0, 0.0, 0.0))
        d0, keep, target = kernels.forcing.forcing(x_deconv, P, alpha, decoder.forced_dims, sparse)
        return model.forced_rollout(decoder.state_from_forcing(d0), keep, target)
    d = decoder.forcing(x_deconv, r_deconv)
    z = decoder.state_from_forcing(d[0])  # = decoder.initial_state(x_deconv[0], r_deconv[0])
    d = d[..., : decoder.forced_dims]
    finite = _all_finite(d)  # then the masks are constant (same values, fewer passes)
    weight = _forcing_weights(d, alpha, sparse, finite)[1:]  # sparse forcing keeps its phase
    source = d[1:] if finite else torch.nan_to_num(d[1:], 0.0, 0.0, 0.0)
    target = torch.mul(source, weight)  # α d_t, 0 where not forced
    return model.forced_rollout(z, torch.sub(1.0, weight), target)


def _compiled_forcing(decoder, x_deconv, r_deconv):
    """The compiled kernels when the forcing is ``LinearDecoder.forcing`` without confounds on
    CPU (``DSR_ROLLOUT=torch``: never), else None."""
    if type(decoder).forcing is not LinearDecoder.forcing or decoder.n_confounds:
        return None
    if not rollout._use_compiled(x_deconv, decoder.B):
        return None
    return rollout.compiled_kernels(x_deconv.dtype)


AGTF_EVERY = 5  # batches between updates of the adaptive forcing strength
AGTF_GAMMA = 0.999  # decay of alpha towards a lower alpha*


@torch.no_grad()
def adaptive_alpha(model, decoder, window, alpha: torch.Tensor) -> torch.Tensor:
    """One update of the adaptive GTF strength (Hess et al., ICML 2023), per model (E,).

    Along the forcing signals ``d_t`` of the batch's windows, ``𝒩_b`` is the geometric mean of
    the Jacobian's spectral norm ``‖J(d_t)‖₂`` of sequence b, ``𝒩`` its maximum over sequences and
    ``α* = max(0, 1 − 1/𝒩)``: the least forcing that keeps the forced map contracting. A larger
    ``α*`` replaces ``alpha`` at once; a smaller one is approached as
    ``γ α + (1 − γ) α*`` (γ = ``AGTF_GAMMA``). A model whose Jacobian is not finite (it is
    diverging; the epoch's end flags and restores it) gets ``α* = 1`` instead of stopping the
    ensemble.
    """
    _, x_deconv, _, r_deconv = window
    d = decoder.forcing(x_deconv, r_deconv)  # (T, E, B, D)
    n_time, n_models, batch = d.shape[:3]
    z = decoder.state_from_forcing(d.permute(1, 0, 2, 3).reshape(n_models, n_time * batch, -1))
    finite = torch.isfinite(z).all(-1)
    jac = model.jacobian(torch.nan_to_num(z))
    broken = ~torch.isfinite(jac).all((-2, -1))  # a model diverging inside the epoch (E, T·B)
    jac = jac.masked_fill(broken[..., None, None], 0.0)
    # ‖J‖₂² is the largest eigenvalue of JᵀJ: the symmetric eigensolver is exact and 1.6x faster
    # than the SVD on CPU for these small matrices (benchmarks/bench_agtf.py)
    norms = torch.linalg.eigvalsh(jac.transpose(-1, -2) @ jac)[..., -1].clamp_min(0.0).sqrt()
    log_norm = torch.where(finite, norms.clamp_min(1e-30).log(), 0.0).view(n_models, n_time, batch)
    count = finite.view(n_models, n_time, batch).sum(1).clamp_min(1)
    growth = (log_norm.sum(1) / count).amax(1).exp()  # 𝒩 (E,)
    growth = growth.masked_fill(broken.any(1), torch.inf)  # full forcing until it is flagged
    target = (1 - 1 / growth).clamp(min=0.0).to(alpha.dtype)
    return torch.where(target > alpha, target, AGTF_GAMMA * alpha + (1 - AGTF_GAMMA) * target)


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-model MSE over time, batch and dims, ignoring NaN targets: ``(T, E, B, N) -> (E,)``.

    A non-finite prediction at a valid target makes that model's loss non-finite (divergence).
    """
    return _MaskedMSE.apply(pred, target)


class _MaskedMSE(torch.autograd.Function):
    """``masked_mse`` with a one-pass backward, ``2 (pred − target) ⊙ valid / count``.

    Autograd through the masked expression and the sum over dims (0, 2, 3) took 21 ms forward +
    backward at E = 64 (LEMON size), this 11 ms (benchmarks/README.md).
    """

    @staticmethod
    def forward(ctx, pred, target):
        if _all_finite(target):  # every sample counts (same values as the masked path)
            diff = torch.sub(pred, target)
            n = target.shape[0] * target.shape[2] * target.shape[3]
            count = target.new_full((target.shape[1],), float(max(n, 1)))
        else:
            valid = _finite_float(target)
            diff = torch.sub(pred, torch.nan_to_num(target, 0.0, 0.0, 0.0)).mul_(valid)
            count = valid.sum(dim=(0, 2, 3)).clamp_(min=1)
        ctx.save_for_backward(diff, count)
        return torch.linalg.vector_norm(diff, dim=(0, 2, 3)).square_().div_(count)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        diff, count = ctx.saved_tensors
        return diff * (2 * grad / count)[:, None, None], None


def gtf_loss(
    model, decoder, window, alpha, noise_sd: float, generator, deconv_weight: float = 0.0
) -> torch.Tensor:
    """Per-model GTF training loss ``(E,)`` on one batch of windows (noise-augmented).

    ``deconv_weight`` w > 0 adds ``w · MSE(B ẑ_t + J r^deconv_t, x^deconv_t)``: the un-forced
    predictions read out at the neural level (no kernel) against the deconvolved data, over the
    window's finite deconvolved samples (our addition to the spec; 0 = the paper's loss).
    """
    tune_allocator()
    x, x_deconv, r, r_deconv = window
    neural_target = x_deconv[1:]  # before the augmentation noise
    x = x[decoder.kernel_length :]  # the only samples the loss sees
    if noise_sd > 0:  # noise drawn only where it is used, added in place into the noise buffer
        x = _add_noise(x, noise_sd, generator)
        x_deconv = _add_noise(x_deconv, noise_sd, generator)
    z_hat = gtf_rollout(model, decoder, x_deconv, r_deconv, alpha)
    loss = _read_mse(decoder, z_hat, r, x, neural=False)
    if deconv_weight > 0:
        loss = loss + deconv_weight * _read_mse(decoder, z_hat, r_deconv, neural_target, True)
    return loss


def _read_mse(decoder, z_hat, r, target, neural: bool) -> torch.Tensor:
    """Per-model masked MSE of ``decoder.decode(ẑ, r)`` (``neural``: of ``decoder.readout``, no
    kernel) against ``target``; ``r`` is the window's regressors, aligned with ``ẑ`` from [1:].
    Compiled on CPU without confounds (``decode_mse``, same values), tensor ops elsewhere."""
    loss = decode_mse(decoder, z_hat, target, neural) if r is None else None
    if loss is None:
        read = decoder.readout if neural else decoder.decode
        loss = masked_mse(read(z_hat, None if r is None else r[1:]), target)
    return loss


def _add_noise(a: torch.Tensor, sd: float, generator) -> torch.Tensor:
    """``a + sd · z``, z i.i.d. N(0, 1), as a new tensor.

    On CPU with the compiled kernels: the counter-based draw of ``dsr.models.noise`` (Philox with
    a key from ``generator``, ~1.1 ns per value, the same values for any thread count); elsewhere
    (CUDA, ``DSR_ROLLOUT=torch``, no kernels) torch's sampler (``_standard_normal``), as before.
    """
    kernels = rollout.compiled_kernels(a.dtype) if rollout._use_compiled(a) else None
    if kernels is None:
        noise = _standard_normal(a, generator)
        return torch.add(a, noise, alpha=sd, out=noise)
    # the key from the first of as many draws as torch's sampler takes, so the generator (and
    # every later window or subject draw) advances exactly as on the torch path
    seed = int(torch.randint(0, 2**62, (NOISE_STREAMS,), generator=generator)[0])
    key = (seed & 0xFFFFFFFF, seed >> 32)
    T, E = a.shape[:2]
    src, st, se = rows_of(a.reshape(T, E, 1, -1))
    out = np.empty((E, T, *a.shape[2:]), src.dtype)  # model-major: the kernels read it per model
    R = out[0, 0].size
    kernels.noise.add_noise_rows(src, st, se, T, E, R, sd, key, out.reshape(-1), R, T * R)
    return torch.from_numpy(out).transpose(0, 1)


NOISE_STREAMS = 8  # torch's sampler on CPU: streams per draw (fixed: threads change no value)


@functools.cache
def _noise_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="dsr-noise")


def _standard_normal(like: torch.Tensor, generator) -> torch.Tensor:
    """N(0, 1) draws shaped like ``like``, from ``generator`` with torch's sampler (the path
    without the compiled kernels, and CUDA).

    On CPU the draw is cut into ``NOISE_STREAMS`` slices, each filled by its own generator seeded
    from ``generator``, in parallel over torch's thread count: torch's CPU normal sampler is
    single-threaded (~3–4 ns per value). The values depend on the seed only, never on the threads.
    """
    if like.device.type != "cpu":
        return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    out = torch.empty_like(like, memory_format=torch.contiguous_format)
    seeds = torch.randint(0, 2**62, (NOISE_STREAMS,), generator=generator).tolist()
    slices = out.view(-1).tensor_split(NOISE_STREAMS)

    def fill(i: int) -> None:
        slices[i].normal_(generator=torch.Generator().manual_seed(seeds[i]))

    workers = min(torch.get_num_threads(), NOISE_STREAMS)
    if workers == 1:
        for i in range(NOISE_STREAMS):
            fill(i)
    else:
        list(_noise_pool(workers).map(fill, range(NOISE_STREAMS)))
    return out
