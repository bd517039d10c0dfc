"""A 1x1 expansion fused with the depthwise conv that reads it: :func:`expand_depthwise_blocked`.

In MobileNet's inverted residual blocks a 1x1 convolution widens the channels six times and a
depthwise convolution reads the result once. Run as two layers, the wide activation makes a
round trip through memory: 38 MB each way for MobileNetV2's 16->96 expansion on 112x112 at
batch 8, more than the caches hold. Fused, a task computes the expansion of one group of
output blocks over a band of image rows into a scratch buffer of its thread (L2-sized), and
the depthwise rows of that group and band read it from there. The depthwise convolution is
per channel, so a group of the expansion's output blocks is all it needs: only the band's
halo rows (the taps that reach past the band) are computed twice, by both bands.

Both stages run the arithmetic of the unfused kernels in the same order (the expansion tiles
of ``blocked.pointwise_blocked``, the rows of ``blocked.depthwise_blocked``): the result is
bit-identical to the two layers run one after the other.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .blocked import BLOCK, PW_BLOCKS, PW_PIXELS, _dw_row, _group, pointwise_tile
from .simd import vadd, vbcast, vclamp, vload, vstore

__all__ = ["expand_depthwise_blocked", "expand_depthwise_tasks", "band_input_rows"]


@njit(cache=True)
def band_input_rows(h, kh, sh, pt, dh, y0, y1):  # pragma: no cover - compiled
    """The image rows [ra, rb) that output rows [y0, y1) of a depthwise convolution read
    (empty, ra == rb, when all their taps fall in the padding)."""
    ra = max(0, y0 * sh - pt)
    rb = min(h, (y1 - 1) * sh - pt + (kh - 1) * dh + 1)
    return ra, max(ra, rb)


@njit(cache=True)
def expand_depthwise_tasks(n, cb, oh, band_rows):  # pragma: no cover - compiled
    """The number of tasks of :func:`expand_depthwise_blocked`: images x bands x groups."""
    groups = (cb + PW_BLOCKS - 1) // PW_BLOCKS
    return n * ((oh + band_rows - 1) // band_rows) * groups


@njit(parallel=True, cache=True, error_model="numpy")
def expand_depthwise_blocked(
    x,
    wp,
    biasp,
    offs,
    n,
    c_in,
    cb,
    h,
    wi,
    wd,
    biasd,
    kh,
    kw,
    sh,
    sw,
    pt,
    pl,
    dh,
    dw,
    oh,
    ow,
    band_rows,
    lo1,
    hi1,
    lo2,
    hi2,
    scratch,
    slot_size,
    out,
):  # pragma: no cover - compiled
    """``out = depthwise(clamp(pointwise(x), lo1, hi1))`` clamped to (lo2, hi2), on the
    blocked layout, without storing the pointwise result.

    Args:
        x: the expansion's input (n, c_in/8, h, wi, 8), flat.
        wp, biasp, offs: the expansion's ``blocked.pack_gemm_weight`` weight, packed bias
            and channel offsets (``blocked.pointwise_blocked``'s ``w``, ``bias``, ``offs``).
        n, c_in, cb: images, input channels, the expansion's output blocks (= the depthwise
            convolution's blocks).
        wd, biasd: the depthwise convolution's ``blocked.pack_depthwise_weight`` weight and
            packed bias.
        kh .. ow: the depthwise convolution's geometry (``blocked.depthwise_blocked``'s).
        band_rows: output rows per task.
        lo1, hi1, lo2, hi2: the clamps after the expansion and after the depthwise conv.
        scratch: at least ``slot_size`` floats per Numba thread.
        slot_size: floats of scratch per thread: 8 * PW_BLOCKS * wi * the most image rows a
            band reads (``band_input_rows``).
        out: (n, cb, oh, ow, 8), flat, written completely.
    """
    for task in prange(expand_depthwise_tasks(n, cb, oh, band_rows)):
        expand_depthwise_task(task, x, wp, biasp, offs, n, c_in, cb, h, wi, wd, biasd, kh, kw,
                              sh, sw, pt, pl, dh, dw, oh, ow, band_rows, lo1, hi1, lo2, hi2,
                              scratch, slot_size, out)  # fmt: skip


@njit(inline="always")
def expand_depthwise_task(
    task,
    x,
    wp,
    biasp,
    offs,
    n,
    c_in,
    cb,
    h,
    wi,
    wd,
    biasd,
    kh,
    kw,
    sh,
    sw,
    pt,
    pl,
    dh,
    dw,
    oh,
    ow,
    band_rows,
    lo1,
    hi1,
    lo2,
    hi2,
    scratch,
    slot_size,
    out,
):  # pragma: no cover - compiled
    """Task ``task`` of :func:`expand_depthwise_blocked` (same arguments): one group of
    output blocks of one band of output rows of one image, in the scratch slot of the thread
    running it."""
    groups = (cb + PW_BLOCKS - 1) // PW_BLOCKS
    bands = (oh + band_rows - 1) // band_rows
    g = task % groups
    band = (task // groups) % bands
    b = task // (groups * bands)
    ob, nb = _group(g, cb)
    y0 = band * band_rows
    y1 = min(oh, y0 + band_rows)
    ra, rb = band_input_rows(h, kh, sh, pt, dh, y0, y1)
    s0 = numba.get_thread_id() * slot_size
    # 1. the expansion of image rows [ra, rb), blocks ob..ob+nb-1, into the scratch slot as
    # (nb, rb - ra, wi, 8): pointwise_blocked's tiles of 4 pixels over the rows' pixels
    lov = vbcast(np.float32(lo1))
    hiv = vbcast(np.float32(hi1))
    plane = h * wi * BLOCK  # floats per input block of one image
    count = (rb - ra) * wi  # pixels of the band's rows
    splane = count * BLOCK  # floats per block in the scratch slot
    xb = b * (c_in // BLOCK) * plane + ra * wi * BLOCK
    wg = ob * c_in * BLOCK
    for q in range(0, count, PW_PIXELS):
        m = min(PW_PIXELS, count - q)
        acc = pointwise_tile(x, wp, offs, wg, c_in, nb, plane, xb, q, count)
        a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23 = acc
        base = s0 + q * BLOCK
        _scratch_store(scratch, base, vload(biasp, ob * BLOCK), m, a00, a01, a02, a03, lov, hiv)
        if nb > 1:
            _scratch_store(scratch, base + splane, vload(biasp, (ob + 1) * BLOCK), m, a10, a11,
                           a12, a13, lov, hiv)  # fmt: skip
        if nb > 2:
            _scratch_store(scratch, base + 2 * splane, vload(biasp, (ob + 2) * BLOCK), m, a20,
                           a21, a22, a23, lov, hiv)  # fmt: skip
    # 2. the depthwise rows [y0, y1) of those blocks, image row r read from scratch row r - ra
    lov = vbcast(np.float32(lo2))
    hiv = vbcast(np.float32(hi2))
    taps = kh * kw
    for u in range(nb):
        k = ob + u
        xk = s0 + u * splane - ra * wi * BLOCK
        bv = vload(biasd, k * BLOCK)
        for y in range(y0, y1):
            _dw_row(scratch, xk, wd, k * taps * BLOCK, bv, h, wi, kh, kw, sh, sw, pt, pl, dh, dw,
                    ow, y, lov, hiv, out, ((b * cb + k) * oh + y) * ow * BLOCK)  # fmt: skip


@njit(inline="always")
def _scratch_store(s, base, bv, m, a0, a1, a2, a3, lov, hiv):  # pragma: no cover - compiled
    """The first ``m`` of 4 pixels of one block, ``clamp(acc + bias)`` as
    ``blocked._pw_store`` stores them, to ``s[base:]``."""
    vstore(s, base, vclamp(vadd(a0, bv), lov, hiv))
    if m > 1:
        vstore(s, base + BLOCK, vclamp(vadd(a1, bv), lov, hiv))
    if m > 2:
        vstore(s, base + 2 * BLOCK, vclamp(vadd(a2, bv), lov, hiv))
    if m > 3:
        vstore(s, base + 3 * BLOCK, vclamp(vadd(a3, bv), lov, hiv))
