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

from dsr.models._layout import LANES  # 16: one AVX-512 float32 vector (two float64, two AVX2)

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
_A8, _A4, _A2, _A1 = (rows(r, False, True) for r in (8, 4, 2, 1))


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
    """``out[oo + r·os : … + LANES] = Σ_k a[ao + r·ar + k·ak : … + LANES] ⊙ x[xo + k·xs : …]``
    for r < n_out (one sum per lane; ``zeros`` holds at least 8 zeros)."""
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


def _vector_type(context, ty):
    ety = context.get_value_type(ty.dtype)
    return ety, ir.VectorType(ety, LANES), context.get_abi_sizeof(ety)


def _tile_codegen(n_p: int, n_q: int):
    def codegen(context, builder, signature, args):
        tys = signature.args
        out, x, a = (context.make_array(tys[i])(context, builder, args[i]).data for i in (0, 4, 8))
        idx = [context.cast(builder, args[i], tys[i], types.intp) for i in (1, 2, 3, 5, 6, 7, 9)]
        oo, op, oq, xo, xp, xk, ao = idx
        aq, ak, n = (context.cast(builder, args[i], tys[i], types.intp) for i in (10, 11, 12))
        _, vty, align = _vector_type(context, tys[0])
        bits = 8 * align
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty] * 3), f"llvm.fma.v{LANES}f{bits}"
        )

        def ptr(data, offset):
            return builder.bitcast(builder.gep(data, [offset]), vty.as_pointer())

        def const(i):
            return ir.Constant(oo.type, i)

        def out_at(p, q):
            return builder.add(
                oo, builder.add(builder.mul(const(p), op), builder.mul(const(q), oq))
            )

        accs = {
            (p, q): cgutils.alloca_once_value(
                builder, builder.load(ptr(out, out_at(p, q)), align=align, typ=vty)
            )
            for p in range(n_p)
            for q in range(n_q)
        }
        with cgutils.for_range(builder, n) as loop:
            k = loop.index
            x_at, a_at = builder.add(xo, builder.mul(k, xk)), builder.add(ao, builder.mul(k, ak))
            xs = [
                builder.load(ptr(x, builder.add(x_at, builder.mul(const(p), xp))), align=align)
                for p in range(n_p)
            ]
            avs = [
                builder.load(ptr(a, builder.add(a_at, builder.mul(const(q), aq))), align=align)
                for q in range(n_q)
            ]
            for (p, q), acc in accs.items():
                builder.store(builder.call(fma, [xs[p], avs[q], builder.load(acc)]), acc)
        for (p, q), acc in accs.items():
            builder.store(builder.load(acc), ptr(out, out_at(p, q)), align=align)
        return context.get_dummy_value()

    return codegen


@functools.cache
def tile(n_p: int, n_q: int):
    """Intrinsic ``f(out, oo, op, oq, x, xo, xp, xk, a, ao, aq, ak, n)``: for p < n_p, q < n_q,

    ``out[oo + p·op + q·oq : … + LANES] += Σ_{k<n} x[xo + p·xp + k·xk : …] ⊙ a[ao + q·aq + k·ak : …]``

    (per-lane outer products summed over k, the n_p·n_q sums in registers: n_p + n_q vector loads
    per n_p·n_q fused multiply-adds)."""

    def f(typingctx, out, oo, op, oq, x, xo, xp, xk, a, ao, aq, ak, n):
        return types.void(out, oo, op, oq, x, xo, xp, xk, a, ao, aq, ak, n), _tile_codegen(n_p, n_q)

    return intrinsic(f)


_T46, _T42, _T41, _T26, _T22, _T21, _T16, _T12, _T11 = (
    tile(p, q) for p in (4, 2, 1) for q in (6, 2, 1)
)


@njit(**FLAGS)
def tile_products(n_p, n_q, out, oo, op, oq, x, xo, xp, xk, a, ao, aq, ak, n):
    """``out[oo + p·op + q·oq : … + LANES] += Σ_k x[xo + p·xp + k·xk : …] ⊙ a[ao + q·aq + k·ak : …]``
    for all p < n_p, q < n_q, in register tiles of up to 4 × 6 (the per-lane weight gradients)."""
    p = 0
    while p < n_p:
        tp = 4 if p + 4 <= n_p else (2 if p + 2 <= n_p else 1)
        q = 0
        while q < n_q:
            tq = 6 if q + 6 <= n_q else (2 if q + 2 <= n_q else 1)
            o, xa, aa = oo + p * op + q * oq, xo + p * xp, ao + q * aq
            args = (out, o, op, oq, x, xa, xp, xk, a, aa, aq, ak, n)
            if tp == 4:
                if tq == 6:
                    _T46(*args)
                elif tq == 2:
                    _T42(*args)
                else:
                    _T41(*args)
            elif tp == 2:
                if tq == 6:
                    _T26(*args)
                elif tq == 2:
                    _T22(*args)
                else:
                    _T21(*args)
            elif tq == 6:
                _T16(*args)
            elif tq == 2:
                _T12(*args)
            else:
                _T11(*args)
            q += tq
        p += tp
