"""Pooling kernels driven by per-axis window tables.

Every 2-D pooling window here is the product of a row range and a column range, so a pool of
any kind (strided, padded, dilated, ceil-mode, adaptive) reduces to four small int64 tables
built once by ``ops.pool``: ``hs[i]``/``he[i]``, the first in-bounds tap row and the (exclusive)
stop of output row ``i``, and ``ws[j]``/``we[j]`` for output column ``j``. Taps step by the
dilation (1 for average and adaptive pools). Padding never appears in a kernel: the tables
already clip windows to the input, and average pools get their divisor as a (oh, ow) table.

This makes the four kernels below serve all six public pools (adaptive pooling windows follow
PyTorch: ``[floor(i*in/out), ceil((i+1)*in/out))``, see ``shapes.adaptive_bounds``), which keeps
the number of compiled specialisations at four kernels x two dtypes.

Max pooling gives exactly what PyTorch's CPU kernel (aten/src/ATen/native/cpu/MaxPoolKernel.cpp)
gives: a running maximum that starts at -inf, with the window's first in-bounds tap as its index,
and is replaced when ``v > max or isnan(v)``. So NaN propagates (the last NaN's index wins), ties
keep the first tap, and an all -inf window yields -inf with a valid index (see
``max_pool2d_windows``). No fastmath for max pooling: the NaN test must survive compilation.

Forward kernels run one parallel task per (plane, output row); backward kernels scatter and so
run one task per plane, which keeps overlapping windows from racing. Results do not depend on
the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import FASTMATH

__all__ = [
    "max_pool2d_windows",
    "max_pool2d_3x3s2",
    "max_pool2d_scatter",
    "avg_pool2d_windows",
    "avg_pool2d_scatter",
]


@njit(parallel=True, cache=True, error_model="numpy")
def max_pool2d_windows(
    x, hs, he, ws, we, dh, dw, kw, sw, pw, j_lo, j_hi, want_idx, out, idx
):  # pragma: no cover - compiled
    """Window maxima and, if ``want_idx``, their flat indices ``ih*w + iw`` (PyTorch's rule).

    Without indices, a branch-free select: for the interior outputs ``j_lo <= j < j_hi``,
    whose column taps ``j*sw + b*dw - pw`` (b < kw) all lie inside the row, it runs across
    outputs so that LLVM vectorises it; the clipped border outputs walk their own taps. Each
    output still sees its taps in PyTorch's order (rows, then columns).

    With indices, one pass per output over its taps, keeping the maximum and its index
    together: ``take = v > m or isnan(v)``, the maximum as ``max(m, v)`` (a select) unless v
    is NaN, and the index updated arithmetically (``k = cand*take + k*(1 - take)``). Written
    with conditional expressions the compiler emitted a branch per tap, mispredicted on real
    data: LeNet's 2x2 pool of a 64x6x24x24 map took 1.2 ms that way (a first pass for the
    maxima and a second scan for the index) and 0.6 ms in one pass with selects (the maxima
    alone, vectorised, take 0.5 ms).

    Args:
        x: input planes (p, h, w), contiguous.
        hs, he: (oh,) int64 first in-bounds tap row and exclusive stop; taps ``hs, hs+dh, ...``.
        ws, we: (ow,) int64, likewise for columns with step ``dw``.
        kw, sw, pw: the column kernel, stride and padding behind ``ws`` (interior outputs only).
        j_lo, j_hi: the interior outputs; ``j_lo == j_hi`` (e.g. adaptive pools) uses none.
        want_idx: compute ``idx``; when False ``idx`` is not touched (may be empty).
        out: (p, oh, ow), same dtype as ``x``, written completely.
        idx: (p, oh, ow) int64.
    """
    n_planes, h, w = x.shape
    oh = out.shape[1]
    ow = out.shape[2]
    ninf = np.full(1, -np.inf, dtype=x.dtype)[0]
    # 2x2 windows at stride 2, all inside the input (no padding, no ceil overhang)
    pairs = kw == 2 and sw == 2 and pw == 0 and dh == 1 and dw == 1 and j_lo == 0
    pairs = pairs and j_hi == ow and 2 * ow <= w and 2 * oh <= h
    for i in range(oh):
        pairs = pairs and hs[i] == 2 * i and he[i] == 2 * i + 2
    # taps per output column (a division per output would cost as much as the taps)
    n_w = np.empty(ow, dtype=np.int64)
    for j in range(ow):
        n_w[j] = max(0, (we[j] - ws[j] + dw - 1) // dw)
    for t in prange(n_planes * oh):
        p = t // oh
        i = t - p * oh
        plane = x[p]
        h0 = hs[i]
        h1 = he[i]
        orow = out[p, i]
        if pairs:
            # The four taps of an output at constant offsets: straight-line selects that LLVM
            # vectorises across outputs (LeNet's 64x6x24x24 with indices 0.70 -> 0.31 ms,
            # 8x64x56x56 4.3 -> 0.9 ms). The first tap always replaces the initial -inf (or
            # equals it); the index is the tap's number k, 0..3 in PyTorch's order.
            r0 = plane[2 * i]
            r1 = plane[2 * i + 1]
            if not want_idx:
                for j in range(ow):
                    m = r0[2 * j]
                    for v in (r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]):
                        m = max(m, v) if v == v else v
                    orow[j] = m
                continue
            irow = idx[p, i]
            base = 2 * i * w
            for j in range(ow):
                a = r0[2 * j]
                b = r0[2 * j + 1]
                c = r1[2 * j]
                d = r1[2 * j + 1]
                m = a
                k = 0
                tb = (b > m) | (b != b)
                m = max(m, b) if b == b else b
                k = tb * 1 + (1 - tb) * k
                tc = (c > m) | (c != c)
                m = max(m, c) if c == c else c
                k = tc * 2 + (1 - tc) * k
                td = (d > m) | (d != d)
                m = max(m, d) if d == d else d
                k = td * 3 + (1 - td) * k
                orow[j] = m
                irow[j] = base + (k >> 1) * w + 2 * j + (k & 1)
            continue
        if want_idx:
            irow = idx[p, i]
            n_h = max(0, (h1 - h0 + dh - 1) // dh)
            for j in range(ow):
                w0 = ws[j]
                nw = n_w[j]
                m = ninf
                k = h0 * w + w0  # kept when the window has no in-bounds tap at all
                for a in range(n_h):
                    ih = h0 + a * dh
                    row = plane[ih]
                    base = ih * w
                    for b in range(nw):
                        iw = w0 + b * dw
                        v = row[iw]
                        take = (v > m) | (v != v)
                        m = max(m, v) if not (v != v) else v
                        k = (base + iw) * take + k * (1 - take)
                orow[j] = m
                irow[j] = k
            continue
        for j in range(ow):
            orow[j] = ninf
        for ih in range(h0, h1, dh):
            row = plane[ih]
            for b in range(kw):
                # interior outputs: tap b of output j reads row[j*sw + b*dw - pw]; the row is
                # sliced at the first one (an offset inside the index blocks vectorising) and
                # the select is written with `|`, not `or` (a short-circuit is a branch per
                # tap, mispredicted on real data: ResNet-18's 3x3/2 pool of 64x112x112 took
                # 2.7 ms that way)
                if j_hi <= j_lo:
                    continue
                src = row[j_lo * sw + b * dw - pw :]
                dst = orow[j_lo:j_hi]
                if sw == 2:
                    for q in range(j_hi - j_lo):
                        v = src[2 * q]
                        m = dst[q]
                        dst[q] = v if (v > m) | (v != v) else m
                else:
                    for q in range(j_hi - j_lo):
                        v = src[q * sw]
                        m = dst[q]
                        dst[q] = v if (v > m) | (v != v) else m
            for j in range(ow):
                if j < j_lo or j >= j_hi:
                    m = orow[j]
                    for iw in range(ws[j], we[j], dw):
                        v = row[iw]
                        m = v if (v > m or v != v) else m
                    orow[j] = m


@njit(parallel=True, cache=True, error_model="numpy")
def max_pool2d_scatter(grad_out, idx, grad_x):  # pragma: no cover - compiled
    """``grad_x[p].flat[idx[p, i, j]] += grad_out[p, i, j]``, zeroing ``grad_x`` first.

    Indices outside ``[0, h*w)`` (PyTorch emits one for a window with no in-bounds tap, possible
    with large dilations) are skipped; PyTorch's own CPU backward writes out of bounds there.

    Args:
        grad_out: (p, oh, ow), contiguous.
        idx: (p, oh, ow) int64 flat indices into an input plane.
        grad_x: (p, h, w), contiguous, written completely.
    """
    n_planes, h, w = grad_x.shape
    hw = h * w
    m = grad_out.shape[1] * grad_out.shape[2]
    gx = grad_x.reshape(n_planes, hw)  # (p, h*w)
    go = grad_out.reshape(n_planes, m)  # (p, oh*ow)
    ix = idx.reshape(n_planes, m)  # (p, oh*ow)
    for p in prange(n_planes):
        g = gx[p]
        g[:] = 0
        gop = go[p]
        ixp = ix[p]
        for o in range(m):
            k = ixp[o]
            if k >= 0 and k < hw:
                g[k] += gop[o]


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def avg_pool2d_windows(x, hs, he, ws, we, div, out):  # pragma: no cover - compiled
    """``out[p, i, j] = sum(x[p, hs[i]:he[i], ws[j]:we[j]]) / div[i, j]``, summed in float64.

    A window spanning whole rows (global pooling) is summed as one contiguous run, which LLVM
    vectorises (5x faster than row by row on a 56x56 plane). An empty window (none occur for
    valid PyTorch arguments) gives 0, as in PyTorch.

    Args:
        x: input planes (p, h, w), contiguous.
        hs, he, ws, we: int64 window tables, already clipped to the input.
        div: (oh, ow) float64 divisors, non-zero.
        out: (p, oh, ow), same dtype as ``x``, written completely.
    """
    n_planes, h, w = x.shape
    oh = out.shape[1]
    ow = out.shape[2]
    flat = x.reshape(n_planes, h * w)  # (p, h*w)
    for t in prange(n_planes * oh):
        p = t // oh
        i = t - p * oh
        plane = x[p]
        h0 = hs[i]
        h1 = he[i]
        orow = out[p, i]
        for j in range(ow):
            w0 = ws[j]
            w1 = we[j]
            s = 0.0
            # slices give loops with non-negative indices: no wrap-around checks to vectorise
            if w0 == 0 and w1 == w:
                seg = flat[p, h0 * w : h1 * w]
                for k in range(seg.shape[0]):
                    s += seg[k]
            else:
                for ih in range(h0, h1):
                    seg = plane[ih, w0:w1]
                    for k in range(seg.shape[0]):
                        s += seg[k]
            orow[j] = s / div[i, j]


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def avg_pool2d_scatter(grad_out, hs, he, ws, we, div, grad_x):  # pragma: no cover - compiled
    """Adjoint of ``avg_pool2d_windows``: each window gets ``grad_out / div`` (``grad_x`` zeroed).

    The share ``grad_out / div`` is rounded to ``grad_x``'s dtype once, then added to each
    element of the window (as PyTorch does), so the row loops stay in one dtype and vectorise.

    Args:
        grad_out: (p, oh, ow), contiguous.
        hs, he, ws, we, div: the tables the forward pass used.
        grad_x: (p, h, w), written completely.
    """
    n_planes = grad_x.shape[0]
    oh = grad_out.shape[1]
    ow = grad_out.shape[2]
    for p in prange(n_planes):
        g = grad_x[p]
        g[:, :] = 0
        go = grad_out[p]
        share = np.empty(1, dtype=grad_x.dtype)  # gives ``d`` grad_x's dtype
        for i in range(oh):
            h0 = hs[i]
            h1 = he[i]
            for j in range(ow):
                share[0] = go[i, j] / div[i, j]
                d = share[0]
                w0 = ws[j]
                w1 = we[j]
                for ih in range(h0, h1):
                    seg = g[ih, w0:w1]
                    for k in range(seg.shape[0]):
                        seg[k] += d


@njit(inline="always", error_model="numpy")
def _first_max(m, v):  # pragma: no cover - compiled
    """PyTorch's running maximum: ``v`` replaces ``m`` if larger or NaN (ties keep ``m``)."""
    return v if (v > m) | (v != v) else m


@njit(parallel=True, cache=True, error_model="numpy")
def max_pool2d_3x3s2(x, runs, out):  # pragma: no cover - compiled
    """Max pooling, 3x3 window, stride 2, padding 1, no dilation, input width even (ResNet's
    pool after the stem), without indices; ``out`` (p, (h+1)//2, w//2) is written completely.

    Separable: each input row's three-column maxima first, then three of those rows. The row
    is split into its even and odd columns by one flat loop (a stride-2 interleave LLVM
    vectorises), so output column ``j``'s taps ``2j-1, 2j, 2j+1`` are ``odd[j-1], even[j],
    odd[j]``: contiguous runs, and both passes vectorise. Each maximum is taken in PyTorch's
    tap order (rows, then columns; the first of equal values is kept, a NaN wins), and the
    earliest row holding the window's maximum, at its earliest column, is the first such tap
    in that order, so the result is PyTorch's bit for bit, the sign of a zero included.
    Measured on 64x112x112, 2 threads (min of 30 interleaved calls): batch 1 0.24 ms against
    1.08 ms for :func:`max_pool2d_windows` (PyTorch 2.13: 3.6 ms), batch 8 2.3 against 8.2.

    Args:
        x: planes (p, h, w), contiguous, ``w`` even.
        runs: runs of consecutive planes dealt out to the threads.
        out: (p, oh, ow) with ``oh = (h + 1) // 2``, ``ow = w // 2``.
    """
    n_planes, h, w = x.shape
    oh = out.shape[1]
    ow = out.shape[2]
    runs = min(n_planes, max(1, runs))
    for rn in prange(runs):
        hm = np.empty((h, ow), dtype=x.dtype)  # three-column maxima of every row
        ev = np.empty(ow, dtype=x.dtype)
        od = np.empty(ow, dtype=x.dtype)
        for pl in range(rn * n_planes // runs, (rn + 1) * n_planes // runs):
            plane = x[pl]
            for r in range(h):
                row = plane[r]
                for k in range(ow):
                    ev[k] = row[2 * k]
                    od[k] = row[2 * k + 1]
                hr = hm[r]
                hr[0] = _first_max(ev[0], od[0])  # column -1 is padding
                e1 = ev[1:]
                o0 = od[: ow - 1]
                o1 = od[1:]
                h1 = hr[1:]
                for k in range(ow - 1):
                    h1[k] = _first_max(_first_max(o0[k], e1[k]), o1[k])
            for i in range(oh):
                orow = out[pl, i]
                mid = hm[2 * i]
                if i == 0:
                    for k in range(ow):
                        orow[k] = mid[k]
                else:
                    top = hm[2 * i - 1]
                    for k in range(ow):
                        orow[k] = _first_max(top[k], mid[k])
                if 2 * i + 1 < h:
                    bot = hm[2 * i + 1]
                    for k in range(ow):
                        orow[k] = _first_max(orow[k], bot[k])
