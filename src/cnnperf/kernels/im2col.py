"""im2col lowering and its adjoint col2im, for convolution as a GEMM.

Chellapilla, Puri & Simard, "High Performance Convolutional Neural Networks for Document
Processing" (2006): unfold every receptive field into a column so that the convolution of one
image becomes ``weight (c_out, c_in*kh*kw) @ cols (c_in*kh*kw, oh*ow)``, done by BLAS.

Row ``r = (ic*kh + i)*kw + j`` of ``cols`` holds tap (i, j) of channel ic for every output
position, so the rows of group ``gi`` are the contiguous block ``[gi*cg*kh*kw, (gi+1)*cg*kh*kw)``.
Both kernels take a band of output rows ``[y0, y0 + rows)`` so callers can bound the workspace.
im2col reads the unpadded image and writes the zeros of the padding itself: a padded copy of
the whole batch cost as much as the lowering (3x3 stride-2 128x56x56 at batch 8, measured when
this changed).
Rows of the source are sliced before the inner loop: a runtime offset inside the index would
cost a negative-index check per element and block vectorisation (see kernels/direct.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["im2col", "col2im"]


@njit(parallel=True, cache=True, error_model="numpy")
def im2col(x, kh, kw, sh, sw, pt, pl, dh, dw, y0, rows, ow, cols, col0=0):  # pragma: no cover
    """Unfold output rows ``[y0, y0 + rows)`` of one image ``x`` (c, h, w), zero-padded by
    ``pt`` rows on top and ``pl`` columns on the left as it is read (no padded copy).

    ``cols`` is (c*kh*kw, >= col0 + rows*ow); column ``col0 + (y - y0)*ow + x`` holds output
    position (y, x) (``col0``: several images side by side, one GEMM for all of them).
    """
    c, h, w = x.shape
    if sw == 2 and kw > 1:
        _im2col_s2(x, kh, kw, sh, pt, pl, dh, dw, y0, rows, ow, cols, col0)
        return
    for r in prange(c * kh * kw):
        ic = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        dst = cols[r]
        # output columns whose tap-j input column lies inside the image: 0 <= x*sw + j*dw - pl < w
        c0 = j * dw - pl
        x_lo = min(ow, max(0, (-c0 + sw - 1) // sw))
        x_hi = max(x_lo, min(ow, (w - 1 - c0) // sw + 1))
        n_in = x_hi - x_lo
        for yy in range(rows):
            out = dst[col0 + yy * ow : col0 + (yy + 1) * ow]
            iy = (y0 + yy) * sh + i * dh - pt
            # loops, not slice assignments: measured 25% faster lowering in Numba
            if iy < 0 or iy >= h:
                for q in range(ow):
                    out[q] = 0.0
                continue
            for q in range(x_lo):
                out[q] = 0.0
            for q in range(x_hi, ow):
                out[q] = 0.0
            start = x_lo * sw + c0
            if sw == 1:
                src = x[ic, iy, start : start + n_in]
                dst_in = out[x_lo:x_hi]
                for q in range(n_in):
                    dst_in[q] = src[q]
            else:
                src = x[ic, iy, start:]  # sliced: an offset inside the index blocks vectorising
                dst_in = out[x_lo:x_hi]
                for q in range(n_in):
                    dst_in[q] = src[q * sw]


@njit(parallel=True, cache=True, error_model="numpy")
def _im2col_s2(x, kh, kw, sh, pt, pl, dh, dw, y0, rows, ow, cols, col0):  # pragma: no cover
    """:func:`im2col` for column stride 2 and kernels at least 2 wide: each input row is split
    once into its even and odd padded columns, from which every tap of the row is a contiguous
    copy (strided reads for each tap took 1.8x as long for 3x3 stride 2 layers, measured when
    this was added)."""
    c, h, w = x.shape
    # phase columns: every image column (at (pl + col) // 2) and every column a tap reads
    wq = max(ow + ((kw - 1) * dw) // 2, (pl + w - 1) // 2 + 1) + 1
    for r in prange(c * kh):
        ic = r // kh
        i = r % kh
        ph = np.empty((2, wq), dtype=x.dtype)
        for yy in range(rows):
            iy = (y0 + yy) * sh + i * dh - pt
            if iy < 0 or iy >= h:
                for j in range(kw):
                    out = cols[r * kw + j, col0 + yy * ow : col0 + (yy + 1) * ow]
                    for q in range(ow):
                        out[q] = 0.0
                continue
            for q in range(wq):
                ph[0, q] = 0.0
                ph[1, q] = 0.0
            # padded column pc = col + pl goes to phase pc % 2, position pc // 2
            src = x[ic, iy]
            start = pl % 2
            if start == 1:
                ph[1, pl // 2] = src[0]
            v0 = (start + pl) // 2
            npair = (w - start) // 2
            e = ph[0, v0 : v0 + npair]
            o = ph[1, v0 : v0 + npair]
            sp = src[start : start + 2 * npair]
            for k in range(npair):
                e[k] = sp[2 * k]
                o[k] = sp[2 * k + 1]
            if (w - start) % 2 == 1:
                ph[0, v0 + npair] = src[w - 1]
            for j in range(kw):
                off = (j * dw) // 2
                run = ph[(j * dw) % 2, off : off + ow]
                out = cols[r * kw + j, col0 + yy * ow : col0 + (yy + 1) * ow]
                for q in range(ow):
                    out[q] = run[q]


@njit(parallel=True, cache=True, error_model="numpy")
def col2im(cols, kh, kw, sh, sw, dh, dw, y0, rows, ow, xp):  # pragma: no cover - compiled
    """Adjoint of :func:`im2col`: add ``cols`` (c*kh*kw, >= rows*ow) into ``xp`` (c, hp, wp).

    Parallel over channels: the rows of one channel only touch that channel's plane, so no two
    threads ever add into the same element.
    """
    c = xp.shape[0]
    span = (ow - 1) * sw + 1
    for ic in prange(c):
        for i in range(kh):
            for j in range(kw):
                src = cols[(ic * kh + i) * kw + j]
                for yy in range(rows):
                    dst = xp[ic, (y0 + yy) * sh + i * dh, j * dw : j * dw + span]
                    s = src[yy * ow : (yy + 1) * ow]
                    if sw == 1:
                        for x in range(ow):
                            dst[x] += s[x]
                    else:
                        for x in range(ow):
                            dst[x * sw] += s[x]
