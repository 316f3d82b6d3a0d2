"""The batch-innermost layout shared by the compiled kernels of a training batch.

A ``(T, E, B, F)`` tensor (time, model, window, feature) is stored as an ``(E, T, F, Bp)`` array,
``Bp`` = B rounded up to a multiple of ``LANES``: each (model, time, feature) row holds the windows
side by side, so a chunk of ``LANES`` windows is one vector. The kernels return their
``(T, E, B, F)`` results as views of such arrays and take such views without a copy; any other
tensor is copied into the layout once (``lanes_array``). Padding windows (b ≥ B) are written by
the kernels (predictions and gradients: zeros) and never trusted in their inputs. The data windows
(``x``, ``x^deconv``) are read as rows of ``B·F`` values in time- or model-major order
(``rows_of``): the compiled noise writes them model-major, so a model's rows follow each other.
"""

from __future__ import annotations

import numpy as np
import torch

LANES = 16  # windows per vector: one AVX-512 float32 register (dsr.models._simd)


def padded(batch: int) -> int:
    """``batch`` rounded up to a multiple of ``LANES``."""
    return -(-batch // LANES) * LANES


def _is_view(t: torch.Tensor, Bp: int) -> bool:
    T, E, _, F = t.shape
    want = (F * Bp, T * F * Bp, 1, Bp)
    if any(n > 1 and s != w for n, s, w in zip(t.shape, t.stride(), want, strict=True)):
        return False
    end = (t.storage_offset() + E * T * F * Bp) * t.element_size()
    return t.untyped_storage().nbytes() >= end


def lanes_array(t: torch.Tensor) -> np.ndarray:
    """The ``(E, T, F, Bp)`` array of a ``(T, E, B, F)`` CPU tensor: its own memory when it is a
    view of one (no copy), else a zero-padded copy."""
    T, E, B, F = t.shape
    Bp = padded(B)
    t = t.detach()
    if _is_view(t, Bp):
        return torch.as_strided(t, (E, T, F, Bp), (T * F * Bp, F * Bp, Bp, 1)).numpy()
    out = t.new_zeros((E, T, F, Bp))
    out[..., :B].copy_(t.permute(1, 0, 3, 2))
    return out.numpy()


def lanes_tensor(a: np.ndarray, batch: int) -> torch.Tensor:
    """The ``(T, E, batch, F)`` view of an ``(E, T, F, Bp)`` array."""
    return torch.from_numpy(a).permute(1, 0, 3, 2)[:, :, :batch]


def rows_of(t: torch.Tensor) -> tuple[np.ndarray, int, int]:
    """A ``(T, E, B, F)`` CPU tensor as ``(flat, st, se)``: its memory as a flat array and the
    element strides of time and model, so element ``[t, e, b, f]`` is ``flat[t·st + e·se + b·F + f]``
    (no copy for dense layouts with rows of ``B·F``, time- or model-major; others are copied)."""
    T, E, B, F = t.shape
    t = t.detach()
    st, se, sb, sf = t.stride()
    span = 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride(), strict=True))
    if not ((F == 1 or sf == 1) and (B == 1 or sb == F) and span == t.numel() >= 1):
        t = t.contiguous()
        st, se = E * B * F, B * F
    return t.as_strided((t.numel(),), (1,)).numpy(), st, se
