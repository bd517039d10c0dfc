"""Implicit-GEMM convolution: a register-blocked SIMD micro-kernel reading the input in place.

The convolution is the GEMM ``out[co, pixel] = sum_t w[co, t] * cols[t, pixel]`` of im2col, but
the column matrix is never written: row ``t = (ci, ky, kx)`` of it, over one output row ``y``, is
a contiguous run of the (padded, stride-phase split) input starting at ``offs[t] + y * pitch``.
The micro-kernel (4 output channels x 24 output pixels, 12 accumulators of 8 lanes in
registers, see ``kernels/simd.py``) walks the ``t`` terms, loading 3 vectors of input and
broadcasting 4 weights per term, and writes ``act(acc + bias [+ residual])`` straight into the
NCHW output: the lowering pass, BLAS's packing pass and a separate epilogue pass are all gone.
This is the "implicit GEMM" formulation of convolution (e.g. Chetlur et al., "cuDNN: Efficient
Primitives for Deep Learning", 2014) with a Goto-style register block (Goto & van de Geijn,
"Anatomy of High-Performance Matrix Multiplication", 2008).

Source layouts (``ops.conv_implicit`` builds them):

- 1x1 stride-1 unpadded convolutions read the input itself: one "row" of ``h*w`` pixels.
- Everything else reads ``pad_phase_split``'s copy of the input: zero-padded and, for stride
  ``(sh, sw)``, split into ``sh*sw`` phase planes so that a strided row becomes contiguous
  (tap ``(ky, kx)`` of output ``(y, x)`` reads phase ``((ky*dh) % sh, (kx*dw) % sw)`` at
  ``(y + ky*dh // sh, x + kx*dw // sw)``).

Weights are packed once into panels of 4 output channels, term-major (``pack_weight``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .simd import vadd, vbcast, vclamp, vfma, vload, vload_n, vstore, vstore_n, vzero

__all__ = [
    "MR",
    "NR",
    "implicit_gemm_conv",
    "pack_weight",
    "pad_phase_split",
    "A_BLOCK_BYTES",
]

MR = 4  # output channels per micro-kernel (broadcast weights)
NR = 24  # output pixels per micro-kernel (3 vectors of 8)
# Weight panels one task keeps hot while it sweeps its pixel tiles: at most this many bytes of
# packed weight (the development machine's L2 is 512 KiB per core).
A_BLOCK_BYTES = 256 << 10


def pack_weight(w2: np.ndarray) -> np.ndarray:
    """(c_out, k) weight -> panels of MR output channels, term-major, flat: element
    ``[(p*k + t)*MR + i] = w2[p*MR + i, t]`` (rows past c_out are zero)."""
    c_out, k = w2.shape
    panels = -(-c_out // MR)
    padded = np.zeros((panels * MR, k), dtype=np.float32)
    padded[:c_out] = w2
    return np.ascontiguousarray(padded.reshape(panels, MR, k).transpose(0, 2, 1)).reshape(-1)


@njit(parallel=True, cache=True, error_model="numpy")
def pad_phase_split(x, pt, pl, sh, sw, hq, wq, used, out):  # pragma: no cover - compiled
    """``out[b, c, a, e, i, j] = x[b, c, i*sh + a - pt, j*sw + e - pl]`` (0 outside ``x``) for
    the phases with ``used[a*sw + e]`` (the others are left as they are: no tap reads them).

    ``x`` (n, c, h, w); ``out`` (n, c, sh, sw, hq, wq): the zero-padded input with its rows and
    columns split into stride phases (sh = sw = 1: just the padding)."""
    n, c, h, w = x.shape
    for bc in prange(n * c):
        b = bc // c
        ci = bc % c
        for a in range(sh):
            for e in range(sw):
                if not used[a * sw + e]:
                    continue
                for i in range(hq):
                    r = i * sh + a - pt
                    dst = out[b, ci, a, e, i]
                    if r < 0 or r >= h:
                        dst[:] = 0.0
                        continue
                    src = x[b, ci, r]
                    for j in range(wq):
                        col = j * sw + e - pl
                        dst[j] = src[col] if 0 <= col < w else np.float32(0.0)


@njit(inline="always")
def _tile_3(src, p, offs, a, ab, k, last):  # pragma: no cover - compiled
    """Accumulators of one 4 x (16 + last) tile: 3 vectors of 8 pixels per channel, the third
    holding ``last`` (1..8); a masked load (slow on AMD) only when ``last < 8``."""
    c00 = vzero()
    c01 = vzero()
    c02 = vzero()
    c10 = vzero()
    c11 = vzero()
    c12 = vzero()
    c20 = vzero()
    c21 = vzero()
    c22 = vzero()
    c30 = vzero()
    c31 = vzero()
    c32 = vzero()
    for t in range(k):
        q = p + offs[t]
        b0 = vload(src, q)
        b1 = vload(src, q + 8)
        b2 = vload(src, q + 16) if last == 8 else vload_n(src, q + 16, last)
        w = vbcast(a[ab])
        c00 = vfma(w, b0, c00)
        c01 = vfma(w, b1, c01)
        c02 = vfma(w, b2, c02)
        w = vbcast(a[ab + 1])
        c10 = vfma(w, b0, c10)
        c11 = vfma(w, b1, c11)
        c12 = vfma(w, b2, c12)
        w = vbcast(a[ab + 2])
        c20 = vfma(w, b0, c20)
        c21 = vfma(w, b1, c21)
        c22 = vfma(w, b2, c22)
        w = vbcast(a[ab + 3])
        c30 = vfma(w, b0, c30)
        c31 = vfma(w, b1, c31)
        c32 = vfma(w, b2, c32)
        ab += MR
    return c00, c01, c02, c10, c11, c12, c20, c21, c22, c30, c31, c32


@njit(inline="always")
def _tile_2n(src, p, offs, a, ab, k, last):  # pragma: no cover - compiled
    """A 4 x (8 + last) tile: one full vector and one of ``last`` (1..8) pixels."""
    c00 = vzero()
    c01 = vzero()
    c10 = vzero()
    c11 = vzero()
    c20 = vzero()
    c21 = vzero()
    c30 = vzero()
    c31 = vzero()
    for t in range(k):
        q = p + offs[t]
        b0 = vload(src, q)
        b1 = vload_n(src, q + 8, last)
        w = vbcast(a[ab])
        c00 = vfma(w, b0, c00)
        c01 = vfma(w, b1, c01)
        w = vbcast(a[ab + 1])
        c10 = vfma(w, b0, c10)
        c11 = vfma(w, b1, c11)
        w = vbcast(a[ab + 2])
        c20 = vfma(w, b0, c20)
        c21 = vfma(w, b1, c21)
        w = vbcast(a[ab + 3])
        c30 = vfma(w, b0, c30)
        c31 = vfma(w, b1, c31)
        ab += MR
    z = vzero()
    return c00, c01, z, c10, c11, z, c20, c21, z, c30, c31, z


@njit(inline="always")
def _tile_1n(src, p, offs, a, ab, k, last):  # pragma: no cover - compiled
    """A 4 x last tile (1..8 pixels): one partial vector."""
    c00 = vzero()
    c10 = vzero()
    c20 = vzero()
    c30 = vzero()
    for t in range(k):
        b0 = vload_n(src, p + offs[t], last)
        c00 = vfma(vbcast(a[ab]), b0, c00)
        c10 = vfma(vbcast(a[ab + 1]), b0, c10)
        c20 = vfma(vbcast(a[ab + 2]), b0, c20)
        c30 = vfma(vbcast(a[ab + 3]), b0, c30)
        ab += MR
    z = vzero()
    return c00, z, z, c10, z, z, c20, z, z, c30, z, z


@njit(inline="always")
def _finish(v, bias_v, res, o, has_res, lo, hi):  # pragma: no cover - compiled
    """``clamp(v + bias [+ res[o:o+8]], lo, hi)``, rounded to float32 after every step as
    the unfused ops are."""
    v = vadd(v, bias_v)
    if has_res:
        v = vadd(v, vload(res, o))
    return vclamp(v, lo, hi)


@njit(inline="always")
def _finish_n(v, bias_v, res, o, has_res, lo, hi, count):  # pragma: no cover - compiled
    """:func:`_finish` on the first ``count`` lanes (the residual read only there)."""
    v = vadd(v, bias_v)
    if has_res:
        v = vadd(v, vload_n(res, o, count))
    return vclamp(v, lo, hi)


@njit(inline="always")
def _store_rows(out, o, plane, acc, n_rows, bias, co, has_bias, res, has_res, lo, hi, neg_zero):
    # pragma: no cover - compiled
    """Write a full tile (24 pixels) of ``n_rows`` (1..4) output channels from ``acc``."""
    for i in range(n_rows):
        # no bias: add -0.0, which leaves every value (-0.0 too) as it is
        bias_v = vbcast(bias[co + i]) if has_bias else neg_zero
        q = o + i * plane
        vstore(out, q, _finish(acc[3 * i], bias_v, res, q, has_res, lo, hi))
        vstore(out, q + 8, _finish(acc[3 * i + 1], bias_v, res, q + 8, has_res, lo, hi))
        vstore(out, q + 16, _finish(acc[3 * i + 2], bias_v, res, q + 16, has_res, lo, hi))


@njit(inline="always")
def _store_rows_n(
    out, o, plane, acc, n_rows, width, bias, co, has_bias, res, has_res, lo, hi, neg_zero
):  # pragma: no cover - compiled
    """Write the first ``width`` (1..23) pixels of a tile of ``n_rows`` output channels; masked
    moves (slow on AMD, where they are microcoded) only in these tail tiles."""
    for i in range(n_rows):
        bias_v = vbcast(bias[co + i]) if has_bias else neg_zero
        q = o + i * plane
        for j in range(3):
            count = min(8, width - 8 * j)
            if count > 0:
                v = _finish_n(acc[3 * i + j], bias_v, res, q + 8 * j, has_res, lo, hi, count)
                vstore_n(out, q + 8 * j, v, count)


@njit(parallel=True, cache=True, error_model="numpy")
def implicit_gemm_conv(
    src,
    img_stride,
    offs,
    a,
    c_out,
    rows,
    cols,
    pitch,
    bias,
    has_bias,
    res,
    has_res,
    act,
    tasks,
    c_total,
    co0,
    out,
):  # pragma: no cover - compiled
    """``out[b, co0 + co, y, x] = act(bias[co] + sum_t w[co, t] * src[b*img_stride + offs[t] +
    y*pitch + x] [+ res[b, co0 + co, y, x]])`` for co < c_out, y < rows, x < cols.

    Args:
        src: the flat float32 source (see the module docstring); every index the formula
            forms for y < rows, x < cols must lie inside it.
        img_stride: elements of ``src`` per image.
        offs: int64 (k,) start of each term's run.
        a: the packed weight (``pack_weight``) of ``c_out`` output channels and k terms.
        rows, cols, pitch: output rows and columns per image, and the source elements from
            one output row to the next.
        bias: float32 (c_out,), read when ``has_bias``.
        res: flat float32 residual shaped as ``out``, read when ``has_res``.
        act: 0 none, 1 relu, 2 relu6 (``kernels.epilogue`` codes).
        tasks: how many parallel tasks to aim for (a few per thread).
        c_total, co0: ``out``'s channels, and the first one written (a group's slice).
        out: flat float32 (n * c_total * rows * cols), written.
    """
    k = offs.shape[0]
    plane = rows * cols
    neg_zero = vbcast(np.float32(-0.0))
    lo = vbcast(np.float32(-np.inf if act == 0 else 0.0))
    hi = vbcast(np.float32(6.0 if act == 2 else np.inf))
    n = out.shape[0] // (c_total * plane)
    xt = (cols + NR - 1) // NR
    n_tiles = n * rows * xt
    panels = (c_out + MR - 1) // MR
    per_group = max(1, min(panels, A_BLOCK_BYTES // (MR * 4 * max(k, 1))))
    groups = (panels + per_group - 1) // per_group
    chunks = max(1, min(n_tiles, (tasks + groups - 1) // groups))
    per_chunk = (n_tiles + chunks - 1) // chunks
    chunks = (n_tiles + per_chunk - 1) // per_chunk
    for task in prange(chunks * groups):
        ci = task // groups
        gi = task % groups
        p_lo = gi * per_group
        p_hi = min(panels, p_lo + per_group)
        for tile in range(ci * per_chunk, min(n_tiles, (ci + 1) * per_chunk)):
            b = tile // (rows * xt)
            r = tile % (rows * xt)
            y = r // xt
            x0 = (r % xt) * NR
            width = min(NR, cols - x0)
            p = b * img_stride + y * pitch + x0
            for pan in range(p_lo, p_hi):
                ab = pan * k * MR
                if width == NR:
                    acc = _tile_3(src, p, offs, a, ab, k, 8)
                elif width > 16:
                    acc = _tile_3(src, p, offs, a, ab, k, width - 16)
                elif width > 8:
                    acc = _tile_2n(src, p, offs, a, ab, k, width - 8)
                else:
                    acc = _tile_1n(src, p, offs, a, ab, k, width)
                o = (b * c_total + co0 + pan * MR) * plane + y * cols + x0
                co = pan * MR
                n_rows = min(MR, c_out - co)
                if width == NR:
                    _store_rows(out, o, plane, acc, n_rows, bias, co, has_bias, res, has_res,
                                lo, hi, neg_zero)  # fmt: skip
                else:
                    _store_rows_n(out, o, plane, acc, n_rows, width, bias, co, has_bias, res,
                                  has_res, lo, hi, neg_zero)  # fmt: skip
