"""Process-wide CPU allocator setting for dsr's large per-batch tensors (glibc only)."""

from __future__ import annotations

import ctypes
import os
import sys

_ALLOCATOR_TUNED = False


def tune_allocator() -> None:
    """glibc only, once per process: serve large CPU tensors from the heap and keep freed memory
    for reuse (``mallopt``: no ``mmap`` for big blocks, no trimming).

    By default glibc maps every block above a few MB fresh with ``mmap`` and unmaps it on free, so
    each training batch page-faults all of its (T, E, B, ·) tensors in again on first touch; at
    E = 64 (LEMON size) that was ~45 % of the step (485 -> 259 ms/batch measured, see
    benchmarks/README.md). Peak memory is unchanged; freed memory stays with the process.
    Set ``DSR_NO_MALLOC_TUNING=1`` to skip.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return
    _ALLOCATOR_TUNED = True
    if not sys.platform.startswith("linux") or os.environ.get("DSR_NO_MALLOC_TUNING"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc malloc.h
        libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
        libc.mallopt(M_MMAP_MAX, 0)
    except (OSError, AttributeError):  # not glibc (musl, ...): keep the defaults
        pass
