"""Eight-lane float32 vectors for Numba kernels: a register-blocked micro-kernel in Python.

Numba's auto-vectoriser turns simple loops into SIMD code, but it cannot keep a block of
accumulators in registers across a reduction loop: a GEMM written with scalar locals came out
scalar (~10 GFLOP/s on 2 cores), and with LLVM's SLP vectoriser on (NUMBA_SLP_VECTORIZE=1)
the accumulators were packed and unpacked on every iteration (~8 GFLOP/s). These intrinsics
expose LLVM's ``<8 x float>`` as a Numba type, so that a kernel holds, say, 12 vector
accumulators as plain local variables; LLVM keeps them in ymm registers (AVX2: 16 of them;
AVX-512 machines have 32). A 4 x 24 micro-kernel built from them ran at 127-179 GFLOP/s (150
or more on 6 of 8 GEMM shapes) on the 2-core development machine, next to OpenBLAS's sgemm at
115-180 on the same shapes (see ``kernels/implicit_gemm.py``).

Every load and store is unchecked: callers guarantee the indices are in bounds (the masked
forms read and write only the first ``count`` lanes). Arrays must be contiguous float32.

Lane-wise arithmetic follows IEEE: ``vfma`` is a fused multiply-add (one rounding, as BLAS
kernels do); ``vclamp`` (relu, relu6) compares so that NaN passes through, exactly as
``kernels.epilogue.act_scalar`` does.

Numba's on-disk cache does not notice changes to these intrinsics inside kernels compiled
earlier: delete ``kernels/__pycache__/*.nb?`` after editing this file.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

__all__ = [
    "LANES",
    "vec8f",
    "vzero",
    "vbcast",
    "vbcast_load",
    "vload",
    "vload_n",
    "vstore",
    "vstore_n",
    "vfma",
    "vadd",
    "vsub",
    "vmul",
    "vclamp",
    "vmax_nan",
    "vload_t4",
    "vload_t4_n",
    "vstore_t4",
    "vstore_t4_n",
]

LANES = 8
_F32 = ir.FloatType()
_VEC = ir.VectorType(_F32, LANES)
_I32 = ir.IntType(32)
_MASK = ir.VectorType(ir.IntType(1), LANES)


class Vec8fType(types.Type):
    """The Numba type of eight float32 lanes held in one SIMD register."""

    def __init__(self) -> None:
        super().__init__(name="vec8f")


vec8f = Vec8fType()


@register_model(Vec8fType)
class _Vec8fModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VEC)


def _check_float32_array(name: str, a) -> None:
    if not (isinstance(a, types.Array) and a.dtype == types.float32):
        raise TypeError(f"{name} needs a float32 array, got {a}")


def _vec_pointer(context, builder, aryty, ary, idx):
    data = context.make_array(aryty)(context, builder, ary).data
    return builder.bitcast(builder.gep(data, [idx]), _VEC.as_pointer())


def _lane_mask(builder, count):
    """<8 x i1>: lane i is on when i < count."""
    n = builder.trunc(count, _I32) if count.type.width > 32 else count
    splat = builder.insert_element(
        ir.Constant(ir.VectorType(_I32, LANES), ir.Undefined), n, ir.Constant(_I32, 0)
    )
    splat = builder.shuffle_vector(
        splat, ir.Constant(splat.type, ir.Undefined), ir.Constant(splat.type, [0] * LANES)
    )
    lanes = ir.Constant(ir.VectorType(_I32, LANES), list(range(LANES)))
    return builder.icmp_signed("<", lanes, splat)


def _masked_name(op: str, ptr, lanes: int = LANES) -> str:
    """``llvm.masked.<op>`` overloaded on the pointer type: ``p0`` with LLVM's opaque pointers
    (llvmlite >= 0.44 by default), ``p0v8f32`` with typed ones."""
    opaque = getattr(ptr.type, "is_opaque", False)
    return f"llvm.masked.{op}.v{lanes}f32.{'p0' if opaque else f'p0v{lanes}f32'}"


def _call(builder, name: str, ret, args):
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ret, [a.type for a in args]), name
    )
    return builder.call(fn, args)


@intrinsic
def vzero(typingctx):
    """Eight zeros."""

    def codegen(context, builder, sig, args):
        return ir.Constant(_VEC, [0.0] * LANES)

    return vec8f(), codegen


@intrinsic
def vbcast(typingctx, x):
    """``x`` (a float32) in every lane."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        v = builder.insert_element(ir.Constant(_VEC, ir.Undefined), args[0], ir.Constant(_I32, 0))
        zeros = ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)
        return builder.shuffle_vector(v, ir.Constant(_VEC, ir.Undefined), zeros)

    return vec8f(x), codegen


@intrinsic
def vbcast_load(typingctx, a, i):
    """``a.flat[i]`` in every lane, unchecked (one ``vbroadcastss`` from memory; indexing the
    array instead adds Numba's negative-index wraparound to every load)."""
    _check_float32_array("vbcast_load", a)

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        x = builder.load(builder.gep(data, [args[1]]), align=4)
        v = builder.insert_element(ir.Constant(_VEC, ir.Undefined), x, ir.Constant(_I32, 0))
        zeros = ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)
        return builder.shuffle_vector(v, ir.Constant(_VEC, ir.Undefined), zeros)

    return vec8f(a, i), codegen


@intrinsic
def vload(typingctx, a, i):
    """``a.flat[i:i+8]`` of a contiguous float32 array, unchecked."""
    _check_float32_array("vload", a)

    def codegen(context, builder, sig, args):
        return builder.load(_vec_pointer(context, builder, sig.args[0], args[0], args[1]), align=4)

    return vec8f(a, i), codegen


@intrinsic
def vload_n(typingctx, a, i, count):
    """``a.flat[i:i+count]`` in the first ``count`` lanes (0 elsewhere); memory past them is
    not read."""
    _check_float32_array("vload_n", a)

    def codegen(context, builder, sig, args):
        ptr = _vec_pointer(context, builder, sig.args[0], args[0], args[1])
        mask = _lane_mask(builder, args[2])
        zero = ir.Constant(_VEC, [0.0] * LANES)
        align = ir.Constant(_I32, 4)
        return _call(builder, _masked_name("load", ptr), _VEC, [ptr, align, mask, zero])

    return vec8f(a, i, count), codegen


@intrinsic
def vstore(typingctx, a, i, v):
    """``a.flat[i:i+8] = v``, unchecked."""
    _check_float32_array("vstore", a)

    def codegen(context, builder, sig, args):
        ptr = _vec_pointer(context, builder, sig.args[0], args[0], args[1])
        builder.store(args[2], ptr, align=4)
        return context.get_dummy_value()

    return types.void(a, i, v), codegen


@intrinsic
def vstore_n(typingctx, a, i, v, count):
    """``a.flat[i:i+count] = v[:count]``; memory past them is not touched."""
    _check_float32_array("vstore_n", a)

    def codegen(context, builder, sig, args):
        ptr = _vec_pointer(context, builder, sig.args[0], args[0], args[1])
        mask = _lane_mask(builder, args[3])
        align = ir.Constant(_I32, 4)
        _call(builder, _masked_name("store", ptr), ir.VoidType(), [args[2], ptr, align, mask])
        return context.get_dummy_value()

    return types.void(a, i, v, count), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """``a * b + c`` lane-wise with one rounding."""

    def codegen(context, builder, sig, args):
        return _call(builder, "llvm.fma.v8f32", _VEC, list(args))

    return vec8f(vec8f, vec8f, vec8f), codegen


@intrinsic
def vadd(typingctx, a, b):
    """``a + b`` lane-wise."""

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])

    return vec8f(vec8f, vec8f), codegen


@intrinsic
def vsub(typingctx, a, b):
    """``a - b`` lane-wise."""

    def codegen(context, builder, sig, args):
        return builder.fsub(args[0], args[1])

    return vec8f(vec8f, vec8f), codegen


@intrinsic
def vmul(typingctx, a, b):
    """``a * b`` lane-wise."""

    def codegen(context, builder, sig, args):
        return builder.fmul(args[0], args[1])

    return vec8f(vec8f, vec8f), codegen


@intrinsic
def vclamp(typingctx, a, lo, hi):
    """``lo if a < lo else (hi if a > hi else a)`` lane-wise (NaN passes through): relu with
    (0, inf), relu6 with (0, 6), the identity with (-inf, inf)."""

    def codegen(context, builder, sig, args):
        a, lo, hi = args
        high = builder.select(builder.fcmp_ordered(">", a, hi), hi, a)
        return builder.select(builder.fcmp_ordered("<", a, lo), lo, high)

    return vec8f(vec8f, vec8f, vec8f), codegen


@intrinsic
def vmax_nan(typingctx, m, v):
    """``v if v > m or v is NaN else m`` lane-wise: PyTorch's running maximum of a max pool
    (ties keep ``m``, so the earlier of equal taps and its sign of zero; a NaN wins)."""

    def codegen(context, builder, sig, args):
        m, v = args
        take = builder.or_(builder.fcmp_ordered(">", v, m), builder.fcmp_unordered("uno", v, v))
        return builder.select(take, v, m)

    return vec8f(vec8f, vec8f), codegen


# Transposing loads and stores between a 4-pixel x 8-channel tile held as 4 vectors (one per
# pixel, lane j = channel j: the blocked layout) and an NCHW array, where the tile's channel j
# is 4 consecutive floats at ``i + j * stride``: eight 4-float rows, transposed with the usual
# unpack / shuffle network (the same for both directions).
_V4 = ir.VectorType(_F32, 4)
_LO_HI = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
_PAIRS = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]


def _shuffle(builder, a, b, idx):
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(_I32, len(idx)), idx))


def _transpose4(builder, v):
    """A 4x4 transpose within each 4-lane half of four <8 x float>: ``out[j][i] = v[i][j]``
    and ``out[j][4 + i] = v[i][4 + j]`` (i, j < 4). Four pixel vectors (lane = channel) become
    the channel rows j and j + 4 side by side, and those row pairs become pixel vectors again
    (the network is its own inverse)."""
    lo, hi = _LO_HI
    t0, t1 = _shuffle(builder, v[0], v[1], lo), _shuffle(builder, v[0], v[1], hi)
    t2, t3 = _shuffle(builder, v[2], v[3], lo), _shuffle(builder, v[2], v[3], hi)
    first, second = _PAIRS
    return [_shuffle(builder, t0, t2, first), _shuffle(builder, t0, t2, second),
            _shuffle(builder, t1, t3, first), _shuffle(builder, t1, t3, second)]  # fmt: skip


def _row_pointers(context, builder, aryty, ary, i, stride):
    data = context.make_array(aryty)(context, builder, ary).data
    return [
        builder.bitcast(
            builder.gep(data, [builder.add(i, builder.mul(stride, ir.Constant(i.type, j)))]),
            _V4.as_pointer(),
        )
        for j in range(LANES)
    ]


def _v4_mask(builder, count):
    """<4 x i1>: lane i is on when i < count."""
    n = builder.trunc(count, _I32) if count.type.width > 32 else count
    v4i = ir.VectorType(_I32, 4)
    splat = builder.insert_element(ir.Constant(v4i, ir.Undefined), n, ir.Constant(_I32, 0))
    splat = _shuffle(builder, splat, ir.Constant(v4i, ir.Undefined), [0] * 4)
    return builder.icmp_signed("<", ir.Constant(v4i, [0, 1, 2, 3]), splat)


def _load_t4(context, builder, sig, args, count=None):
    rows = []
    for ptr in _row_pointers(context, builder, sig.args[0], args[0], args[1], args[2]):
        if count is None:
            rows.append(builder.load(ptr, align=4))
        else:
            zero = ir.Constant(_V4, [0.0] * 4)
            rows.append(
                _call(
                    builder,
                    _masked_name("load", ptr, 4),
                    _V4,
                    [ptr, ir.Constant(_I32, 4), _v4_mask(builder, count), zero],
                )
            )
    pairs = [_shuffle(builder, rows[j], rows[j + 4], list(range(LANES))) for j in range(4)]
    return context.make_tuple(builder, sig.return_type, _transpose4(builder, pairs))


def _store_t4(context, builder, sig, args, count=None):
    pairs = _transpose4(builder, list(args[3:7]))
    ptrs = _row_pointers(context, builder, sig.args[0], args[0], args[1], args[2])
    undef = ir.Constant(_VEC, ir.Undefined)
    for j in range(LANES):
        row = _shuffle(builder, pairs[j % 4], undef, [0, 1, 2, 3] if j < 4 else [4, 5, 6, 7])
        if count is None:
            builder.store(row, ptrs[j], align=4)
        else:
            _call(builder, _masked_name("store", ptrs[j], 4), ir.VoidType(),
                  [row, ptrs[j], ir.Constant(_I32, 4), _v4_mask(builder, count)])  # fmt: skip
    return context.get_dummy_value()


@intrinsic
def vload_t4(typingctx, a, i, stride):
    """The 4 pixel vectors of an NCHW tile: vector ``t`` lane ``j`` = ``a.flat[i + j*stride +
    t]``, unchecked (8 row loads and a transpose)."""
    _check_float32_array("vload_t4", a)

    def codegen(context, builder, sig, args):
        return _load_t4(context, builder, sig, args)

    return types.UniTuple(vec8f, 4)(a, i, stride), codegen


@intrinsic
def vload_t4_n(typingctx, a, i, stride, count):
    """:func:`vload_t4` of the first ``count`` pixels (the rest 0); memory past them is not
    read."""
    _check_float32_array("vload_t4_n", a)

    def codegen(context, builder, sig, args):
        return _load_t4(context, builder, sig, args, args[3])

    return types.UniTuple(vec8f, 4)(a, i, stride, count), codegen


@intrinsic
def vstore_t4(typingctx, a, i, stride, v0, v1, v2, v3):
    """``a.flat[i + j*stride + t] = v<t>[j]``: 4 pixel vectors stored to an NCHW tile,
    unchecked (a transpose and 8 row stores)."""
    _check_float32_array("vstore_t4", a)

    def codegen(context, builder, sig, args):
        return _store_t4(context, builder, sig, args)

    return types.void(a, i, stride, v0, v1, v2, v3), codegen


@intrinsic
def vstore_t4_n(typingctx, a, i, stride, v0, v1, v2, v3, count):
    """:func:`vstore_t4` of the first ``count`` pixels; memory past them is not touched."""
    _check_float32_array("vstore_t4_n", a)

    def codegen(context, builder, sig, args):
        return _store_t4(context, builder, sig, args, args[7])

    return types.void(a, i, stride, v0, v1, v2, v3, count), codegen
