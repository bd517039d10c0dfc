"""Depthwise convolution with channels on the SIMD lanes, for small planes.

MobileNet-style depthwise layers end in many channels of small planes (960 x 7x7, 576 x 14x14).
A kernel that vectorises along a plane's rows has 7 or 14 lanes of work per row, and pays its
per-plane set-up (padding, slicing, the row loops) 960 times per image. Laid out channels-last,
the same layer has 960 lanes at every pixel: this is the blocked layout oneDNN and ONNX
Runtime's MLAS use for depthwise convolution (NCHWc; e.g. Zhang et al., "High Performance
Depthwise and Pointwise Convolutions on Mobile Devices", AAAI 2020).

Each parallel task takes one image and a block of ``cb`` channels:
1. gather the block into a zero-padded, channels-last buffer ``t`` (hp, wp, cb) in L1/L2 (the
   only transpose: NCHW in, NCHW out, nothing else changes layout);
2. for each output pixel, accumulate the kh*kw taps as ``cb``-wide vector FMAs
   ``acc[:] += w[i, j, :] * t[y*sh + i*dh, x*sw + j*dw, :]``;
3. write ``act(acc + bias)`` to the block's output planes at that pixel.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import FASTMATH
from .epilogue import act_scalar

__all__ = ["depthwise_conv2d_cl", "CL_BLOCK"]

# Channels per task: 64 float32 lanes = 8 AVX2 vectors of accumulators; the padded block of a
# 14x14 plane is then 16*16*64*4 = 64 KiB (L2).
CL_BLOCK = 64


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def depthwise_conv2d_cl(
    x, w_cl, bias, sh, sw, pt, pl, hp, wp, dh, dw, cb, runs, act, alpha, out
):  # pragma: no cover - compiled
    """Depthwise convolution (groups == c_in == c_out) with zero padding, fused bias and
    activation: ``out[b, c, y, x] = act(bias[c] + sum_{i,j} w[c, 0, i, j] *
    xp[b, c, y*sh + i*dh, x*sw + j*dw])``.

    Args:
        x: input (n, c, h, w), contiguous, not padded.
        w_cl: the weight channels-last, (kh, kw, c).
        bias: (c,) (zeros when the convolution has none).
        sh, sw, pt, pl, hp, wp, dh, dw: stride, top/left padding, padded size, dilation.
        cb: channels per task.
        runs: runs of consecutive tasks dealt out to the threads (buffers allocated per run).
        act, alpha: fused activation (``kernels.epilogue`` codes).
        out: (n, c, oh, ow), written completely.
    """
    n, c, h, wi = x.shape
    kh, kw, _ = w_cl.shape
    oh = out.shape[2]
    ow = out.shape[3]
    nb = (c + cb - 1) // cb
    tasks = n * nb
    runs = min(tasks, max(1, runs))
    for rn in prange(runs):
        t = np.zeros((hp, wp, cb), dtype=x.dtype)  # borders stay zero: every task writes only
        acc = np.empty((ow, cb), dtype=out.dtype)  # the interior of its own block
        for task in range(rn * tasks // runs, (rn + 1) * tasks // runs):
            b = task // nb
            c0 = (task % nb) * cb
            m = min(cb, c - c0)
            if m < cb:  # the last, narrower block: lanes past m must not keep stale values
                t[:] = 0.0
            for cc in range(m):
                plane = x[b, c0 + cc]
                for r in range(h):
                    for col in range(wi):
                        t[r + pt, col + pl, cc] = plane[r, col]
            bv = bias[c0 : c0 + m]
            for y in range(oh):
                for xo in range(ow):
                    for cc in range(m):
                        acc[xo, cc] = bv[cc]
                for i in range(kh):
                    trow = t[y * sh + i * dh]
                    for j in range(kw):
                        wv = w_cl[i, j, c0 : c0 + m]
                        for xo in range(ow):
                            q = xo * sw + j * dw
                            for cc in range(m):
                                acc[xo, cc] += wv[cc] * trow[q, cc]
                for cc in range(m):
                    orow = out[b, c0 + cc, y]
                    if act == 0:
                        for xo in range(ow):
                            orow[xo] = acc[xo, cc]
                    else:
                        for xo in range(ow):
                            orow[xo] = act_scalar(float(acc[xo, cc]), act, alpha)
