"""im2col lowering and its adjoint col2im, for convolution as a GEMM.

Chellapilla, Puri & Simard, "High Performance Convolutional Neural Networks for Document
Processing" (2006): unfold every receptive field into a column so that the convolution of one
image becomes ``weight (c_out, c_in*kh*kw) @ cols (c_in*kh*kw, oh*ow)``, done by BLAS.

Row ``r = (ic*kh + i)*kw + j`` of ``cols`` holds tap (i, j) of channel ic for every output
position, so the rows of group ``gi`` are the contiguous block ``[gi*cg*kh*kw, (gi+1)*cg*kh*kw)``.
"""

from __future__ import annotations

from numba import njit, prange

__all__ = ["im2col", "col2im"]


@njit(parallel=True, cache=True, error_model="numpy")
def im2col(xp, kh, kw, sh, sw, dh, dw, oh, ow, cols):  # pragma: no cover - compiled
    """Unfold one padded image ``xp`` (c, hp, wp) into ``cols`` (c*kh*kw, oh*ow)."""
    c = xp.shape[0]
    for r in prange(c * kh * kw):
        ic = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        plane = xp[ic]
        dst = cols[r]
        for y in range(oh):
            src = plane[y * sh + i * dh]
            base = y * ow
            off = j * dw
            for x in range(ow):
                dst[base + x] = src[x * sw + off]


@njit(parallel=True, cache=True, error_model="numpy")
def col2im(cols, kh, kw, sh, sw, dh, dw, oh, ow, xp):  # pragma: no cover - compiled
    """Adjoint of :func:`im2col`: add ``cols`` (c*kh*kw, oh*ow) into ``xp`` (c, hp, wp).

    Parallel over channels: the rows of one channel only touch that channel's plane, so no two
    threads ever add into the same element.
    """
    c = xp.shape[0]
    for ic in prange(c):
        plane = xp[ic]
        for i in range(kh):
            for j in range(kw):
                src = cols[(ic * kh + i) * kw + j]
                off = j * dw
                for y in range(oh):
                    dst = plane[y * sh + i * dh]
                    base = y * ow
                    for x in range(ow):
                        dst[x * sw + off] += src[base + x]
