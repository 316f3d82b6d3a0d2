"""Observation models (decoders) from latent states to data, batched over an ensemble.

Shapes: latent trajectories ``(T, E, B, M)``, data ``(T, E, B, N)``, nuisance regressors
``(T, E, B, P)`` — time on axis 0, then model, then batch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from dsr._validation import check_choice


def _glorot(shape: tuple[int, ...], generator: torch.Generator | None, dtype) -> torch.Tensor:
    fan_out, fan_in = shape[-2], shape[-1]
    bound = math.sqrt(6.0 / (fan_in + fan_out)) if fan_in + fan_out else 0.0
    return ((torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound).to(dtype)


def _block_size(h: int) -> int:
    """Output samples per band block: ~1.5 h (16 ... 256).

    A block of m outputs is one ``(m, m + h - 1)`` GEMM, so the work per output is ``m + h - 1``
    multiply-adds instead of h; blocks of ~1.5 h were fastest forward + backward at E = 64
    (TR 1.4 s: 11 ms vs 24 ms for one dense 256 block; see benchmarks/README.md). The cap bounds
    memory for long series.
    """
    return max(16, min(256, 3 * h // 2))


def _toeplitz(kernel: torch.Tensor, n_out: int) -> torch.Tensor:
    """``(n_out, n_out + h - 1)`` matrix with entry ``[i, j] = k_{i + h - 1 - j}`` (0 off the band)."""
    h = kernel.shape[0]
    lag = (
        torch.arange(n_out, device=kernel.device)[:, None]
        + (h - 1)
        - torch.arange(n_out + h - 1, device=kernel.device)[None]
    )
    inside = (lag >= 0) & (lag < h)
    return torch.where(inside, kernel[lag.clamp(0, h - 1)], kernel.new_zeros(()))


class _BandedConvolution(torch.autograd.Function):
    """Valid causal convolution over axis 0 of ``(T, C)`` as band-block GEMMs (no kernel gradient).

    Forward writes each block's GEMM into its slice of one output; backward accumulates the
    transposed blocks into one gradient buffer (autograd through slices would allocate a full-size
    zero gradient per block).
    """

    @staticmethod
    def forward(ctx, flat, kernel, block):
        h, n_time = kernel.shape[0], flat.shape[0]
        n_out = n_time - h + 1
        band = _toeplitz(kernel, min(block, n_out))
        out = flat.new_empty((n_out, flat.shape[1]))
        for i in range(0, n_out, block):
            m = min(block, n_out - i)
            torch.mm(band[:m, : m + h - 1], flat[i : i + m + h - 1], out=out[i : i + m])
        ctx.save_for_backward(band)
        ctx.block, ctx.n_time = block, n_time
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (band,) = ctx.saved_tensors
        n_out, block = grad.shape[0], ctx.block
        h = ctx.n_time - n_out + 1
        grad_in = grad.new_zeros((ctx.n_time, grad.shape[1]))
        for i in range(0, n_out, block):
            m = min(block, n_out - i)
            grad_in[i : i + m + h - 1].addmm_(band[:m, : m + h - 1].T, grad[i : i + m])
        return grad_in, None, None


def causal_valid_convolution(z: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``y_t = sum_s k_s z_{t-s}`` for the ``T - h + 1`` times with a full kernel history.

    Computed as banded (Toeplitz) matrix products over time, one GEMM per block of ~1.5 h outputs
    (``_BandedConvolution``); differentiable in ``z``, not in the (fixed) kernel. An output is NaN
    exactly where its kernel history holds a non-finite sample (as the direct sum would be), so a
    NaN-padded or partly unknown series keeps every output with a finite history.

    Parameters
    ----------
    z : torch.Tensor, shape (T, ...)
    kernel : torch.Tensor, shape (h,)

    Returns
    -------
    torch.Tensor, shape (T - h + 1, ...); entry i is time ``i + h - 1`` of ``z``.
    """
    h = kernel.shape[0]
    if h == 1:
        return z * kernel[0]
    n_time, rest = z.shape[0], z.shape[1:]
    n_out = n_time - h + 1
    if n_out <= 0:
        return z.new_empty((0, *rest))
    flat = z.reshape(n_time, -1)
    # one sum first: a NaN or ±inf sample makes it non-finite (0.2 ms vs 8 ms for the
    # elementwise check at E = 64); the mask is built only then
    any_bad = not bool(torch.isfinite(flat.sum())) and not bool(torch.isfinite(flat).all())
    bad = ~torch.isfinite(flat) if any_bad else None
    if any_bad:  # a band block's GEMM would spread one NaN (0 · NaN) over the whole block
        flat = flat.masked_fill(bad, 0.0)
    out = _BandedConvolution.apply(flat, kernel.detach().to(z.dtype), _block_size(h))
    if any_bad:  # non-finite exactly where the kernel history holds a non-finite sample
        history = torch.nn.functional.pad(bad.cumsum(0), (0, 0, 1, 0))
        out = out.masked_fill(history[h:] - history[:n_out] > 0, torch.nan)
    return out.reshape(n_out, *rest)


class LinearDecoder(nn.Module):
    """``x_t = B (k * z)_t + J r_t``; the "standard" decoder is the special case ``k = [1]``.

    Parameters ``B`` (E, N, M) and ``J`` (E, N, P), Glorot-uniform; the kernel is a fixed buffer.

    Parameters
    ----------
    n_models, obs_dim, latent_dim, n_confounds : int
        E, N, M, P (P may be 0).
    kernel : array-like, shape (h,)
        Convolution kernel (``[1.0]`` for the standard decoder).
    """

    def __init__(
        self,
        n_models: int,
        obs_dim: int,
        latent_dim: int,
        kernel,
        n_confounds: int = 0,
        *,
        generator: torch.Generator | None = None,
        dtype=torch.float32,
    ) -> None:
        super().__init__()
        E, N, M, P = n_models, obs_dim, latent_dim, n_confounds
        self.obs_dim, self.latent_dim, self.n_confounds = N, M, P
        self.B = nn.Parameter(_glorot((E, N, M), generator, dtype))
        self.J = nn.Parameter(_glorot((E, N, P), generator, dtype))
        self.register_buffer("kernel", torch.as_tensor(np.asarray(kernel), dtype=dtype).flatten())

    @property
    def kernel_length(self) -> int:
        return self.kernel.shape[0]

    @property
    def forced_dims(self) -> int:
        """Number D = min(N, M) of leading latents that the forcing signal pins.

        ``B⁺x`` has no component in the null space of B, so with M > N forcing every latent would
        shrink the M − N unobserved directions by (1 − α) each step; they run free instead."""
        return min(self.obs_dim, self.latent_dim)

    def _nuisance(self, r: torch.Tensor | None) -> torch.Tensor | float:
        if r is None or self.n_confounds == 0:
            return 0.0
        return torch.einsum("teba,ena->tebn", r, self.J)

    def decode(self, z: torch.Tensor, r: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted data ``(T - h + 1, E, B, N)`` from latents ``z`` ``(T, E, B, M)``."""
        y = causal_valid_convolution(z, self.kernel)
        return self.readout(y, None if r is None else r[self.kernel_length - 1 :])

    def readout(self, z: torch.Tensor, r: torch.Tensor | None = None) -> torch.Tensor:
        """``B z_t + J r_t`` without the kernel ``(T, E, B, N)`` from ``z`` ``(T, E, B, M)``: the
        neural level in data units (what ``x^deconv`` estimates)."""
        x = torch.einsum("tebm,enm->tebn", z, self.B)
        nuisance = self._nuisance(r)
        return x if isinstance(nuisance, float) else x + nuisance  # no copy without confounds

    @torch.no_grad()
    def forcing(self, x_deconv: torch.Tensor, r_deconv: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher signal ``d_t = B⁺ (x_t^deconv − J r_t^deconv)`` ``(T, E, B, M)``; NaN stays NaN."""
        nuisance = self._nuisance(r_deconv)
        target = x_deconv if isinstance(nuisance, float) else x_deconv - nuisance
        # a diverged model's non-finite B would make the batched SVD fail for the whole ensemble;
        # zero it (that model's loss is non-finite anyway and it is flagged at the epoch's end)
        B_pinv = torch.linalg.pinv(torch.nan_to_num(self.B, 0.0, 0.0, 0.0))
        return torch.einsum("emn,tebn->tebm", B_pinv, target)

    def initial_state(self, x_deconv0: torch.Tensor, r_deconv0: torch.Tensor | None = None):
        """Initial latent state ``(E, B, M)`` from the first deconvolved sample ``(E, B, N)``."""
        r0 = None if r_deconv0 is None else r_deconv0[None]
        return self.state_from_forcing(self.forcing(x_deconv0[None], r0)[0])

    def state_from_forcing(self, d0: torch.Tensor) -> torch.Tensor:
        """Latent state ``(E, B, M)`` from a forcing sample ``d0`` ``(E, B, D)``: ``d0`` itself."""
        return d0


class ConvolvedDecoder(LinearDecoder):
    """convSSM observation model ``x_t = B sum_s k_s z_{t-s} + J r_t`` (spec section 2)."""


class StandardDecoder(LinearDecoder):
    """Standard SSM ``x_t = B z_t + J r_t``: the kernel is ignored."""

    def __init__(self, n_models, obs_dim, latent_dim, kernel=None, n_confounds=0, **kwargs):
        super().__init__(n_models, obs_dim, latent_dim, [1.0], n_confounds, **kwargs)


class IdentityDecoder(LinearDecoder):
    """The first N latents are the (convolved) observations: ``x_t = (k * z)_{t,1..N} + J r_t``.

    The initial state is ``[x^deconv_1; L x^deconv_1]`` with ``L`` ((M − N) × N) trained; only the
    first N latents are forced.
    """

    def __init__(
        self,
        n_models,
        obs_dim,
        latent_dim,
        kernel,
        n_confounds=0,
        *,
        generator=None,
        dtype=torch.float32,
    ):
        if latent_dim < obs_dim:
            raise ValueError(
                f"identity decoder needs latent_dim >= obs_dim; got {latent_dim} < {obs_dim}"
            )
        super().__init__(
            n_models, obs_dim, latent_dim, kernel, n_confounds, generator=generator, dtype=dtype
        )
        eye = torch.eye(obs_dim, latent_dim, dtype=dtype).expand(n_models, -1, -1).clone()
        del self.B
        self.register_buffer("B", eye)
        self.L = nn.Parameter(_glorot((n_models, latent_dim - obs_dim, obs_dim), generator, dtype))

    @torch.no_grad()
    def forcing(self, x_deconv, r_deconv=None):
        return x_deconv - self._nuisance(r_deconv)

    def state_from_forcing(self, d0):
        """``[d0; L d0]``: the unobserved latents are a trained linear map of the observed ones."""
        return torch.cat([d0, torch.einsum("ekn,ebn->ebk", self.L, d0)], dim=-1)


def decode_mse(decoder: LinearDecoder, z: torch.Tensor, target: torch.Tensor, neural=False):
    """``masked_mse(decoder.decode(z), target)`` (``dsr.training.gtf``, no confounds) as one
    compiled call forward and backward (``dsr.models.decoder_numba``), or None where that path does
    not apply: CUDA, another ``decode``, confounds, other dtypes, ``DSR_ROLLOUT=torch``, no numba.
    ``neural``: of ``decoder.readout(z)`` instead (``B z``, the kernel ``[1]``)."""
    from dsr.models import rollout

    method = "readout" if neural else "decode"
    if getattr(type(decoder), method) is not getattr(LinearDecoder, method):
        return None
    if decoder.n_confounds or target.shape[0] < 1:
        return None
    if not rollout._use_compiled(z, decoder.B, target):
        return None
    kernels = rollout.compiled_kernels(z.dtype)
    kernel = decoder.kernel.new_ones(1) if neural else decoder.kernel
    return kernels.decoder.DecodeMSE.apply(z, decoder.B, kernel, target)


DECODERS = {"convolved": ConvolvedDecoder, "standard": StandardDecoder, "identity": IdentityDecoder}


def make_decoder(
    name: str, n_models: int, obs_dim: int, latent_dim: int, kernel, n_confounds=0, **kwargs
) -> LinearDecoder:
    """Build a decoder by registry name (see ``DECODERS``)."""
    check_choice("decoder", name, DECODERS)
    return DECODERS[name](n_models, obs_dim, latent_dim, kernel, n_confounds, **kwargs)


def decoder_name(decoder: LinearDecoder) -> str:
    """Registry name of a decoder instance."""
    return next(k for k, v in DECODERS.items() if type(decoder) is v)
