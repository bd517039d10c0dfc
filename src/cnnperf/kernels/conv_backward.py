"""Batched lowering kernels for the convolution backward pass.

The backward pass of a convolution is two GEMMs over the whole batch (Chellapilla, Puri &
Simard, "High Performance Convolutional Neural Networks for Document Processing", 2006):
``grad_w = grad_out (c_out, n*oh*ow) @ cols (c_in*kh*kw, n*oh*ow)^T`` and
``dcols = w^T @ grad_out``, folded back onto the input by col2im. These kernels lower a block of
images at once into the layout both GEMMs read, ``cols[r, b, q]`` = tap ``r = (ic*kh + i)*kw + j``
of image ``b`` at output position ``q = y*ow + x``, so that ``cols.reshape(k, nb*oh*ow)`` is one
GEMM operand and the columns line up with ``grad_out.transpose(1, 0, 2, 3)``. Lowering image by
image and multiplying per image cost one tiny sgemm and a Python round trip per image (3.5 ms
for LeNet's 6->16 5x5 layer at batch 64, against 1.4 ms for PyTorch's whole backward).

Padding never materialises: ``im2col_batch`` writes the zeros of the padding itself, and
``col2im_batch`` drops what falls on the padding, writing the unpadded input gradient directly.

Both run in parallel: ``im2col_batch`` one task per tap row, ``col2im_batch`` one per (image,
channel) plane, so every task writes only its own part of the output and results do not depend
on the thread count. On 2 threads they took half the time of serial loops (LeNet's layers at
batch 64 and 64x28x28 3x3 at batch 8, median of 40 on a quiet machine: im2col 0.10-0.64 ms
against 0.25-1.4, col2im 0.10-0.69 against 0.16-1.2). A tap row of ``im2col_batch`` is its own
function: inlined in the parfor, the row loop ran 40% slower on 1 thread than as plain loops.

The loops index flat views with unsigned offsets: Numba checks every signed index for
wrap-around, which kept the short rows of small layers from being copied as vectors. Sliced
rows (as in ``kernels/im2col.py``) cost a slice per row instead, which dominated for rows of 8
(LeNet's second layer, batch 64: im2col 0.84 -> 0.65 ms, col2im 0.63 -> 0.35 ms; then
0.38 and 0.25 ms with the divisions hoisted).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import FASTMATH

__all__ = ["im2col_batch", "col2im_batch", "grad_weight_direct"]


@njit(cache=True, error_model="numpy")
def _im2col_row(x, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, r, cols):  # pragma: no cover
    """Tap row ``r`` of :func:`im2col_batch` for every image: ``cols[r]`` (nb, oh*ow)."""
    nb, c, h, w = x.shape
    npos = oh * ow
    xf = x.reshape(x.size)
    cf = cols.reshape(cols.size)
    usw = np.uint64(sw)
    # the divisions that locate a tap and its in-image columns, once per row (per (row, image)
    # they took half of the time at 8x8 outputs)
    ic = r // (kh * kw)
    i = (r // kw) % kh
    j = r % kw
    # output columns whose tap-j input column lies inside the image: 0 <= x*sw + c0 < w
    c0 = j * dw - pl
    x_lo = min(ow, max(0, (-c0 + sw - 1) // sw))
    x_hi = max(x_lo, min(ow, (w - 1 - c0) // sw + 1))
    n_in = x_hi - x_lo
    start = x_lo * sw + c0
    for b in range(nb):
        run = (r * nb + b) * npos  # cols[r, b]
        plane = (b * c + ic) * h * w  # x[b, ic]
        for yy in range(oh):
            iy = yy * sh + i * dh - pt
            d0 = np.uint64(run + yy * ow)
            if iy < 0 or iy >= h:
                for q in range(ow):
                    cf[d0 + np.uint64(q)] = 0.0
                continue
            for q in range(x_lo):
                cf[d0 + np.uint64(q)] = 0.0
            for q in range(x_hi, ow):
                cf[d0 + np.uint64(q)] = 0.0
            d1 = d0 + np.uint64(x_lo)
            s0 = np.uint64(plane + iy * w + start)
            if sw == 1:
                for q in range(n_in):
                    uq = np.uint64(q)
                    cf[d1 + uq] = xf[s0 + uq]
            else:
                for q in range(n_in):
                    uq = np.uint64(q)
                    cf[d1 + uq] = xf[s0 + uq * usw]


@njit(parallel=True, cache=True, error_model="numpy")
def im2col_batch(x, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, cols):  # pragma: no cover - compiled
    """Unfold every receptive field of the images ``x`` (nb, c, h, w), zero-padded by ``pt``
    rows on top and ``pl`` columns on the left as they are read; one parallel task per tap row.

    Args:
        x: (nb, c, h, w), contiguous, unpadded.
        kh, kw, sh, sw, pt, pl, dh, dw: kernel, stride, top/left padding and dilation.
        oh, ow: the convolution's output size.
        cols: (c*kh*kw, nb, oh*ow), contiguous, written completely.
    """
    for r in prange(cols.shape[0]):
        _im2col_row(x, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, r, cols)


@njit(cache=True, error_model="numpy")
def _in_image_columns(kw, sw, pl, dw, ow, w):  # pragma: no cover - compiled
    """Per kernel column j, the output columns ``[x_lo, x_hi)`` whose input column is inside
    the image (found once, not with divisions in every plane)."""
    x_lo = np.empty(kw, dtype=np.int64)
    x_hi = np.empty(kw, dtype=np.int64)
    for j in range(kw):
        c0 = j * dw - pl
        x_lo[j] = min(ow, max(0, (-c0 + sw - 1) // sw))
        x_hi[j] = max(x_lo[j], min(ow, (w - 1 - c0) // sw + 1))
    return x_lo, x_hi


@njit(parallel=True, cache=True, error_model="numpy")
def col2im_batch(dcols, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, gx):  # pragma: no cover - compiled
    """Adjoint of :func:`im2col_batch`: ``gx`` (nb, c, h, w) = the sum of ``dcols``
    (c*kh*kw, nb, oh*ow) over the taps that read each input element; taps on the padding
    are dropped.

    One parallel task per (image, channel) plane: a plane is zeroed, then only its rows of
    ``dcols`` add into it (while it is in cache), so no two threads touch one element and the
    order of the additions is fixed.

    Args:
        dcols: (c*kh*kw, nb, oh*ow), contiguous.
        kh, kw, sh, sw, pt, pl, dh, dw, oh, ow: as for :func:`im2col_batch`.
        gx: (nb, c, h, w), contiguous, written completely.
    """
    nb, c, h, w = gx.shape
    npos = oh * ow
    df = dcols.reshape(dcols.size)
    gf = gx.reshape(gx.size)
    usw = np.uint64(sw)
    x_lo, x_hi = _in_image_columns(kw, sw, pl, dw, ow, w)
    for t in prange(nb * c):  # t = b*c + ic: one plane of gx
        b = t // c
        ic = t - b * c
        plane = t * h * w
        for q in range(h * w):
            gf[np.uint64(plane + q)] = 0.0
        for i in range(kh):
            for j in range(kw):
                run = (((ic * kh + i) * kw + j) * nb + b) * npos  # dcols[r, b]
                lo = x_lo[j]
                n_in = x_hi[j] - lo
                start = lo * sw + j * dw - pl
                for yy in range(oh):
                    iy = yy * sh + i * dh - pt
                    if iy < 0 or iy >= h:
                        continue
                    s0 = np.uint64(run + yy * ow + lo)
                    d0 = np.uint64(plane + iy * w + start)
                    if sw == 1:
                        for q in range(n_in):
                            uq = np.uint64(q)
                            gf[d0 + uq] += df[s0 + uq]
                    else:
                        for q in range(n_in):
                            uq = np.uint64(q)
                            gf[d0 + uq * usw] += df[s0 + uq]


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def grad_weight_direct(xp, gy, kh, kw, sh, dh, dw, g, part):  # pragma: no cover - compiled
    """Weight gradient of a column-stride-1 convolution without lowering:
    ``part[r, o, ic, i, j] = sum over run r's images b, rows y, columns x of
    gy[b, o, y, x] * xp[b, gi*cg + ic, y*sh + i*dh, x + j*dw]`` (gi: o's group).

    For first layers (few input channels: LeNet's 1->6 5x5), whose lowered columns
    (c_in*kh*kw x n*oh*ow) cost more to write than the GEMM saves: each tap's input rows are
    read once for all of the group's output channels, accumulated in ``ow``-wide vectors over
    the rows, and reduced once per image and tap.

    Args:
        xp: zero-padded input (n, c_in, hp, wp), contiguous.
        gy: output gradient (n, c_out, oh, ow), contiguous.
        kh, kw, sh, dh, dw: kernel, row stride, dilation (column stride 1).
        g: groups.
        part: (runs, c_out, c_in/g, kh, kw) zeros; run r adds its images' sums (callers sum
            over runs: the result does not depend on the thread count).
    """
    n, c_in, hp, wp = xp.shape
    c_out, oh, ow = gy.shape[1], gy.shape[2], gy.shape[3]
    cg = c_in // g
    cog = c_out // g
    runs = part.shape[0]
    for rn in prange(runs):
        accv = np.empty((cog, ow), dtype=gy.dtype)
        dst = part[rn]
        for b in range(rn * n // runs, (rn + 1) * n // runs):
            for gi in range(g):
                for ic in range(cg):
                    c = gi * cg + ic
                    for i in range(kh):
                        for j in range(kw):
                            for o in range(cog):
                                a = accv[o]
                                for q in range(ow):
                                    a[q] = 0.0
                            for y in range(oh):
                                xr = xp[b, c, y * sh + i * dh, j * dw : j * dw + ow]
                                for o in range(cog):
                                    gr = gy[b, gi * cog + o, y]
                                    a = accv[o]
                                    for q in range(ow):
                                        a[q] += gr[q] * xr[q]
                            for o in range(cog):
                                a = accv[o]
                                s = 0.0
                                for q in range(ow):
                                    s += a[q]
                                dst[gi * cog + o, ic, i, j] += s
