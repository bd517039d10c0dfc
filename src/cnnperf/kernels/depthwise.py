"""Depthwise convolution for small planes: channels on the SIMD lanes, or "same"-padded flat runs.

Stride-1 layers with "same" padding run :func:`depthwise_conv2d_same`, 3x3 stride-2 layers
:func:`depthwise_conv2d_s2k3` (their docstrings); the rest of this docstring is about the
channels-last kernel, :func:`depthwise_conv2d_cl`.

MobileNet-style depthwise layers end in many channels of small planes (960 x 7x7, 576 x 14x14).
A kernel that vectorises along a plane's rows has 7 or 14 lanes of work per row, and pays its
per-plane set-up (padding, slicing, the row loops) 960 times per image. Laid out channels-last,
the same layer has 960 lanes at every pixel: this is the blocked layout oneDNN and ONNX
Runtime's MLAS use for depthwise convolution (NCHWc; e.g. Zhang et al., "High Performance
Depthwise and Pointwise Convolutions on Mobile Devices", AAAI 2020).

Each parallel task takes one image and a block of ``cb`` channels:

1. Gather the block into a zero-padded, channels-last buffer whose columns are split into stride
   phases: ``t[r, (j % sw), v, c] = xp[c, r, v*sw + (j % sw)]`` (the only transpose: NCHW in,
   NCHW out). For a tap (i, j), the ``ow * cb`` values an output row reads are then one
   contiguous run: row ``y*sh + i*dh``, phase ``(j*dw) % sw``, from column ``(j*dw) // sw``.
2. The weight of each tap is tiled ``ow`` times along that run (once per task), so one output
   row of every channel in the block is ``sum_taps w_tiled[tap] * run[tap]``: a single loop of
   ``ow * cb`` lanes with all the taps of a 3x3 kernel fused, instead of ``cb`` loops of ``ow``.
3. Write ``act(acc + bias)`` back to the block's NCHW output planes.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import FASTMATH
from .epilogue import act_row

__all__ = [
    "depthwise_conv2d_cl",
    "depthwise_conv2d_same",
    "depthwise_conv2d_s2k3",
    "tile_weight",
    "tile_bias",
    "CL_BLOCK",
    "SAME_CHUNK",
]

# Channels per task: 64 float32 lanes = 8 AVX2 vectors; the padded block of a 14x14 plane is
# then 16*16*64*4 = 64 KiB (L2), and one output row of 14 pixels 3.5 KiB.
CL_BLOCK = 64


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def depthwise_conv2d_cl(
    x, w_tiled, b_tiled, kh, kw, sh, sw, pt, pl, hp, wp, dh, dw, cb, runs, act, alpha, out
):  # pragma: no cover - compiled
    """Depthwise convolution (groups == c_in == c_out) with zero padding, fused bias and
    activation: ``out[b, c, y, x] = act(bias[c] + sum_{i,j} w[c, 0, i, j] *
    xp[b, c, y*sh + i*dh, x*sw + j*dw])``.

    Args:
        x: input (n, c, h, w), contiguous, not padded.
        w_tiled: the weight tiled along output rows (nb, kh*kw, ow*cb), from
            :func:`tile_weight` (step 2).
        b_tiled: the bias likewise, (nb, ow*cb).
        kh, kw: kernel size.
        sh, sw, pt, pl, hp, wp, dh, dw: stride, top/left padding, padded size, dilation.
        cb: channels per task.
        runs: runs of consecutive tasks dealt out to the threads (buffers allocated per run).
        act, alpha: fused activation (``kernels.epilogue`` codes).
        out: (n, c, oh, ow), written completely.
    """
    n, c, h, wi = x.shape
    oh = out.shape[2]
    ow = out.shape[3]
    wq = (wp + sw - 1) // sw  # columns per phase
    nb = (c + cb - 1) // cb
    tasks = n * nb
    runs = min(tasks, max(1, runs))
    lanes = ow * cb
    for rn in prange(runs):
        t = np.zeros((hp, sw, wq * cb), dtype=x.dtype)
        acc = np.empty(lanes, dtype=out.dtype)
        for task in range(rn * tasks // runs, (rn + 1) * tasks // runs):
            b = task // nb
            c0 = (task % nb) * cb
            m = min(cb, c - c0)
            if m < cb:  # a narrower last block: lanes past m hold zeros, never stale values
                t[:] = 0.0
            _gather_cl(x, b, c0, m, cb, h, wi, pt, pl, sw, wq, t)
            wt = w_tiled[task % nb]  # (kh*kw, lanes), C-contiguous: rows vectorise
            bt = b_tiled[task % nb]
            for y in range(oh):
                if kw == 3:
                    # a row of three taps per pass: more arrays in one loop exceed LLVM's
                    # runtime alias-check budget and the loop stays scalar (measured 4x slower)
                    for i in range(kh):
                        r = y * sh + i * dh
                        r0 = _run(t, r, 0, sw, dw, cb, lanes)
                        r1 = _run(t, r, 1, sw, dw, cb, lanes)
                        r2 = _run(t, r, 2, sw, dw, cb, lanes)
                        w0 = wt[3 * i]
                        w1 = wt[3 * i + 1]
                        w2 = wt[3 * i + 2]
                        if i == 0:
                            for q in range(lanes):
                                acc[q] = bt[q] + w0[q] * r0[q] + w1[q] * r1[q] + w2[q] * r2[q]
                        else:
                            for q in range(lanes):
                                acc[q] += w0[q] * r0[q] + w1[q] * r1[q] + w2[q] * r2[q]
                else:
                    for q in range(lanes):
                        acc[q] = bt[q]
                    for tap in range(kh * kw):
                        rr = _run(t, y * sh + (tap // kw) * dh, tap % kw, sw, dw, cb, lanes)
                        wr = wt[tap]
                        for q in range(lanes):
                            acc[q] += wr[q] * rr[q]
                # step 3: back to NCHW, with the activation
                for cc in range(m):
                    orow = out[b, c0 + cc, y]
                    for xo in range(ow):
                        orow[xo] = acc[xo * cb + cc]
                    act_row(orow, orow, ow, act, alpha)  # in L1; vectorised per activation


@njit(cache=True, inline="always")
def _run(t, r, j, sw, dw, cb, lanes):  # pragma: no cover - compiled
    """The ``lanes`` = ow*cb contiguous values tap column ``j`` reads along padded row ``r``."""
    start = ((j * dw) // sw) * cb
    return t[r, (j * dw) % sw, start : start + lanes]


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _gather_cl(x, b, c0, m, cb, h, wi, pt, pl, sw, wq, t):  # pragma: no cover - compiled
    """Step 1: channels ``[c0, c0 + m)`` of image ``b`` into ``t`` (hp, sw, wq*cb), channels
    last, columns split into stride phases; the padding positions are left as they are (zero)."""
    # channels innermost: the writes run along t's rows; the reads hop between the block's
    # planes, but each plane's current cache line is reused by the next column
    xb = x[b]
    for r in range(h):
        trow = t[r + pt]
        for col in range(wi):
            pc = col + pl
            dst = trow[pc % sw, (pc // sw) * cb : (pc // sw) * cb + m]
            for cc in range(m):
                dst[cc] = xb[c0 + cc, r, col]


def tile_weight(weight: np.ndarray, ow: int, cb: int = CL_BLOCK) -> np.ndarray:
    """Step 2's weight: ``weight`` (c, 1, kh, kw) as (nb, kh*kw, ow*cb), channel block ``k`` of
    tap ``i*kw + j`` repeated for each of the ``ow`` output columns, channels past ``c`` zero.
    Plain NumPy, once per weight and output width (a plan keeps it)."""
    c, _, kh, kw = weight.shape
    nb = -(-c // cb)
    wc = np.zeros((kh * kw, nb * cb), dtype=weight.dtype)
    wc[:, :c] = weight.reshape(c, kh * kw).T
    wc = wc.reshape(kh * kw, nb, cb).transpose(1, 0, 2)  # (nb, kh*kw, cb)
    w_t = np.broadcast_to(wc.reshape(nb, kh * kw, 1, cb), (nb, kh * kw, ow, cb))
    return np.ascontiguousarray(w_t).reshape(nb, kh * kw, ow * cb)


def tile_bias(bias: np.ndarray, ow: int, cb: int = CL_BLOCK) -> np.ndarray:
    """Step 2's bias: (c,) as (nb, ow*cb), like :func:`tile_weight`."""
    c = bias.shape[0]
    nb = -(-c // cb)
    bc = np.zeros((nb, 1, cb), dtype=bias.dtype)
    bc.reshape(-1)[:c] = bias
    return np.ascontiguousarray(np.broadcast_to(bc, (nb, ow, cb))).reshape(nb, ow * cb)


# Flat outputs per pass: a fixed trip count that LLVM vectorises without a scalar remainder
# (8 AVX2 vectors; measured against 32: 576x14x14 0.157 vs 0.179 ms single-threaded).
SAME_CHUNK = 64


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def depthwise_conv2d_same(x, w, bias, runs, act, alpha, out):  # pragma: no cover - compiled
    """Depthwise convolution, stride 1, no dilation, odd kernel with "same" zero padding
    (``kh // 2`` rows and ``kw // 2`` columns on each side), fused bias and activation; ``out``
    (n, c, h, w) is written completely. One task per channel over the whole batch.

    The channel's planes are copied whole (one contiguous copy each: no per-row padding) into a
    buffer with ``kh // 2`` zero rows above, between and below them, keeping the plane's own
    row pitch ``w``. Every output of the stack is then a flat run: tap (i, j) of flat output
    ``q`` reads ``buf[q + i*w + j]``, so each pass over a chunk of SAME_CHUNK outputs is one
    vectorised loop (fixed trip count: no scalar remainder on 7- or 14-wide rows). The zero rows
    give the top and bottom padding; the left and right padding do not exist in this layout:
    the ``kw // 2`` columns at each end of a row read the neighbouring row's ends instead, and
    are corrected afterwards (those terms subtracted, or, if the channel holds an Inf or NaN,
    where a subtraction would leave NaN, recomputed from their valid taps).

    Args:
        x: input (n, c, h, w), contiguous.
        w: weight (c, 1, kh, kw), kh and kw odd.
        bias: (c,) (zeros when the convolution has none).
        runs: runs of consecutive channels dealt out to the threads.
        act, alpha: fused activation (``kernels.epilogue`` codes).
        out: (n, c, h, w).
    """
    n, c, h, wi = x.shape
    kh, kw = w.shape[2], w.shape[3]
    ph = kh // 2
    pw = kw // 2
    hw = h * wi
    pitch = (h + ph) * wi  # one image's plane plus the ph zero rows after it
    rows = n * (h + ph)  # output rows of the stack (separator rows are dropped)
    nv = (rows * wi + SAME_CHUNK - 1) // SAME_CHUNK
    lead = ph * wi + pw
    size = lead + nv * SAME_CHUNK + (kh - 1) * wi + kw
    runs = min(c, max(1, runs))
    for rn in prange(runs):
        buf = np.zeros(size, dtype=x.dtype)
        acc = np.empty(nv * SAME_CHUNK, dtype=out.dtype)
        for ch in range(rn * c // runs, (rn + 1) * c // runs):
            finite = 0.0  # stays 0 unless the channel holds an Inf or NaN (v * 0 is NaN)
            for b in range(n):
                src = x[b, ch].reshape(hw)
                dst_in = buf[lead + b * pitch : lead + b * pitch + hw]
                for q in range(hw):
                    v = src[q]
                    dst_in[q] = v
                    finite += v * 0.0
            wk = w[ch, 0]
            bv = bias[ch]
            for k in range(nv):
                k0 = k * SAME_CHUNK
                d = acc[k0 : k0 + SAME_CHUNK]
                for q in range(SAME_CHUNK):
                    d[q] = bv
                for i in range(kh):
                    base = k0 + i * wi
                    if kw == 3:
                        s0 = buf[base : base + SAME_CHUNK]
                        s1 = buf[base + 1 : base + 1 + SAME_CHUNK]
                        s2 = buf[base + 2 : base + 2 + SAME_CHUNK]
                        w0 = wk[i, 0]
                        w1 = wk[i, 1]
                        w2 = wk[i, 2]
                        for q in range(SAME_CHUNK):
                            d[q] += w0 * s0[q] + w1 * s1[q] + w2 * s2[q]
                    else:
                        for j in range(kw):
                            s = buf[base + j : base + j + SAME_CHUNK]
                            wv = wk[i, j]
                            for q in range(SAME_CHUNK):
                                d[q] += wv * s[q]
            if finite == 0.0:
                # columns within pw of a row's ends read the neighbour rows' ends, not the zero
                # padding: subtract those terms
                for xo in range(pw):
                    xr = wi - 1 - xo
                    for i in range(kh):
                        for j in range(pw - xo):
                            wv = wk[i, j]
                            off = i * wi + xo + j
                            for y in range(rows):
                                acc[y * wi + xo] -= wv * buf[y * wi + off]
                        for j in range(kw - pw + xo, kw):
                            wv = wk[i, j]
                            off = i * wi + xr + j
                            for y in range(rows):
                                acc[y * wi + xr] -= wv * buf[y * wi + off]
            else:
                # columns within pw of a row's ends: the flat pass above read the neighbour rows'
                # ends there (not the zero padding); recompute them from their valid taps only
                for xo in range(2 * pw):
                    xc = xo if xo < pw else wi - 2 * pw + xo
                    if xo >= pw and xc < pw:
                        continue  # a plane narrower than 2*pw: that column was done as a left one
                    for y in range(rows):
                        acc[y * wi + xc] = bv
                    for j in range(kw):
                        if xc + j - pw < 0 or xc + j - pw >= wi:
                            continue
                        for i in range(kh):
                            wv = wk[i, j]
                            off = i * wi + xc + j
                            for y in range(rows):
                                acc[y * wi + xc] += wv * buf[y * wi + off]
            for b in range(n):
                act_row(out[b, ch].reshape(hw), acc[b * pitch : b * pitch + hw], hw, act, alpha)


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def depthwise_conv2d_s2k3(x, w, bias, runs, act, alpha, out):  # pragma: no cover - compiled
    """Depthwise 3x3 convolution, stride 2, padding 1 on every side, no dilation, fused bias
    and activation; ``out`` (n, c, (h+1)//2, (w+1)//2) is written completely. One task per
    channel over the whole batch; the flat-run scheme of :func:`depthwise_conv2d_same`.

    Each input row is split once into its even and odd columns, into four phase buffers (row
    parity x column parity) whose rows are ``ow`` wide, the planes of the batch stacked with a
    zero row above each. Tap (i, j) of output (y, x) then reads phase (1 unless i == 1, 1
    unless j == 1) at row ``y - (i == 0)``, column ``x - (j == 0)``: every tap is a flat run at
    a fixed offset, and output rows are flat runs of SAME_CHUNK. The phase planes' missing
    last row / column (odd sizes) stay zero, as the bottom and right padding are; the left
    padding does not exist in this layout: column 0's j == 0 taps read the previous row's last
    odd column, and are taken out afterwards (recomputed instead where the channel holds an
    Inf or NaN).

    Args as :func:`depthwise_conv2d_same`; ``w`` is (c, 1, 3, 3).
    """
    n, c, h, wi = x.shape
    oh = out.shape[2]
    ow = out.shape[3]
    we = (wi + 1) // 2  # even and odd columns of a row
    wo = wi // 2
    prow = oh + 1  # stacked rows per image: one zero row, then oh phase rows
    total = n * prow * ow
    nv = (total + SAME_CHUNK - 1) // SAME_CHUNK
    lead = ow + 1  # a zero row and one slack value before stacked row 0 (read by its taps)
    size = lead + nv * SAME_CHUNK + ow + 2
    runs = min(c, max(1, runs))
    for rn in prange(runs):
        buf = np.zeros((4, size), dtype=x.dtype)  # phase (row parity * 2 + column parity)
        acc = np.empty(nv * SAME_CHUNK, dtype=out.dtype)
        for ch in range(rn * c // runs, (rn + 1) * c // runs):
            finite = 0.0
            for b in range(n):
                plane = x[b, ch]
                for ih in range(h):
                    pr = ih % 2
                    r = ih // 2
                    base = lead + (b * prow + 1 + r) * ow
                    row = plane[ih]
                    ev = buf[2 * pr, base : base + we]
                    od = buf[2 * pr + 1, base : base + wo]
                    for k in range(wo):
                        a0 = row[2 * k]
                        a1 = row[2 * k + 1]
                        ev[k] = a0
                        od[k] = a1
                        finite += a0 * 0.0 + a1 * 0.0
                    if we > wo:
                        a0 = row[wi - 1]
                        ev[we - 1] = a0
                        finite += a0 * 0.0
            wk = w[ch, 0]
            bv = bias[ch]
            for k in range(nv):
                k0 = k * SAME_CHUNK
                d = acc[k0 : k0 + SAME_CHUNK]
                # tap (i, j): row phase 1 for i != 1 (offset -1 row for i == 0), column phase 1
                # for j != 1 (offset -1 column for j == 0)
                for i in range(3):
                    pr = 0 if i == 1 else 1
                    s = lead + k0 - (ow if i == 0 else 0)
                    s0 = buf[2 * pr + 1, s - 1 : s - 1 + SAME_CHUNK]
                    s1 = buf[2 * pr, s : s + SAME_CHUNK]
                    s2 = buf[2 * pr + 1, s : s + SAME_CHUNK]
                    w0 = wk[i, 0]
                    w1 = wk[i, 1]
                    w2 = wk[i, 2]
                    if i == 0:
                        for q in range(SAME_CHUNK):
                            d[q] = bv + w0 * s0[q] + w1 * s1[q] + w2 * s2[q]
                    else:
                        for q in range(SAME_CHUNK):
                            d[q] += w0 * s0[q] + w1 * s1[q] + w2 * s2[q]
            rows = n * prow
            if finite == 0.0:
                # column 0's j == 0 taps read the previous row's last odd column: take them out
                for i in range(3):
                    pr = 0 if i == 1 else 1
                    wv = wk[i, 0]
                    off = lead - 1 - (ow if i == 0 else 0)
                    src = buf[2 * pr + 1]
                    for y in range(rows):
                        acc[y * ow] -= wv * src[off + y * ow]
            else:
                for y in range(rows):
                    v = bv
                    for i in range(3):
                        pr = 0 if i == 1 else 1
                        s = lead + y * ow - (ow if i == 0 else 0)
                        v += wk[i, 1] * buf[2 * pr, s] + wk[i, 2] * buf[2 * pr + 1, s]
                    acc[y * ow] = v
            for b in range(n):
                o0 = (b * prow + 1) * ow
                act_row(out[b, ch].reshape(oh * ow), acc[o0 : o0 + oh * ow], oh * ow, act, alpha)
