"""Fixed-width vector products for the compiled rollout (numba intrinsics emitting LLVM vectors).

numba cannot tell LLVM that two arrays do not overlap, so short fixed-length loops that read one
array and write another stay scalar (measured: ~2 GFLOP/s for the rollout). ``rows(R, ...)``
computes R rows of ``LANES`` consecutive elements at once, each a sum of products over k, with the
R running sums in vector registers and the shared operand loaded once per k. Offsets are in
elements of flat C-contiguous arrays; nothing is bounds-checked.
"""

from __future__ import annotations

import functools

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 16  # one AVX-512 float32 vector (two float64, two AVX2)
FLAGS = dict(cache=True, nogil=True, fastmath={"contract", "reassoc", "nsz"}, error_model="numpy")


def _codegen(n_rows: int, accumulate: bool, vector_a: bool):
    def codegen(context, builder, signature, args):
        tys = signature.args
        out, c, x, a = (
            context.make_array(tys[i])(context, builder, args[i]).data for i in (0, 3, 5, 8)
        )
        ints = [
            context.cast(builder, args[i], tys[i], types.intp) for i in (1, 2, 4, 6, 7, 9, 10, 11)
        ]
        oo, os_, co, xo, xs, ao, ar, ak = ints
        n = context.cast(builder, args[12], tys[12], types.intp)
        ety = context.get_value_type(tys[0].dtype)
        vty = ir.VectorType(ety, LANES)
        align = context.get_abi_sizeof(ety)
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty] * 3), f"llvm.fma.v{LANES}f{8 * align}"
        )

        def const(i):
            return ir.Constant(ints[0].type, i)

        def vload(data, offset):
            ptr = builder.bitcast(builder.gep(data, [offset]), vty.as_pointer())
            return builder.load(ptr, align=align, typ=vty)

        def splat(value):
            vec = ir.Constant(vty, None)
            for j in range(LANES):
                vec = builder.insert_element(vec, value, ir.Constant(ir.IntType(32), j))
            return vec

        def out_ptr(r):
            at = builder.add(oo, builder.mul(const(r), os_))
            return builder.bitcast(builder.gep(out, [at]), vty.as_pointer())

        accs = []
        for r in range(n_rows):
            start = splat(builder.load(builder.gep(c, [builder.add(co, const(r))])))
            if accumulate:
                start = builder.fadd(start, builder.load(out_ptr(r), align=align, typ=vty))
            accs.append(cgutils.alloca_once_value(builder, start))
        with cgutils.for_range(builder, n) as loop:
            k = loop.index
            xv = vload(x, builder.add(xo, builder.mul(k, xs)))
            a_at = builder.add(ao, builder.mul(k, ak))
            for r, acc in enumerate(accs):
                at = builder.add(a_at, builder.mul(const(r), ar))
                av = vload(a, at) if vector_a else splat(builder.load(builder.gep(a, [at])))
                builder.store(builder.call(fma, [av, xv, builder.load(acc)]), acc)
        for r, acc in enumerate(accs):
            builder.store(builder.load(acc), out_ptr(r), align=align)
        return context.get_dummy_value()

    return codegen


@functools.cache
def rows(n_rows: int, accumulate: bool = False, vector_a: bool = False):
    """Intrinsic ``f(out, oo, os, c, co, x, xo, xs, a, ao, ar, ak, n)``: for r < n_rows,

    ``out[oo + r·os : … + LANES] (+)= c[co + r] + Σ_{k<n} a[ao + r·ar + k·ak] · x[xo + k·xs : … + LANES]``
    (``c`` must hold ``co + n_rows`` values)

    (``vector_a``: the ``a`` term is the ``LANES`` elements from ``ao + r·ar + k·ak`` instead of one
    broadcast value; ``accumulate``: add to ``out`` instead of overwriting it)."""

    def f(typingctx, out, oo, os_, c, co, x, xo, xs, a, ao, ar, ak, n):
        sig = types.void(out, oo, os_, c, co, x, xo, xs, a, ao, ar, ak, n)
        return sig, _codegen(n_rows, accumulate, vector_a)

    return intrinsic(f)


# R rows per vector product (R running sums in registers): 8 while they last, then 4, 2, 1
_S8, _S4, _S2, _S1 = (rows(r) for r in (8, 4, 2, 1))
_A8, _A4, _A2, _A1 = (rows(r, True, True) for r in (8, 4, 2, 1))


@njit(**FLAGS)
def products(n_out, out, oo, c, co, x, xo, xs, a, ao, ar, ak, n):
    """``out[oo + r·LANES] = c[co + r] + Σ_k a[ao + r·ar + k·ak] · x[xo + k·xs]`` for r < n_out."""
    r = 0
    while r + 8 <= n_out:
        _S8(out, oo + r * LANES, LANES, c, co + r, x, xo, xs, a, ao + r * ar, ar, ak, n)
        r += 8
    if r + 4 <= n_out:
        _S4(out, oo + r * LANES, LANES, c, co + r, x, xo, xs, a, ao + r * ar, ar, ak, n)
        r += 4
    if r + 2 <= n_out:
        _S2(out, oo + r * LANES, LANES, c, co + r, x, xo, xs, a, ao + r * ar, ar, ak, n)
        r += 2
    if r < n_out:
        _S1(out, oo + r * LANES, LANES, c, co + r, x, xo, xs, a, ao + r * ar, ar, ak, n)


@njit(**FLAGS)
def lane_products(n_out, out, oo, os, zeros, x, xo, xs, a, ao, ar, ak, n):
    """``out[oo + r·os : … + LANES] += Σ_k a[ao + r·ar + k·ak : … + LANES] ⊙ x[xo + k·xs : …]``
    for r < n_out (one sum per lane: the weight gradients before the sum over windows)."""
    r = 0
    while r + 8 <= n_out:
        _A8(out, oo + r * os, os, zeros, 0, x, xo, xs, a, ao + r * ar, ar, ak, n)
        r += 8
    if r + 4 <= n_out:
        _A4(out, oo + r * os, os, zeros, 0, x, xo, xs, a, ao + r * ar, ar, ak, n)
        r += 4
    if r + 2 <= n_out:
        _A2(out, oo + r * os, os, zeros, 0, x, xo, xs, a, ao + r * ar, ar, ak, n)
        r += 2
    if r < n_out:
        _A1(out, oo + r * os, os, zeros, 0, x, xo, xs, a, ao + r * ar, ar, ak, n)
