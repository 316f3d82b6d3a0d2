"""Lane-wise vector intrinsics for the compiled kernels (numba emitting LLVM vectors): copies, sums
and fused multiply-adds of ``LANES`` elements, and the transpose of a block of up to
``LANES`` × ``LANES`` values into lanes.

Plain numba loops over a few elements stay scalar (numba cannot tell LLVM that two arrays do not
overlap; see ``dsr.models._simd``); moving a window's samples into lanes one by one took ~1 ns per
value, the transpose ~0.1. Offsets are in elements of the arrays' data; nothing is bounds-checked.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from dsr.models._simd import LANES


def _vector_type(context, ty):
    ety = context.get_value_type(ty.dtype)
    return ety, ir.VectorType(ety, LANES), context.get_abi_sizeof(ety)


def _lanewise_codegen(kind: str):
    def codegen(context, builder, signature, args):
        tys = signature.args
        n_arrays = {"copy": 2, "add": 3, "fma": 4}[kind]
        data = [
            context.make_array(tys[2 * i])(context, builder, args[2 * i]).data
            for i in range(n_arrays)
        ]
        offs = [
            context.cast(builder, args[2 * i + 1], tys[2 * i + 1], types.intp)
            for i in range(n_arrays)
        ]
        _, vty, align = _vector_type(context, tys[0])

        def ptr(i):
            return builder.bitcast(builder.gep(data[i], [offs[i]]), vty.as_pointer())

        vals = [builder.load(ptr(i), align=align, typ=vty) for i in range(1, n_arrays)]
        if kind == "copy":
            res = vals[0]
        elif kind == "add":
            res = builder.fadd(vals[0], vals[1])
        else:
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty] * 3), f"llvm.fma.v{LANES}f{8 * align}"
            )
            res = builder.call(fma, vals)
        builder.store(res, ptr(0), align=align)
        return context.get_dummy_value()

    return codegen


@intrinsic
def lanes_copy(typingctx, out, oo, a, ao):
    """``out[oo : oo + LANES] = a[ao : ao + LANES]``."""
    return types.void(out, oo, a, ao), _lanewise_codegen("copy")


@intrinsic
def lanes_add(typingctx, out, oo, a, ao, b, bo):
    """``out[oo : …] = a[ao : …] + b[bo : …]`` (``LANES`` elements)."""
    return types.void(out, oo, a, ao, b, bo), _lanewise_codegen("add")


@intrinsic
def lanes_fma(typingctx, out, oo, a, ao, b, bo, c, co):
    """``out[oo : …] = a[ao : …] · b[bo : …] + c[co : …]`` (``LANES`` elements, one rounding)."""
    return types.void(out, oo, a, ao, b, bo, c, co), _lanewise_codegen("fma")


def _transpose_codegen(context, builder, signature, args):
    tys = signature.args
    out, x = (context.make_array(tys[i])(context, builder, args[i]).data for i in (0, 3))
    oo, os_, xo, xs, n_rows, n_cols = (
        context.cast(builder, args[i], tys[i], types.intp) for i in (1, 2, 4, 5, 6, 7)
    )
    ety, vty, align = _vector_type(context, tys[0])
    i32, mty = ir.IntType(32), ir.VectorType(ir.IntType(1), LANES)
    load = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(vty, [vty.as_pointer(), i32, mty, vty]),
        f"llvm.masked.load.v{LANES}f{8 * align}.p0",
    )
    lane = ir.Constant(ir.VectorType(oo.type, LANES), list(range(LANES)))
    cols = builder.insert_element(ir.Constant(ir.VectorType(oo.type, LANES), None), n_cols, i32(0))
    cols = builder.shuffle_vector(cols, cols, ir.Constant(ir.VectorType(i32, LANES), [0] * LANES))
    in_cols = builder.icmp_signed("<", lane, cols)
    zero = ir.Constant(vty, [ir.Constant(ety, 0.0)] * LANES)
    rows = []
    for j in range(LANES):
        row_ok = builder.icmp_signed("<", ir.Constant(oo.type, j), n_rows)
        mask = builder.and_(
            in_cols,
            builder.select(row_ok, ir.Constant(mty, [1] * LANES), ir.Constant(mty, [0] * LANES)),
        )
        at = builder.add(xo, builder.mul(ir.Constant(oo.type, j), xs))
        ptr = builder.bitcast(builder.gep(x, [at]), vty.as_pointer())
        rows.append(builder.call(load, [ptr, i32(align), mask, zero]))
    b = LANES // 2
    while b:  # swap element (i, p) with (i + b, p − b) for i without and p with bit b
        own = [p if not p & b else LANES + p - b for p in range(LANES)]
        partner = [p + b if not p & b else LANES + p for p in range(LANES)]
        for i in range(LANES):
            if not i & b:
                a, c = rows[i], rows[i + b]
                rows[i] = builder.shuffle_vector(a, c, ir.Constant(ir.VectorType(i32, LANES), own))
                rows[i + b] = builder.shuffle_vector(
                    a, c, ir.Constant(ir.VectorType(i32, LANES), partner)
                )
        b //= 2
    for n in range(LANES):
        with cgutils.if_likely(builder, builder.icmp_signed("<", ir.Constant(oo.type, n), n_cols)):
            at = builder.add(oo, builder.mul(ir.Constant(oo.type, n), os_))
            builder.store(
                rows[n], builder.bitcast(builder.gep(out, [at]), vty.as_pointer()), align=align
            )
    return context.get_dummy_value()


@intrinsic
def lanes_transpose(typingctx, out, oo, os_, x, xo, xs, n_rows, n_cols):
    """``out[oo + n·os + j] = x[xo + j·xs + n]`` for n < n_cols ≤ ``LANES``, j < ``LANES``
    (0 for j ≥ n_rows): up to ``LANES`` rows of n_cols values into n_cols rows of lanes."""
    return types.void(out, oo, os_, x, xo, xs, n_rows, n_cols), _transpose_codegen
