"""Convolution kernels on the channel-blocked layout NCHW8c: ``(n, c/8, h, w, 8)``.

In NCHW a depthwise convolution of 384 channels of 14x14 has rows of 14 pixels to vectorise,
and ``kernels/depthwise.py`` transposes every block of channels to channels-last and back
again on every call. Blocked by 8 channels, the 8 lanes of a SIMD vector are 8 channels of one
pixel everywhere: a depthwise tap is one vector load and one FMA per output pixel, a pointwise
(1x1) convolution is a GEMM whose output vectors are 8 output channels of a pixel, and a chain
of such layers (MobileNet's inverted residual blocks) passes the layout from one to the next
without a transpose. This is the layout of oneDNN's and ONNX Runtime's (MLAS) CPU convolutions
("nChw8c" / NCHWc); ``compile.layout`` decides where a model uses it.

Kernels (all take flat contiguous float32 arrays, write every element of ``out`` and fuse
``clamp(acc + bias [+ residual], lo, hi)``: relu is (0, inf), relu6 (0, 6), none (-inf, inf);
NaN passes through the clamp):

- :func:`to_blocked` / :func:`from_blocked`: the reorders at the layout's borders.
- :func:`pointwise_blocked`: 1x1 stride-1 unpadded convolution of a blocked input, a
  register-blocked micro-kernel of 4 pixels x 3 output blocks (12 accumulators of 8 lanes,
  ``kernels/simd.py``); per input channel it broadcasts 4 input values and loads 3 weight
  vectors.
- :func:`gemm_conv_blocked`: the same micro-kernel for a convolution as a GEMM whose terms
  are read in place through a table of offsets: any convolution of a zero-padded NCHW input (a
  network's RGB stem) into a blocked output. (On 1x1 layers of blocked inputs it took
  1.03-1.16x the time of :func:`pointwise_blocked`, whose offsets are constants of an unrolled
  loop: 15 MobileNetV2 shapes, kernels called directly, interleaved medians of 100.)
- :func:`depthwise_blocked`: depthwise convolution (groups == channels) of any kernel size,
  stride, padding and dilation; 4 output pixels at a time inside the image, one at a time with
  bounds checks at its borders.
- :func:`max_pool_blocked`: max pooling of a blocked input into an NCHW output (ResNet's pool
  after a stem that wrote blocked: the pool reads 8 channels per load and transposes as it
  stores, where the NCHW pool read a row of one channel at a time after a ``from_blocked``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .simd import (
    vadd,
    vbcast,
    vbcast_load,
    vclamp,
    vfma,
    vload,
    vload_t4,
    vload_t4_n,
    vmax_nan,
    vmul,
    vstore,
    vstore_t4,
    vstore_t4_n,
    vzero,
)

__all__ = [
    "BLOCK",
    "PW_BLOCKS",
    "PW_PIXELS",
    "to_blocked",
    "from_blocked",
    "pack_gemm_weight",
    "pack_depthwise_weight",
    "pack_bias",
    "pointwise_blocked",
    "use_quads",
    "gemm_conv_blocked",
    "direct_conv_blocked",
    "depthwise_blocked",
    "global_avg_pool_blocked",
    "max_pool_blocked",
]

BLOCK = 8  # channels per block: the lanes of one vec8f
PW_BLOCKS = 3  # output blocks per pointwise micro-kernel (3 weight vectors per input channel)
PW_PIXELS = 4  # output pixels per pointwise micro-kernel (4 broadcasts per input channel)
DW_PIXELS = 4  # output pixels per depthwise step inside the image
QUAD_BLOCKS = 4  # output blocks per pointwise quad tile (use_quads)
QUAD_PIXELS = 3  # output pixels per pointwise quad tile


@njit(parallel=True, cache=True)
def to_blocked(x, out):  # pragma: no cover - compiled
    """``out[b, k, y, x, j] = x[b, k*8 + j, y, x]``: (n, c, h, w) -> (n, c/8, h, w, 8)."""
    n, c, h, w = x.shape
    cb = c // BLOCK
    for t in prange(n * cb * h):
        b = t // (cb * h)
        k = (t // h) % cb
        y = t % h
        dst = out[b, k, y]
        for j in range(BLOCK):
            src = x[b, k * BLOCK + j, y]
            for i in range(w):
                dst[i, j] = src[i]


@njit(parallel=True, cache=True)
def from_blocked(x, out):  # pragma: no cover - compiled
    """``out[b, k*8 + j, y, x] = x[b, k, y, x, j]``: (n, cb, h, w, 8) -> (n, c, h, w) for the
    first ``c <= cb*8`` channels (the last block's lanes past ``c`` are dropped)."""
    n, cb, h, w, _ = x.shape
    c = out.shape[1]
    for t in prange(n * cb * h):
        b = t // (cb * h)
        k = (t // h) % cb
        y = t % h
        src = x[b, k, y]
        for j in range(min(BLOCK, c - k * BLOCK)):
            dst = out[b, k * BLOCK + j, y]
            for i in range(w):
                dst[i] = src[i, j]


@njit(parallel=True, cache=True)
def global_avg_pool_blocked(x, n, cb, pixels, out):  # pragma: no cover - compiled
    """``out[b, k*8 + j] = mean over p of x[b, k, p, j]``: the blocked (n, cb, pixels, 8), flat,
    to (n, cb*8), flat. Sums in pixel order, one 8-lane vector per block (no allocation)."""
    for t in prange(n * cb):
        global_avg_pool_task(t, x, pixels, out)


@njit(inline="always")
def global_avg_pool_task(t, x, pixels, out):  # pragma: no cover - compiled
    """Task ``t`` of :func:`global_avg_pool_blocked` (``n * cb`` tasks): one block of one
    image."""
    scale = vbcast(np.float32(1.0) / np.float32(pixels))
    base = t * pixels * BLOCK
    acc = vzero()
    for p in range(pixels):
        acc = vadd(acc, vload(x, base + p * BLOCK))
    vstore(out, t * BLOCK, vmul(acc, scale))


def pack_gemm_weight(w: np.ndarray) -> np.ndarray:
    """(c_out, c_in, kh, kw) weight -> flat ``[(ob*terms + t)*8 + j] = w[ob*8 + j].flat[t]``
    (terms = c_in*kh*kw, channel-major), the output blocks padded with zeros to a multiple of
    PW_BLOCKS."""
    c_out = w.shape[0]
    terms = w.size // c_out
    blocks = -(-c_out // BLOCK)
    blocks = -(-blocks // PW_BLOCKS) * PW_BLOCKS
    padded = np.zeros((blocks * BLOCK, terms), np.float32)
    padded[:c_out] = w.reshape(c_out, terms)
    return np.ascontiguousarray(padded.reshape(blocks, BLOCK, terms).transpose(0, 2, 1)).ravel()


def pack_depthwise_weight(w: np.ndarray) -> np.ndarray:
    """(c, 1, kh, kw) weight -> flat ``[(k*kh*kw + tap)*8 + j] = w[k*8 + j, 0, tap // kw,
    tap % kw]`` (c a multiple of 8)."""
    c, _, kh, kw = w.shape
    blocks = w.reshape(c // BLOCK, BLOCK, kh * kw).transpose(0, 2, 1)
    return np.ascontiguousarray(blocks, dtype=np.float32).ravel()


def pack_bias(bias: np.ndarray | None, c: int, blocks: int) -> np.ndarray:
    """The bias as ``blocks * 8`` lanes; -0.0 where there is none (``acc + -0.0 == acc`` for
    every acc, -0.0 included), and past ``c``."""
    out = np.full(blocks * BLOCK, -0.0, np.float32)
    if bias is not None:
        out[:c] = bias
    return out


@njit(parallel=True, cache=True, error_model="numpy")
def pointwise_blocked(
    x,
    w,
    bias,
    res,
    has_res,
    n,
    c_in,
    c_out_blocks,
    pixels,
    tile_chunk,
    splits,
    offs,
    lo,
    hi,
    out,
    quad=False,
):  # pragma: no cover - compiled
    """``out[b, ob, p, :] = clamp(bias[ob] + sum_ic w[ob, ic, :] * x[b, ic // 8, p, ic % 8]
    (+ res[b, ob, p, :]), lo, hi)``: a 1x1 stride-1 convolution on the blocked layout.

    Args:
        x: input (n, c_in/8, pixels, 8), flat.
        w: :func:`pack_gemm_weight`'s (blocks, c_in, 8), blocks a multiple of PW_BLOCKS.
        bias: (blocks * 8,), :func:`pack_bias`.
        res, has_res: residual (n, c_out_blocks, pixels, 8), flat; read when has_res.
        n, c_in, c_out_blocks, pixels: sizes (c_in a multiple of 8).
        tile_chunk: PW_PIXELS-pixel tiles per task (the input a task sweeps for every group
            of output blocks stays in L2).
        splits: the groups of PW_BLOCKS output blocks are dealt out to this many tasks per
            pixel chunk (more tasks than images x chunks for the threads to share).
        offs: (c_in,) ``(c // 8)*pixels*8 + c % 8``, channel c's offset in an image, for the
            last group when it has fewer than PW_BLOCKS blocks (the tile of
            :func:`gemm_conv_blocked`).
        lo, hi: the clamp.
        out: (n, c_out_blocks, pixels, 8), flat, written completely.
        quad: c_out_blocks a multiple of 4: tiles of 3 pixels x 4 blocks (``_pointwise_quads``)
            instead of 4 pixels x 3 blocks (:func:`use_quads` says when).
    """
    for task in prange(pointwise_tasks(n, pixels, tile_chunk, splits)):
        pointwise_task(task, x, w, bias, res, has_res, n, c_in, c_out_blocks, pixels,
                       tile_chunk, splits, offs, lo, hi, out, quad)  # fmt: skip


def use_quads(c_out_blocks: int) -> bool:
    """Whether :func:`pointwise_blocked` runs quad tiles: 32 or 64 output channels, which
    groups of 3 blocks split 2 + 2 and 3 + 3 + 2. Quads against those, bound calls alone
    (2 threads, interleaved medians of 300): MobileNetV2's 144->32 and 192->32 (+ residual)
    on 28x28 0.79-0.80x at batch 8 and 0.82-0.90x at batch 1, 384->64 (+ residual) on 14x14
    0.98x; 960->160 on 7x7 0.97x at batch 8 but 1.11x at batch 1 (5 quads over 2 threads),
    320->1280 level: left on groups of 3."""
    return c_out_blocks in (QUAD_BLOCKS, 2 * QUAD_BLOCKS)


@njit(cache=True)
def pointwise_tasks(n, pixels, tile_chunk, splits):  # pragma: no cover - compiled
    """The number of tasks of :func:`pointwise_blocked` (and :func:`gemm_conv_blocked`)."""
    tiles = (pixels + PW_PIXELS - 1) // PW_PIXELS
    return n * ((tiles + tile_chunk - 1) // tile_chunk) * splits


@njit(inline="always")
def pointwise_task(
    task,
    x,
    w,
    bias,
    res,
    has_res,
    n,
    c_in,
    c_out_blocks,
    pixels,
    tile_chunk,
    splits,
    offs,
    lo,
    hi,
    out,
    quad,
):  # pragma: no cover - compiled
    """Task ``task`` of :func:`pointwise_blocked` (same arguments): one image's chunk of pixel
    tiles for one share of the groups of output blocks. Tasks write disjoint parts of
    ``out``."""
    tiles = (pixels + PW_PIXELS - 1) // PW_PIXELS
    chunks = (tiles + tile_chunk - 1) // tile_chunk
    groups = (c_out_blocks + PW_BLOCKS - 1) // PW_BLOCKS
    plane = pixels * BLOCK  # floats per channel block of one image
    lov = vbcast(np.float32(lo))
    hiv = vbcast(np.float32(hi))
    b = task // (chunks * splits)
    t0 = ((task // splits) % chunks) * tile_chunk
    t1 = min(tiles, t0 + tile_chunk)
    s = task % splits
    xb = b * (c_in // BLOCK) * plane
    if quad:
        # groups of 4 blocks, 3 pixels a tile: no 1-2 block tail group, every tile 12
        # accumulators
        quads = c_out_blocks // QUAD_BLOCKS
        for g in range(s * quads // splits, (s + 1) * quads // splits):
            _pointwise_quads(x, w, bias, res, has_res, b, c_in, c_out_blocks, pixels, plane, xb,
                             g * QUAD_BLOCKS, t0 * PW_PIXELS, min(pixels, t1 * PW_PIXELS), lov,
                             hiv, out)  # fmt: skip
        return
    for g in range(s * groups // splits, (s + 1) * groups // splits):
        ob, nb = _group(g, c_out_blocks)
        wg = ob * c_in * BLOCK
        for t in range(t0, t1):
            p = t * PW_PIXELS
            m = min(PW_PIXELS, pixels - p)
            acc = pointwise_tile(x, w, offs, wg, c_in, nb, plane, xb, p, pixels)
            _store_3x4(out, res, has_res, bias, b, ob, nb, c_out_blocks, plane, p, m, acc,
                       lov, hiv)  # fmt: skip


@njit(inline="always")
def pointwise_tile(x, w, offs, wg, c_in, nb, plane, xb, p, count):  # pragma: no cover
    """The accumulators of one tile of a 1x1 conv of a blocked input (``_fma_3x4``'s order):
    pixels p..p+3 of the ``count`` from ``x[xb]`` (channel block 0; blocks ``plane`` apart)
    times the ``nb`` output blocks of the packed weight from ``w[wg]``. Pixels past the last
    read the last one (computed, never stored)."""
    o0 = xb + p * BLOCK
    o1 = xb + min(p + 1, count - 1) * BLOCK
    o2 = xb + min(p + 2, count - 1) * BLOCK
    o3 = xb + min(p + 3, count - 1) * BLOCK
    if nb < PW_BLOCKS:
        return _tail_tile(x, w, offs, wg, c_in * BLOCK, nb, o0, o1, o2, o3)
    acc = _zeros12()
    for kb in range(c_in // BLOCK):
        xk = kb * plane
        wk = wg + kb * BLOCK * BLOCK
        for i in range(BLOCK):
            wi = wk + i * BLOCK
            acc = _fma_3x4(
                vload(w, wi), vload(w, wi + c_in * BLOCK), vload(w, wi + 2 * c_in * BLOCK), x,
                xk + o0 + i, xk + o1 + i, xk + o2 + i, xk + o3 + i, acc,
            )  # fmt: skip
    return acc


@njit(inline="always")
def _pointwise_quads(
    x, w, bias, res, has_res, b, c_in, cbo, pixels, plane, xb, ob, p0, p1, lov, hiv, out
):  # pragma: no cover - compiled
    """Output blocks ob..ob+3 of pixels [p0, p1) of image ``b``, 3 pixels a tile: per input
    channel 3 broadcasts and 4 weight vectors into 12 accumulators (3 broadcasts + 1 weight +
    12 = the 16 ymm registers)."""
    wstep = c_in * BLOCK
    wg = ob * wstep
    for p in range(p0, p1, QUAD_PIXELS):
        m = min(QUAD_PIXELS, p1 - p)
        # pixels past the end read the last pixel (computed, never stored)
        o0 = xb + p * BLOCK
        o1 = xb + min(p + 1, pixels - 1) * BLOCK
        o2 = xb + min(p + 2, pixels - 1) * BLOCK
        a00 = vzero()
        a01 = vzero()
        a02 = vzero()
        a10 = vzero()
        a11 = vzero()
        a12 = vzero()
        a20 = vzero()
        a21 = vzero()
        a22 = vzero()
        a30 = vzero()
        a31 = vzero()
        a32 = vzero()
        for kb in range(c_in // BLOCK):
            xk = kb * plane
            wk = wg + kb * BLOCK * BLOCK
            for i in range(BLOCK):
                x0 = vbcast_load(x, o0 + xk + i)
                x1 = vbcast_load(x, o1 + xk + i)
                x2 = vbcast_load(x, o2 + xk + i)
                wi = wk + i * BLOCK
                v = vload(w, wi)
                a00 = vfma(v, x0, a00)
                a01 = vfma(v, x1, a01)
                a02 = vfma(v, x2, a02)
                v = vload(w, wi + wstep)
                a10 = vfma(v, x0, a10)
                a11 = vfma(v, x1, a11)
                a12 = vfma(v, x2, a12)
                v = vload(w, wi + 2 * wstep)
                a20 = vfma(v, x0, a20)
                a21 = vfma(v, x1, a21)
                a22 = vfma(v, x2, a22)
                v = vload(w, wi + 3 * wstep)
                a30 = vfma(v, x0, a30)
                a31 = vfma(v, x1, a31)
                a32 = vfma(v, x2, a32)
        z = vzero()
        _pw_store(out, res, has_res, bias, b, ob, cbo, plane, p, m, a00, a01, a02, z, lov, hiv)
        _pw_store(out, res, has_res, bias, b, ob + 1, cbo, plane, p, m, a10, a11, a12, z, lov,
                  hiv)  # fmt: skip
        _pw_store(out, res, has_res, bias, b, ob + 2, cbo, plane, p, m, a20, a21, a22, z, lov,
                  hiv)  # fmt: skip
        _pw_store(out, res, has_res, bias, b, ob + 3, cbo, plane, p, m, a30, a31, a32, z, lov,
                  hiv)  # fmt: skip


@njit(parallel=True, cache=True, error_model="numpy")
def gemm_conv_blocked(
    x,
    img_stride,
    offs,
    row_pitch,
    col_pitch,
    ow,
    w,
    bias,
    res,
    has_res,
    n,
    c_out_blocks,
    pixels,
    tile_chunk,
    splits,
    lo,
    hi,
    out,
    w_img_stride=0,
    nchw_out=False,
):  # pragma: no cover - compiled
    """``out[b, ob, p, :] = clamp(bias[ob] + sum_t w[ob, t, :] * x[b*img_stride + offs[t] +
    src(p)] (+ res[b, ob, p, :]), lo, hi)`` with ``src(p) = (p // ow)*row_pitch + (p % ow) *
    col_pitch``: a convolution as a GEMM over terms ``t`` read in place, written blocked.

    A convolution of a zero-padded NCHW input has one term per (channel, tap): ``offs =
    c*hp*wp + i*dh*wp + j*dw``, pitches ``(sh*wp, sw)`` (``ops.conv_blocked`` builds them).

    Args:
        x: the source, flat; image ``b`` starts at ``b * img_stride``.
        offs: (terms,) int64 offsets of each term's element for output pixel 0.
        row_pitch, col_pitch, ow: ``src(p)`` above.
        w: (blocks, terms, 8) packed weight, flat, blocks a multiple of PW_BLOCKS
            (:func:`pack_gemm_weight`).
        bias: (blocks * 8,), :func:`pack_bias`.
        res, has_res: residual (n, c_out_blocks, pixels, 8), flat; read when has_res.
        n, c_out_blocks, pixels: sizes.
        tile_chunk: PW_PIXELS-pixel tiles per task.
        splits: the groups of PW_BLOCKS output blocks are dealt out to this many tasks per
            pixel chunk.
        lo, hi: the clamp.
        out: (n, c_out_blocks, pixels, 8), flat, written completely.
        w_img_stride: the weight of image ``b`` starts at ``b * w_img_stride`` (a batch of
            GEMMs with their own weights: Winograd's, one per transform point); 0 for a
            convolution.
        nchw_out: write ``out`` (and read ``res``) as NCHW (n, c_out_blocks * 8, pixels), each
            tile transposed in registers as it is stored (no blocked buffer and no
            ``from_blocked`` pass for an NCHW consumer).
    """
    for task in prange(pointwise_tasks(n, pixels, tile_chunk, splits)):
        gemm_conv_task(task, x, img_stride, offs, row_pitch, col_pitch, ow, w, bias, res,
                       has_res, n, c_out_blocks, pixels, tile_chunk, splits, lo, hi, out,
                       w_img_stride, nchw_out)  # fmt: skip


@njit(inline="always")
def gemm_conv_task(
    task,
    x,
    img_stride,
    offs,
    row_pitch,
    col_pitch,
    ow,
    w,
    bias,
    res,
    has_res,
    n,
    c_out_blocks,
    pixels,
    tile_chunk,
    splits,
    lo,
    hi,
    out,
    w_img_stride,
    nchw_out,
):  # pragma: no cover - compiled
    """Task ``task`` of :func:`gemm_conv_blocked` (same arguments): one image's chunk of pixel
    tiles for one share of the groups of output blocks."""
    terms = offs.shape[0]
    tiles = (pixels + PW_PIXELS - 1) // PW_PIXELS
    chunks = (tiles + tile_chunk - 1) // tile_chunk
    groups = (c_out_blocks + PW_BLOCKS - 1) // PW_BLOCKS
    plane = pixels * BLOCK  # floats per output block of one image
    wstep = terms * BLOCK  # floats per packed weight block
    lov = vbcast(np.float32(lo))
    hiv = vbcast(np.float32(hi))
    b = task // (chunks * splits)
    t0 = ((task // splits) % chunks) * tile_chunk
    t1 = min(tiles, t0 + tile_chunk)
    s = task % splits
    xb = b * img_stride
    for g in range(s * groups // splits, (s + 1) * groups // splits):
        ob, nb = _group(g, c_out_blocks)
        wg = b * w_img_stride + ob * wstep
        for t in range(t0, t1):
            p = t * PW_PIXELS
            # one division per tile (a division per pixel cost as much as the 16 terms
            # of a 1x1 layer with 16 inputs); pixels past the end read pixel p
            # (computed, never stored)
            y = p // ow
            xo = p - y * ow
            o0 = xb + y * row_pitch + xo * col_pitch
            y, xo = _next_pixel(y, xo, ow)
            o1 = xb + y * row_pitch + xo * col_pitch if p + 1 < pixels else o0
            y, xo = _next_pixel(y, xo, ow)
            o2 = xb + y * row_pitch + xo * col_pitch if p + 2 < pixels else o0
            y, xo = _next_pixel(y, xo, ow)
            o3 = xb + y * row_pitch + xo * col_pitch if p + 3 < pixels else o0
            m = min(PW_PIXELS, pixels - p)
            if nb < PW_BLOCKS:
                acc = _tail_tile(x, w, offs, wg, wstep, nb, o0, o1, o2, o3)
            else:
                acc = _zeros12()
                for k in range(terms):
                    off = offs[k]
                    wi = wg + k * BLOCK
                    acc = _fma_3x4(
                        vload(w, wi), vload(w, wi + wstep), vload(w, wi + 2 * wstep), x,
                        o0 + off, o1 + off, o2 + off, o3 + off, acc,
                    )  # fmt: skip
            _store_3x4(out, res, has_res, bias, b, ob, nb, c_out_blocks, plane, p, m, acc,
                       lov, hiv, nchw_out)  # fmt: skip


@njit(parallel=True, cache=True, error_model="numpy")
def direct_conv_blocked(
    x, img_stride, c_in, h, w, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, wt, bias, res, has_res, n,
    c_out_blocks, rows, splits, lo, hi, out, nchw_out
):  # fmt: skip  # pragma: no cover - compiled
    """:func:`gemm_conv_blocked`'s convolution of an NCHW input read as it is, unpadded: the
    taps that fall in the padding are skipped instead of read as zeros from a padded copy.

    Each output row computes the kernel rows that fall inside the image; its pixels whose
    taps all lie inside the image's columns run the 4-pixel tile (``_direct_tile``), the few
    at the left and right edges one at a time with their columns clipped
    (``_direct_pixel``). Terms run in the padded GEMM's order (channel, kernel row, kernel
    column), so every output is the same sum in the same order as there, minus the padding's
    zero products.

    Args:
        x: the (n, c_in, h, w) input, flat; image ``b`` starts at ``b * img_stride``.
        kh, kw, sh, sw, pt, pl, dh, dw: kernel, stride, top/left padding, dilation (the
            bottom/right padding follows from ``oh``, ``ow``).
        wt: :func:`pack_gemm_weight`'s (blocks, c_in*kh*kw, 8) weight.
        bias, res, has_res, lo, hi, out, nchw_out: as :func:`gemm_conv_blocked`'s.
        rows: output rows per task; splits: the groups of output blocks are dealt out to this
            many tasks per row chunk.
    """
    for task in prange(direct_tasks(n, oh, rows, splits)):
        direct_conv_task(task, x, img_stride, c_in, h, w, kh, kw, sh, sw, pt, pl, dh, dw, oh,
                         ow, wt, bias, res, has_res, n, c_out_blocks, rows, splits, lo, hi, out,
                         nchw_out)  # fmt: skip


@njit(cache=True)
def direct_tasks(n, oh, rows, splits):  # pragma: no cover - compiled
    """The number of tasks of :func:`direct_conv_blocked`."""
    return n * ((oh + rows - 1) // rows) * splits


@njit(inline="always")
def direct_conv_task(
    task, x, img_stride, c_in, h, w, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, wt, bias, res,
    has_res, n, c_out_blocks, rows, splits, lo, hi, out, nchw_out
):  # fmt: skip  # pragma: no cover - compiled
    """Task ``task`` of :func:`direct_conv_blocked`: ``rows`` output rows of one image for one
    share of the groups of output blocks."""
    chunks = (oh + rows - 1) // rows
    groups = (c_out_blocks + PW_BLOCKS - 1) // PW_BLOCKS
    wstep = c_in * kh * kw * BLOCK
    plane = oh * ow * BLOCK
    lov = vbcast(np.float32(lo))
    hiv = vbcast(np.float32(hi))
    b = task // (chunks * splits)
    y_first = ((task // splits) % chunks) * rows
    s = task % splits
    xb = b * img_stride
    # output columns whose taps all fall inside the image: [x0, x1)
    x0 = min(ow, (pl + sw - 1) // sw)
    x1 = max(x0, min(ow, (w - 1 - (kw - 1) * dw + pl) // sw + 1))
    for g in range(s * groups // splits, (s + 1) * groups // splits):
        ob, nb = _group(g, c_out_blocks)
        wg = ob * wstep  # the group's weights stay in cache while its rows run
        for y in range(y_first, min(oh, y_first + rows)):
            r0 = y * sh - pt
            i0 = 0  # the kernel rows inside the image: [i0, i1)
            while i0 < kh and r0 + i0 * dh < 0:
                i0 += 1
            i1 = kh
            while i1 > i0 and r0 + (i1 - 1) * dh >= h:
                i1 -= 1
            xo = 0
            while xo < ow:
                p = y * ow + xo
                if xo >= x0 and xo < x1:
                    m = min(PW_PIXELS, x1 - xo)
                    o0 = xb + r0 * w + xo * sw - pl
                    # pixels past the interior read pixel xo (computed, never stored)
                    o1 = o0 + sw if m > 1 else o0
                    o2 = o0 + 2 * sw if m > 2 else o0
                    o3 = o0 + 3 * sw if m > 3 else o0
                    acc = _direct_tile(x, wt, wg, wstep, nb, o0, o1, o2, o3, c_in, h, w, kh, kw,
                                       dh, dw, i0, i1)  # fmt: skip
                else:
                    m = 1
                    c0 = xo * sw - pl
                    j0 = 0  # the kernel columns inside the image: [j0, j1)
                    while j0 < kw and c0 + j0 * dw < 0:
                        j0 += 1
                    j1 = kw
                    while j1 > j0 and c0 + (j1 - 1) * dw >= w:
                        j1 -= 1
                    acc = _direct_pixel(x, wt, wg, wstep, xb + r0 * w + c0, c_in, h, w, kh, kw,
                                        dh, dw, i0, i1, j0, j1)  # fmt: skip
                _store_3x4(out, res, has_res, bias, b, ob, nb, c_out_blocks, plane, p, m, acc,
                           lov, hiv, nchw_out)  # fmt: skip
                xo += m


@njit(inline="always")
def _direct_tile(
    x, wt, wg, wstep, nb, o0, o1, o2, o3, c_in, h, w, kh, kw, dh, dw, i0, i1
):  # pragma: no cover - compiled
    """The 4-pixel tile's accumulators over kernel rows [i0, i1) of every channel: 3 blocks
    (12 accumulators), or 2 for a group of 1-2 blocks (the third block's would be wasted
    FMAs; a 1-block group computes its neighbour's weights too, never stored). Packed
    weights have a multiple of 3 blocks, so the blocks read always exist."""
    if nb == PW_BLOCKS:
        acc = _zeros12()
        for c in range(c_in):
            for i in range(i0, i1):
                row = c * h * w + i * dh * w
                wi = wg + ((c * kh + i) * kw) * BLOCK
                for j in range(kw):
                    o = row + j * dw
                    acc = _fma_3x4(
                        vload(wt, wi), vload(wt, wi + wstep), vload(wt, wi + 2 * wstep), x,
                        o0 + o, o1 + o, o2 + o, o3 + o, acc,
                    )  # fmt: skip
                    wi += BLOCK
        return acc
    a00 = vzero()
    a01 = vzero()
    a02 = vzero()
    a03 = vzero()
    a10 = vzero()
    a11 = vzero()
    a12 = vzero()
    a13 = vzero()
    for c in range(c_in):
        for i in range(i0, i1):
            row = c * h * w + i * dh * w
            wi = wg + ((c * kh + i) * kw) * BLOCK
            for j in range(kw):
                o = row + j * dw
                w0 = vload(wt, wi)
                w1 = vload(wt, wi + wstep)
                xv = vbcast_load(x, o0 + o)
                a00 = vfma(w0, xv, a00)
                a10 = vfma(w1, xv, a10)
                xv = vbcast_load(x, o1 + o)
                a01 = vfma(w0, xv, a01)
                a11 = vfma(w1, xv, a11)
                xv = vbcast_load(x, o2 + o)
                a02 = vfma(w0, xv, a02)
                a12 = vfma(w1, xv, a12)
                xv = vbcast_load(x, o3 + o)
                a03 = vfma(w0, xv, a03)
                a13 = vfma(w1, xv, a13)
                wi += BLOCK
    z = vzero()
    return (a00, a01, a02, a03, a10, a11, a12, a13, z, z, z, z)


@njit(inline="always")
def _direct_pixel(
    x, wt, wg, wstep, o0, c_in, h, w, kh, kw, dh, dw, i0, i1, j0, j1
):  # pragma: no cover - compiled
    """One edge pixel's accumulators (3 blocks) over kernel rows [i0, i1) and columns
    [j0, j1), at the tile's pixel-0 positions of the 12."""
    a0 = vzero()
    a1 = vzero()
    a2 = vzero()
    for c in range(c_in):
        for i in range(i0, i1):
            row = o0 + c * h * w + i * dh * w
            wi = wg + ((c * kh + i) * kw + j0) * BLOCK
            for j in range(j0, j1):
                xv = vbcast_load(x, row + j * dw)
                a0 = vfma(vload(wt, wi), xv, a0)
                a1 = vfma(vload(wt, wi + wstep), xv, a1)
                a2 = vfma(vload(wt, wi + 2 * wstep), xv, a2)
                wi += BLOCK
    z = vzero()
    return (a0, z, z, z, a1, z, z, z, a2, z, z, z)


@njit(inline="always")
def _group(g, blocks):  # pragma: no cover - compiled
    """(first output block, blocks) of group ``g`` of ``blocks`` output blocks: groups of
    PW_BLOCKS, except that 3k+1 blocks (16, 32, 64 ... channels) end in two groups of 2, not
    3 + 1. A tile's time follows its accumulator chains' FMA latency, not its width: the
    1-block tile took 0.8x the time of a 3-block tile and the 2-block one 0.87x (a 3->32 3x3/2
    stem on 224x224, 1 thread), so 2 + 2 beats 3 + 1."""
    pairs = blocks - 4  # where the two 2-block groups start, when there are
    if blocks % PW_BLOCKS == 1 and blocks > PW_BLOCKS and g >= pairs // PW_BLOCKS:
        return pairs + 2 * (g - pairs // PW_BLOCKS), 2
    ob = g * PW_BLOCKS
    return ob, min(PW_BLOCKS, blocks - ob)


@njit(inline="always")
def _zeros12():  # pragma: no cover - compiled
    z = vzero()
    return (z, z, z, z, z, z, z, z, z, z, z, z)


@njit(inline="always")
def _fma_3x4(w0, w1, w2, x, i0, i1, i2, i3, acc):  # pragma: no cover - compiled
    """One term of the 4-pixel x 3-block tile: the 3 weight vectors of the term times the
    broadcast inputs ``x[i0..i3]`` of its 4 pixels, added to the 12 accumulators (pixel-minor:
    ``acc[4*u + t]`` is block u, pixel t). One broadcast is live at a time: 12 accumulators
    + 3 weights + 1 = the 16 ymm registers."""
    a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23 = acc
    a00, a10, a20 = _fma_pixel(w0, w1, w2, vbcast_load(x, i0), a00, a10, a20)
    a01, a11, a21 = _fma_pixel(w0, w1, w2, vbcast_load(x, i1), a01, a11, a21)
    a02, a12, a22 = _fma_pixel(w0, w1, w2, vbcast_load(x, i2), a02, a12, a22)
    a03, a13, a23 = _fma_pixel(w0, w1, w2, vbcast_load(x, i3), a03, a13, a23)
    return (a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23)


@njit(inline="always")
def _fma_pixel(w0, w1, w2, xv, a0, a1, a2):  # pragma: no cover - compiled
    """One pixel's broadcast input times the term's 3 weight vectors, added to its 3
    accumulators."""
    return vfma(w0, xv, a0), vfma(w1, xv, a1), vfma(w2, xv, a2)


@njit(inline="always")
def _store_3x4(out, res, has_res, bias, b, ob, nb, cbo, plane, p, m, acc, lov, hiv, nchw=False):
    """Store the tile's first ``nb`` blocks (``_pw_store`` each, or ``_nchw_store``). One
    store path for full and tail tiles: separate ones doubled the kernels' compile time (4 ->
    9 s each, cold)."""
    a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23 = acc  # pragma: no cover
    if nchw:
        _nchw_store(out, res, has_res, bias, b, ob, cbo, plane, p, m, a00, a01, a02, a03, lov,
                    hiv)  # fmt: skip
        if nb > 1:
            _nchw_store(out, res, has_res, bias, b, ob + 1, cbo, plane, p, m, a10, a11, a12, a13,
                        lov, hiv)  # fmt: skip
        if nb > 2:
            _nchw_store(out, res, has_res, bias, b, ob + 2, cbo, plane, p, m, a20, a21, a22, a23,
                        lov, hiv)  # fmt: skip
        return
    _pw_store(out, res, has_res, bias, b, ob, cbo, plane, p, m, a00, a01, a02, a03, lov, hiv)
    if nb > 1:
        _pw_store(out, res, has_res, bias, b, ob + 1, cbo, plane, p, m, a10, a11, a12, a13, lov,
                  hiv)  # fmt: skip
    if nb > 2:
        _pw_store(out, res, has_res, bias, b, ob + 2, cbo, plane, p, m, a20, a21, a22, a23, lov,
                  hiv)  # fmt: skip


@njit(inline="always")
def _nchw_store(out, res, has_res, bias, b, ob, cbo, plane, p, m, a0, a1, a2, a3, lov, hiv):
    """``_pw_store`` into an NCHW ``out`` (and from an NCHW ``res``): output block ``ob``'s 8
    channels are rows ``plane // 8`` apart, pixels p..p+3 four consecutive floats of each;
    the first ``m`` are written."""  # pragma: no cover
    bv = vload(bias, ob * BLOCK)
    a0, a1, a2, a3 = vadd(a0, bv), vadd(a1, bv), vadd(a2, bv), vadd(a3, bv)
    base = (b * cbo + ob) * plane + p
    stride = plane // BLOCK
    if has_res:
        if m == PW_PIXELS:
            r0, r1, r2, r3 = vload_t4(res, base, stride)
        else:
            r0, r1, r2, r3 = vload_t4_n(res, base, stride, m)
        a0, a1, a2, a3 = vadd(a0, r0), vadd(a1, r1), vadd(a2, r2), vadd(a3, r3)
    a0, a1 = vclamp(a0, lov, hiv), vclamp(a1, lov, hiv)
    a2, a3 = vclamp(a2, lov, hiv), vclamp(a3, lov, hiv)
    if m == PW_PIXELS:
        vstore_t4(out, base, stride, a0, a1, a2, a3)
    else:
        vstore_t4_n(out, base, stride, a0, a1, a2, a3, m)


@njit(inline="always")
def _tile2(x, w, offs, wi0, wstep, o0, o1, o2, o3):  # pragma: no cover - compiled
    """The last group's tile when it has 2 output blocks: 8 accumulators (the 3-block tile
    would spend a third of its FMAs on the weight's zero padding)."""
    a00 = vzero()
    a01 = vzero()
    a02 = vzero()
    a03 = vzero()
    a10 = vzero()
    a11 = vzero()
    a12 = vzero()
    a13 = vzero()
    for k in range(offs.shape[0]):
        off = offs[k]
        wi = wi0 + k * BLOCK
        w0 = vload(w, wi)
        w1 = vload(w, wi + wstep)
        xv = vbcast_load(x, o0 + off)
        a00 = vfma(w0, xv, a00)
        a10 = vfma(w1, xv, a10)
        xv = vbcast_load(x, o1 + off)
        a01 = vfma(w0, xv, a01)
        a11 = vfma(w1, xv, a11)
        xv = vbcast_load(x, o2 + off)
        a02 = vfma(w0, xv, a02)
        a12 = vfma(w1, xv, a12)
        xv = vbcast_load(x, o3 + off)
        a03 = vfma(w0, xv, a03)
        a13 = vfma(w1, xv, a13)
    return a00, a01, a02, a03, a10, a11, a12, a13


@njit(inline="always")
def _tile1(x, w, offs, wi0, o0, o1, o2, o3):  # pragma: no cover - compiled
    """The last group's tile when it has 1 output block: 4 accumulators."""
    a0 = vzero()
    a1 = vzero()
    a2 = vzero()
    a3 = vzero()
    for k in range(offs.shape[0]):
        off = offs[k]
        w0 = vload(w, wi0 + k * BLOCK)
        a0 = vfma(w0, vbcast_load(x, o0 + off), a0)
        a1 = vfma(w0, vbcast_load(x, o1 + off), a1)
        a2 = vfma(w0, vbcast_load(x, o2 + off), a2)
        a3 = vfma(w0, vbcast_load(x, o3 + off), a3)
    return a0, a1, a2, a3


@njit(inline="always")
def _tail_tile(x, w, offs, wg, wstep, nb, o0, o1, o2, o3):  # pragma: no cover - compiled
    """The accumulators of a tile of the last group, of ``nb`` (1 or 2) output blocks: the
    rest are zeros, never stored."""
    z = vzero()
    if nb == 2:
        a00, a01, a02, a03, a10, a11, a12, a13 = _tile2(x, w, offs, wg, wstep, o0, o1, o2, o3)
        return (a00, a01, a02, a03, a10, a11, a12, a13, z, z, z, z)
    a00, a01, a02, a03 = _tile1(x, w, offs, wg, o0, o1, o2, o3)
    return (a00, a01, a02, a03, z, z, z, z, z, z, z, z)


@njit(inline="always")
def _next_pixel(y, x, ow):  # pragma: no cover - compiled
    return (y + 1, 0) if x + 1 == ow else (y, x + 1)


@njit(inline="always")
def _pw_store(out, res, has_res, bias, b, ob, cbo, plane, p, m, a0, a1, a2, a3, lov, hiv):
    """Store the first ``m`` of pixels p..p+3 of output block ``ob``."""  # pragma: no cover
    bv = vload(bias, ob * BLOCK)
    base = (b * cbo + ob) * plane + p * BLOCK
    _pw_one(out, res, has_res, base, vadd(a0, bv), lov, hiv)
    if m > 1:
        _pw_one(out, res, has_res, base + BLOCK, vadd(a1, bv), lov, hiv)
    if m > 2:
        _pw_one(out, res, has_res, base + 2 * BLOCK, vadd(a2, bv), lov, hiv)
    if m > 3:
        _pw_one(out, res, has_res, base + 3 * BLOCK, vadd(a3, bv), lov, hiv)


@njit(inline="always")
def _pw_one(out, res, has_res, o, v, lov, hiv):  # pragma: no cover - compiled
    if has_res:
        v = vadd(v, vload(res, o))
    vstore(out, o, vclamp(v, lov, hiv))


@njit(parallel=True, cache=True, error_model="numpy")
def depthwise_blocked(
    x, w, bias, n, cb, h, wi, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, lo, hi, out
):  # pragma: no cover - compiled
    """``out[b, k, y, x, :] = clamp(bias[k] + sum_{i,j} w[k, i*kw + j, :] * xp[b, k, y*sh +
    i*dh, x*sw + j*dw, :], lo, hi)`` with xp the input zero-padded by (pt, pl) at the top
    left (and as far as needed at the bottom right).

    Args:
        x: input (n, cb, h, wi, 8), flat.
        w: :func:`pack_depthwise_weight`'s (cb, kh*kw, 8).
        bias: (cb * 8,), :func:`pack_bias`.
        out: (n, cb, oh, ow, 8), flat, written completely.
    """
    for task in prange(n * cb * oh):
        depthwise_task(task, x, w, bias, n, cb, h, wi, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow,
                       lo, hi, out)  # fmt: skip


@njit(inline="always")
def depthwise_task(
    task, x, w, bias, n, cb, h, wi, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, lo, hi, out
):  # pragma: no cover - compiled
    """Task ``task`` of :func:`depthwise_blocked` (same arguments; ``n * cb * oh`` tasks): one
    output row of one block of channels of one image."""
    lov = vbcast(np.float32(lo))
    hiv = vbcast(np.float32(hi))
    b = task // (cb * oh)
    k = (task // oh) % cb
    y = task % oh
    _dw_row(x, (b * cb + k) * h * wi * BLOCK, w, k * kh * kw * BLOCK, vload(bias, k * BLOCK), h,
            wi, kh, kw, sh, sw, pt, pl, dh, dw, ow, y, lov, hiv, out,
            ((b * cb + k) * oh + y) * ow * BLOCK)  # fmt: skip


@njit(inline="always")
def _dw_row(
    x, xk, w, wk, bv, h, wi, kh, kw, sh, sw, pt, pl, dh, dw, ow, y, lov, hiv, out, ob
):  # pragma: no cover - compiled
    """Output row ``y`` of one block of channels of a depthwise convolution: ``x[xk + (r*wi
    + c)*8 :]`` holds the block's input pixel (r, c) for the image rows r the row's taps
    reach, ``w[wk:]`` its (kh*kw, 8) taps, ``bv`` its bias; written to ``out[ob:]``."""
    # output columns whose taps all fall inside the image: [x0, x1)
    x0 = min(ow, (pl + sw - 1) // sw)
    x1 = max(x0, min(ow, (wi - 1 - (kw - 1) * dw + pl) // sw + 1))
    # the taps' rows inside the image: [i0, i1)
    r0 = y * sh - pt
    i0 = 0
    while i0 < kh and r0 + i0 * dh < 0:
        i0 += 1
    i1 = kh
    while i1 > i0 and r0 + (i1 - 1) * dh >= h:
        i1 -= 1
    xo = 0
    while xo < ow:
        if xo >= x0 and xo + DW_PIXELS <= x1:
            a0 = bv
            a1 = bv
            a2 = bv
            a3 = bv
            c0 = xo * sw - pl
            for i in range(i0, i1):
                row = xk + ((r0 + i * dh) * wi + c0) * BLOCK
                for j in range(kw):
                    wv = vload(w, wk + (i * kw + j) * BLOCK)
                    q = row + j * dw * BLOCK
                    a0 = vfma(wv, vload(x, q), a0)
                    a1 = vfma(wv, vload(x, q + sw * BLOCK), a1)
                    a2 = vfma(wv, vload(x, q + 2 * sw * BLOCK), a2)
                    a3 = vfma(wv, vload(x, q + 3 * sw * BLOCK), a3)
            o = ob + xo * BLOCK
            vstore(out, o, vclamp(a0, lov, hiv))
            vstore(out, o + BLOCK, vclamp(a1, lov, hiv))
            vstore(out, o + 2 * BLOCK, vclamp(a2, lov, hiv))
            vstore(out, o + 3 * BLOCK, vclamp(a3, lov, hiv))
            xo += DW_PIXELS
        else:
            a0 = bv
            c0 = xo * sw - pl
            for i in range(i0, i1):
                row = xk + (r0 + i * dh) * wi * BLOCK
                for j in range(kw):
                    c = c0 + j * dw
                    if c >= 0 and c < wi:
                        wv = vload(w, wk + (i * kw + j) * BLOCK)
                        a0 = vfma(wv, vload(x, row + c * BLOCK), a0)
            vstore(out, ob + xo * BLOCK, vclamp(a0, lov, hiv))
            xo += 1


@njit(parallel=True, cache=True, error_model="numpy")
def max_pool_blocked(
    x, n, cb, h, w, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, out
):  # pragma: no cover - compiled
    """Max pooling of the blocked (n, cb, h, w, 8) ``x`` (flat) into the NCHW (n, cb*8, oh, ow)
    ``out`` (flat), written completely: window ``(oy, ox)`` holds the taps ``(oy*sh - pt +
    i*dh, ox*sw - pl + j*dw)`` inside the input (padding is -inf), taken in PyTorch's order
    (rows, then columns) with its running maximum (:func:`vmax_nan <cnnperf.kernels.simd.
    vmax_nan>`), so the result is PyTorch's bit for bit. Four output pixels of a row per step,
    8 channels per vector, stored transposed (``vstore_t4``)."""
    plane = oh * ow
    ninf = vbcast(np.float32(-np.inf))
    for task in prange(n * cb * oh):
        bc = task // oh
        oy = task - bc * oh
        y0 = oy * sh - pt
        i0 = max(0, (dh - 1 - y0) // dh)  # first and past-last rows inside the input
        i1 = min(kh, (h - y0 + dh - 1) // dh)
        xb = bc * (h * w * BLOCK)
        ob = bc * BLOCK * plane + oy * ow
        for ox in range(0, ow, PW_PIXELS):
            m = min(PW_PIXELS, ow - ox)
            x0 = ox * sw - pl
            if m == PW_PIXELS and x0 >= 0 and x0 + 3 * sw + (kw - 1) * dw < w:
                # inside the input across the row: the 4 pixels' taps interleaved (4
                # independent chains of maxima)
                v0, v1, v2, v3 = ninf, ninf, ninf, ninf
                for i in range(i0, i1):
                    row = xb + ((y0 + i * dh) * w + x0) * BLOCK
                    for j in range(kw):
                        t = row + j * dw * BLOCK
                        v0 = vmax_nan(v0, vload(x, t))
                        v1 = vmax_nan(v1, vload(x, t + sw * BLOCK))
                        v2 = vmax_nan(v2, vload(x, t + 2 * sw * BLOCK))
                        v3 = vmax_nan(v3, vload(x, t + 3 * sw * BLOCK))
                vstore_t4(out, ob + ox, plane, v0, v1, v2, v3)
                continue
            v0 = _pool_pixel(x, xb, y0, i0, i1, ox, w, kw, sw, pl, dh, dw, ninf)
            v1 = _pool_pixel(x, xb, y0, i0, i1, min(ox + 1, ow - 1), w, kw, sw, pl, dh, dw, ninf)
            v2 = _pool_pixel(x, xb, y0, i0, i1, min(ox + 2, ow - 1), w, kw, sw, pl, dh, dw, ninf)
            v3 = _pool_pixel(x, xb, y0, i0, i1, min(ox + 3, ow - 1), w, kw, sw, pl, dh, dw, ninf)
            vstore_t4_n(out, ob + ox, plane, v0, v1, v2, v3, m)


@njit(inline="always")
def _pool_pixel(x, xb, y0, i0, i1, ox, w, kw, sw, pl, dh, dw, acc):  # pragma: no cover
    """The running maximum over one output pixel's taps inside the input, from ``acc``
    (-inf)."""
    x0 = ox * sw - pl
    j0 = max(0, (dw - 1 - x0) // dw)
    j1 = min(kw, (w - x0 + dw - 1) // dw)
    for i in range(i0, i1):
        row = xb + ((y0 + i * dh) * w + x0) * BLOCK
        for j in range(j0, j1):
            acc = vmax_nan(acc, vload(x, row + j * dw * BLOCK))
    return acc
