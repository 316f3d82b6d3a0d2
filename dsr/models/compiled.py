"""The one gate to the compiled (numba) CPU kernels of a training batch.

``kernels(dtype)`` returns the kernel modules (``rollout``, ``decoder``, ``forcing``, ``noise``) once
they import and compile for ``dtype``, else None: numba missing (no wheel for this platform or
Python) or a kernel failing to compile. Either failure is warned about once, naming what failed
and how to fix it, and training then runs today's torch operations (``DSR_ROLLOUT=torch`` chooses
that path without trying). Compilation is tried on tiny inputs of the same types as the real calls,
so a failure shows here and never in the middle of a batch; with numba's on-disk cache this is
~1 s per process (~20 s the first time on a machine).
"""

from __future__ import annotations

import types
import warnings

import numpy as np
import torch

_STATE: dict = {}
_FIX = (
    "training runs as torch operations instead, several times slower on CPU; "
    "set DSR_ROLLOUT=torch to skip the compiled kernels, or install a working numba "
    "(pip install -U numba llvmlite)"
)


def _modules():
    if "modules" not in _STATE:
        try:
            from dsr.models import decoder_numba, forcing_numba, noise_numba, rollout_numba
        except ImportError as err:  # no wheel for this platform, or a broken install
            warnings.warn(f"numba is not available ({err}); {_FIX}", RuntimeWarning, stacklevel=4)
            _STATE["modules"] = None
        else:
            _STATE["modules"] = types.SimpleNamespace(
                rollout=rollout_numba,
                decoder=decoder_numba,
                forcing=forcing_numba,
                noise=noise_numba,
            )
    return _STATE["modules"]


def kernels(dtype: torch.dtype = torch.float32):
    """The compiled kernel modules for ``dtype`` (float32 / float64), or None (warned once)."""
    mods = _modules()
    if mods is None or dtype not in (torch.float32, torch.float64):
        return None
    if dtype not in _STATE:
        try:
            _probe(mods, dtype)
        except Exception as err:  # a numba typing / lowering / LLVM error on this machine
            warnings.warn(
                f"the compiled CPU kernels (dsr.models.*_numba) failed to compile for {dtype} "
                f"({type(err).__name__}: {str(err).strip().splitlines()[0][:300]}); {_FIX}",
                RuntimeWarning,
                stacklevel=3,
            )
            _STATE[dtype] = False
        else:
            _STATE[dtype] = True
    return mods if _STATE[dtype] else None


def _probe(mods, dtype) -> None:
    """Run every kernel once on tiny inputs (compiles them, or loads them from numba's cache)."""
    g = torch.Generator().manual_seed(0)
    E, B, M, L, T, N = 1, 3, 2, 3, 4, 2

    def rand(*shape):
        return torch.rand(shape, generator=g, dtype=torch.float64).to(dtype)

    A, W1, W2, h1, h2 = rand(E, M), rand(E, M, L), rand(E, L, M), rand(E, M), rand(E, L)
    keep, target, x, P = rand(T, E, B, M), rand(T, E, B, M), rand(T + 1, E, B, N), rand(E, M, N)
    _, keep, target = mods.forcing.forcing(x, P, 0.5, M, False)
    zhat, saved = mods.rollout.forward(rand(E, B, M), keep, target, A, W1, W2, h1, h2, True)
    mods.rollout.backward(rand(*zhat.shape), saved)
    loss, state = mods.decoder.forward(zhat, rand(E, N, M), rand(2), rand(T - 1, E, B, N))
    mods.decoder.backward(state, torch.ones_like(loss))
    a = np.zeros(5, torch.empty(0, dtype=dtype).numpy().dtype)
    mods.noise.add_noise(a, 0.1, (1, 2), np.empty_like(a))
