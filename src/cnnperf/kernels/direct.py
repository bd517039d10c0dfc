"""Direct convolution on stride phases: padding and strides resolved once per input plane.

The textbook definition (e.g. Goodfellow, Bengio & Courville, *Deep Learning*, eq. 9.4), laid
out so that every inner loop is a contiguous, vectorisable run of FMAs:

1. Each parallel task takes one image, one group and a block of that group's output channels.
   It copies the group's input channels once into a task-local buffer, zero-padded and split
   into stride phases (the polyphase decomposition of a strided filter: Vaidyanathan,
   *Multirate Systems and Filter Banks*, 1993, ch. 4):
   ``phase[(a, b)][u, v] = xp[u*sh + a, v*sw + b]`` for ``a < sh, b < sw``. Input pixel
   ``(y*sh + i*dh, x*sw + j*dw)`` of tap (i, j) then sits at ``(y + i*dh//sh, x + j*dw//sw)``
   of phase ``(i*dh % sh, j*dw % sw)``: a strided convolution becomes kh*kw unit-stride ones.
2. Each phase plane is read as one flat row of ``hq*wq`` values: output ``(y, x)`` is flat
   index ``k = y*wq + x`` and tap (i, j) adds ``w * phase[k + (i*dh//sh)*wq + j*dw//sw]``, so the
   whole plane is one long loop per tap instead of ``oh`` short ones (a 7x7 plane is 63 lanes,
   not 7 rows of 7). The ``wq - ow`` columns per row that do not exist in the output are
   computed and dropped.
3. The flat accumulator is walked in chunks that stay in L1 while every tap adds into them,
   then the bias and activation are applied as the valid columns are written out.

Why not read the input in place (the previous kernel): the caller had to make a zero-padded copy
of the whole batch first (2.3 ms of the 4.3 ms for a 144x56x56 depthwise layer at batch 8),
and stride 2 became a gather (``src[2*x]``) that does not vectorise (3.1 ms where stride 1 took
1.8 ms for a quarter of the outputs). Measured in the commit that introduced this kernel.

Groups of few input channels are what this kernel is for (depthwise, and 3-channel stems):
there is little channel reduction for BLAS to do. Dense layers are faster through im2col +
GEMM or Winograd.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import FASTMATH
from .epilogue import act_row

__all__ = ["conv2d_direct", "depthwise_conv2d_batched", "DIRECT_CHUNK", "OC_UNROLL"]

# Flat outputs accumulated per pass over the taps: 1024 float32 accumulators (4 KiB) plus the
# phase rows they read stay in a 32 KiB L1 data cache.
DIRECT_CHUNK = 1024

# Output channels computed together, sharing each load of the input (register blocking). Four
# float32 accumulator rows of a chunk are 16 KiB, still within L1 with the rows they read.
OC_UNROLL = 4


@njit(cache=True, inline="always")
def write_row(src, dst, n, act, alpha):  # pragma: no cover - compiled
    """``dst[:n] = act(src[:n])`` (a loop: Numba's slice assignment is slower)."""
    act_row(dst, src, n, act, alpha)


@njit(cache=True, inline="always")
def _tap(buf, base, i, j, sh, sw, dh, dw, wq, k0, m):  # pragma: no cover - compiled
    """The ``m`` values tap (i, j) reads for flat outputs ``[k0, k0 + m)`` (module docstring,
    step 2): a contiguous slice of one phase plane of the channel whose phases start at
    ``base``."""
    phase = base + ((i * dh) % sh) * sw + (j * dw) % sw
    off = k0 + ((i * dh) // sh) * wq + (j * dw) // sw
    return buf[phase, off : off + m]


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _fill_phases(x, b, c0, cg, h, w, sh, sw, pt, pl, hq, wq, buf, col0=0):  # pragma: no cover
    """Copy channels ``[c0, c0 + cg)`` of image ``b`` into ``buf`` (cg*sh*sw, >= col0 + hq*wq)
    from column ``col0`` on: zero padded and split into stride phases (module docstring, step
    1). Copies are written as loops: Numba's slice assignment between arrays measured 4x
    slower."""
    for ic in range(cg):
        src_c = x[b, c0 + ic]
        for a in range(sh):
            for u in range(hq):
                base = (ic * sh + a) * sw
                lo = col0 + u * wq
                for bb in range(sw):
                    row = buf[base + bb, lo : lo + wq]
                    for v in range(wq):
                        row[v] = 0.0
                r = u * sh + a - pt
                if r < 0 or r >= h:
                    continue
                srow = src_c[r]
                if sw == 1:
                    row = buf[base, lo + pl : lo + pl + w]
                    for v in range(w):
                        row[v] = srow[v]
                elif sw == 2:
                    # de-interleave pairs of columns (measured 2.4x faster than two strided
                    # passes); padded column col + pl goes to phase (col + pl) % 2
                    e = buf[base, lo : lo + wq]
                    o = buf[base + 1, lo : lo + wq]
                    start = pl % 2
                    if start == 1:
                        o[pl // 2] = srow[0]
                    v0 = (start + pl) // 2
                    npair = (w - start) // 2
                    ep = e[v0 : v0 + npair]
                    op = o[v0 : v0 + npair]
                    for k in range(npair):
                        ep[k] = srow[start + 2 * k]
                        op[k] = srow[start + 2 * k + 1]
                    if (w - start) % 2 == 1:
                        e[v0 + npair] = srow[w - 1]
                else:
                    for col in range(w):
                        pc = col + pl
                        buf[base + pc % sw, lo + pc // sw] = srow[col]


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def conv2d_direct(
    x, w, bias, sh, sw, pt, pl, hp, wp, dh, dw, g, ocb, runs, act, alpha, out
):  # pragma: no cover - compiled
    """Direct convolution with zero padding, a fused bias and activation.

    ``out[b, oc, y, x] = act(bias[oc] + sum_{ic,i,j} w[oc, ic, i, j] * xp[b, c0 + ic,
    y*sh + i*dh, x*sw + j*dw])``, where ``xp`` is ``x`` zero-padded by ``pt`` rows on top and
    ``pl`` columns on the left to (hp, wp), and ``c0`` is the first input channel of oc's group.

    Args:
        x: input (n, c_in, h, w), contiguous, not padded.
        w: weight (c_out, c_in/g, kh, kw), contiguous.
        bias: (c_out,) (zeros when the convolution has none).
        sh, sw, pt, pl, hp, wp, dh, dw: stride, top/left padding, padded size, dilation.
        g: groups.
        ocb: output channels per task (a block of one group's channels).
        runs: runs of consecutive tasks to deal out to the threads (each allocates its buffers
            once).
        act, alpha: fused activation (``kernels.epilogue`` codes).
        out: (n, c_out, oh, ow), written completely.
    """
    n, _, h, wi = x.shape
    c_out, cg, kh, kw = w.shape
    oh = out.shape[2]
    ow = out.shape[3]
    co_g = c_out // g
    nb = (co_g + ocb - 1) // ocb
    hq = (hp + sh - 1) // sh
    wq = (wp + sw - 1) // sw
    flat = (oh - 1) * wq + ow  # flat outputs per plane, the dropped columns included
    nph = sh * sw
    tasks = n * g * nb
    # Tasks are dealt out in contiguous runs, one buffer allocation per run: allocating per task
    # cost more than the work of a 7x7 depthwise plane.
    runs = min(tasks, max(1, runs))
    for rn in prange(runs):
        buf = np.empty((cg * nph, hq * wq), dtype=x.dtype)
        acc = np.empty((OC_UNROLL, flat), dtype=out.dtype)
        for t in range(rn * tasks // runs, (rn + 1) * tasks // runs):
            _direct_task(
                x, w, bias, t, g, nb, ocb, co_g, cg, kh, kw, sh, sw, pt, pl, dh, dw, h, wi, hq,
                wq, flat, act, alpha, buf, acc, out,
            )  # fmt: skip


# fmt: off
@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _direct_task(
    x, w, bias, t, g, nb, ocb, co_g, cg, kh, kw, sh, sw, pt, pl, dh, dw, h, wi, hq, wq, flat,
    act, alpha, buf, acc, out,
):  # pragma: no cover - compiled
    # fmt: on
    """One task of :func:`conv2d_direct`: image ``b``, group ``gi``, output-channel block."""
    b = t // (g * nb)
    gi = (t // nb) % g
    blk = t % nb
    oh = out.shape[2]
    ow = out.shape[3]
    nph = sh * sw
    _fill_phases(x, b, gi * cg, cg, h, wi, sh, sw, pt, pl, hq, wq, buf)
    oc_end = min(co_g, (blk + 1) * ocb)
    wl = np.zeros((OC_UNROLL, cg, kh, kw), dtype=w.dtype)
    for oc0 in range(blk * ocb, oc_end, OC_UNROLL):
        # OC_UNROLL output channels per pass share every load of the input; channels past the
        # block's end get zero weights and are not written out.
        nu = min(OC_UNROLL, oc_end - oc0)
        wl[:] = 0.0
        for u in range(nu):
            wl[u] = w[gi * co_g + oc0 + u]
        for k0 in range(0, flat, DIRECT_CHUNK):
            m = min(DIRECT_CHUNK, flat - k0)
            d0 = acc[0, k0 : k0 + m]
            d1 = acc[1, k0 : k0 + m]
            d2 = acc[2, k0 : k0 + m]
            d3 = acc[3, k0 : k0 + m]
            b0 = bias[gi * co_g + oc0]
            b1 = bias[gi * co_g + oc0 + 1] if nu > 1 else 0.0
            b2 = bias[gi * co_g + oc0 + 2] if nu > 2 else 0.0
            b3 = bias[gi * co_g + oc0 + 3] if nu > 3 else 0.0
            if nu == 1:
                for q in range(m):
                    d0[q] = b0
            else:
                for q in range(m):
                    d0[q] = b0
                    d1[q] = b1
                    d2[q] = b2
                    d3[q] = b3
            for ic in range(cg):
                base = ic * nph
                if kh == 3 and kw == 3 and nu == 1:
                    # one channel (depthwise): all nine taps in one pass over the accumulator
                    s00 = _tap(buf, base, 0, 0, sh, sw, dh, dw, wq, k0, m)
                    s01 = _tap(buf, base, 0, 1, sh, sw, dh, dw, wq, k0, m)
                    s02 = _tap(buf, base, 0, 2, sh, sw, dh, dw, wq, k0, m)
                    s10 = _tap(buf, base, 1, 0, sh, sw, dh, dw, wq, k0, m)
                    s11 = _tap(buf, base, 1, 1, sh, sw, dh, dw, wq, k0, m)
                    s12 = _tap(buf, base, 1, 2, sh, sw, dh, dw, wq, k0, m)
                    s20 = _tap(buf, base, 2, 0, sh, sw, dh, dw, wq, k0, m)
                    s21 = _tap(buf, base, 2, 1, sh, sw, dh, dw, wq, k0, m)
                    s22 = _tap(buf, base, 2, 2, sh, sw, dh, dw, wq, k0, m)
                    wk = wl[0, ic]
                    w00, w01, w02 = wk[0, 0], wk[0, 1], wk[0, 2]
                    w10, w11, w12 = wk[1, 0], wk[1, 1], wk[1, 2]
                    w20, w21, w22 = wk[2, 0], wk[2, 1], wk[2, 2]
                    for q in range(m):
                        d0[q] += (
                            w00 * s00[q] + w01 * s01[q] + w02 * s02[q]
                            + w10 * s10[q] + w11 * s11[q] + w12 * s12[q]
                            + w20 * s20[q] + w21 * s21[q] + w22 * s22[q]
                        )  # fmt: skip
                else:
                    for i in range(kh):
                        if kw == 3:
                            # a row of three taps for four channels: 3 loads feed 12 FMAs
                            s0 = _tap(buf, base, i, 0, sh, sw, dh, dw, wq, k0, m)
                            s1 = _tap(buf, base, i, 1, sh, sw, dh, dw, wq, k0, m)
                            s2 = _tap(buf, base, i, 2, sh, sw, dh, dw, wq, k0, m)
                            a0, a1, a2 = wl[0, ic, i, 0], wl[0, ic, i, 1], wl[0, ic, i, 2]
                            e0, e1, e2 = wl[1, ic, i, 0], wl[1, ic, i, 1], wl[1, ic, i, 2]
                            f0, f1, f2 = wl[2, ic, i, 0], wl[2, ic, i, 1], wl[2, ic, i, 2]
                            g0, g1, g2 = wl[3, ic, i, 0], wl[3, ic, i, 1], wl[3, ic, i, 2]
                            for q in range(m):
                                v0 = s0[q]
                                v1 = s1[q]
                                v2 = s2[q]
                                d0[q] += a0 * v0 + a1 * v1 + a2 * v2
                                d1[q] += e0 * v0 + e1 * v1 + e2 * v2
                                d2[q] += f0 * v0 + f1 * v1 + f2 * v2
                                d3[q] += g0 * v0 + g1 * v1 + g2 * v2
                        else:
                            for j in range(kw):
                                src = _tap(buf, base, i, j, sh, sw, dh, dw, wq, k0, m)
                                a0 = wl[0, ic, i, j]
                                e0 = wl[1, ic, i, j]
                                f0 = wl[2, ic, i, j]
                                g0 = wl[3, ic, i, j]
                                for q in range(m):
                                    v = src[q]
                                    d0[q] += a0 * v
                                    d1[q] += e0 * v
                                    d2[q] += f0 * v
                                    d3[q] += g0 * v
        for u in range(nu):
            oc = gi * co_g + oc0 + u
            row_acc = acc[u]
            for y in range(oh):
                row = row_acc[y * wq : y * wq + ow]
                write_row(row, out[b, oc, y], ow, act, alpha)


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def depthwise_conv2d_batched(
    x, w, bias, sh, sw, pt, pl, hp, wp, dh, dw, runs, act, alpha, out
):  # pragma: no cover - compiled
    """Depthwise convolution (groups == c_in == c_out) on stride phases, one task per channel
    for the whole batch.

    The channel's planes of all ``n`` images are laid end to end in one flat row per phase, so
    the taps run over ``n`` planes at once with the channel's weights: the per-plane set-up of
    :func:`conv2d_direct` is paid once per channel, not once per image and channel (step 2 of
    the module docstring: a valid output never reads past its own plane, so the neighbouring
    plane is only read by dropped positions). Arguments as :func:`conv2d_direct`; ``w`` is
    (c, 1, kh, kw).
    """
    n, c, h, wi = x.shape
    kh, kw = w.shape[2], w.shape[3]
    oh = out.shape[2]
    ow = out.shape[3]
    hq = (hp + sh - 1) // sh
    wq = (wp + sw - 1) // sw
    plane = hq * wq
    flat = (n - 1) * plane + (oh - 1) * wq + ow
    runs = min(c, max(1, runs))
    for rn in prange(runs):
        buf = np.empty((sh * sw, n * plane), dtype=x.dtype)
        acc = np.empty(flat, dtype=out.dtype)
        for ch in range(rn * c // runs, (rn + 1) * c // runs):
            for b in range(n):
                _fill_phases(x, b, ch, 1, h, wi, sh, sw, pt, pl, hq, wq, buf, b * plane)
            wk = w[ch, 0]
            bv = bias[ch]
            for k0 in range(0, flat, DIRECT_CHUNK):
                m = min(DIRECT_CHUNK, flat - k0)
                dst = acc[k0 : k0 + m]
                for q in range(m):
                    dst[q] = bv
                for i in range(kh):
                    if kw == 3:
                        s0 = _tap(buf, 0, i, 0, sh, sw, dh, dw, wq, k0, m)
                        s1 = _tap(buf, 0, i, 1, sh, sw, dh, dw, wq, k0, m)
                        s2 = _tap(buf, 0, i, 2, sh, sw, dh, dw, wq, k0, m)
                        w0 = wk[i, 0]
                        w1 = wk[i, 1]
                        w2 = wk[i, 2]
                        for q in range(m):
                            dst[q] += w0 * s0[q] + w1 * s1[q] + w2 * s2[q]
                    else:
                        for j in range(kw):
                            src = _tap(buf, 0, i, j, sh, sw, dh, dw, wq, k0, m)
                            wv = wk[i, j]
                            for q in range(m):
                                dst[q] += wv * src[q]
            for b in range(n):
                for y in range(oh):
                    row = acc[b * plane + y * wq : b * plane + y * wq + ow]
                    write_row(row, out[b, ch, y], ow, act, alpha)
