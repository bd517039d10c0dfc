"""Winograd minimal-filtering transforms for 3x3 stride-1 convolution.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016): an output tile of
m x m pixels is ``Y = A^T [(G g G^T) * (B^T d B)] A`` for an (m+2) x (m+2) input tile ``d`` and
the 3x3 filter ``g``; summed over input channels, the elementwise product becomes one GEMM per
transform point, ``M[p] = U[p] @ V[p]`` (BLAS, or the blocked micro-kernel of
``kernels/blocked.py``: see ``ops.conv_winograd``). These kernels are the two transforms
around those GEMMs, for F(2x2,3x3), F(4x4,3x3) (points 0, +-1, +-2, inf) and F(6x6,3x3)
(points 0, +-1, +-2, +-1/2, inf).

Layouts (``a = m + 2``, ``p = r*a + c`` for transform row r and column c):

- ``v`` (a*a, c_in, tc): the input transform of the tiles of one chunk; tile ``t = rr*tw + j``
  is tile column j of the chunk's tile row rr (global tile row ``r0 + rr``, image
  ``(r0 + rr) // th``). Each per-point GEMM then reads contiguous ``(c_in, tc)`` operands.
- ``mm`` (a*a, c_out, tc): the GEMM results for the same tiles; or, from the blocked
  micro-kernel, ``mb`` (a*a, c_out/8, tc, 8), read by :func:`winograd_output_blocked`, which
  runs the same 1-D transforms on eight channels at once.

Each transform is separable: a vertical pass (combining rows, vectorised along whole image
rows) then a horizontal pass. Tile j's columns start at ``j*m``, a stride-m pattern that does
not vectorise; the input transform therefore deinterleaves the vertical result into m phase
planes (``d[q, t] = t1[t*m + q]``), after which the horizontal pass reads tile t's a values
at ``d[l % m, t + l // m]``: unit stride in t across the whole chunk.

The 1-D transforms are hard-coded per tile size (even/odd pairs for the points +-x): on the
vertical pass of F(4x4) that measured 0.10 ns per output against 3.8 ns for a loop over a
runtime B^T matrix and 1.4 ns for zero-skipping axpys over it. One kernel source serves all
sizes (``m`` is a literal in each of the six compiled kernels); a kernel compiles in about
6 s without Numba's cache, 15 ms with it. F(6x6) has kernels but is not a registered
algorithm (see ``ops.conv_winograd``).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from . import FASTMATH
from .epilogue import bias_act_row
from .simd import (
    vadd,
    vbcast,
    vclamp,
    vfma,
    vload,
    vload_t4,
    vload_t4_n,
    vstore,
    vstore_t4,
    vstore_t4_n,
    vsub,
)

__all__ = [
    "WINOGRAD_TILES",
    "winograd_matrices",
    "winograd_input_transform",
    "winograd_output_transform",
    "winograd_output_blocked",
]

# Output tile sizes m with kernels here.
WINOGRAD_TILES = (2, 4, 6)


def winograd_matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A^T, G, B^T)`` of F(m x m, 3x3) in float64: (m, a), (a, 3), (a, a) with a = m + 2.

    These are the matrices the kernels below hard-code (``_bt*``/``_at*``); G carries the
    1/f scaling (f the product of differences of the points), so B^T and A^T have small
    exact coefficients.

    Example:
        >>> at, g, bt = winograd_matrices(2)
        >>> at.shape, g.shape, bt.shape
        ((2, 4), (4, 3), (4, 4))
    """
    if m == 2:
        bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
        g = [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]]
        at = [[1, 1, 1, 0], [0, 1, -1, -1]]
    elif m == 4:
        bt = [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ]
        g = [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ]
        at = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
    elif m == 6:
        bt = [
            [1, 0, -21 / 4, 0, 21 / 4, 0, -1, 0],
            [0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0],
            [0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0],
            [0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0],
            [0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0],
            [0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0],
            [0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0],
            [0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1],
        ]
        g = [
            [1, 0, 0],
            [-2 / 9, -2 / 9, -2 / 9],
            [-2 / 9, 2 / 9, -2 / 9],
            [1 / 90, 1 / 45, 2 / 45],
            [1 / 90, -1 / 45, 2 / 45],
            [32 / 45, 16 / 45, 8 / 45],
            [32 / 45, -16 / 45, 8 / 45],
            [0, 0, 1],
        ]
        at = [
            [1, 1, 1, 1, 1, 1, 1, 0],
            [0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0],
            [0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0],
            [0, 1, -1, 8, -8, 1 / 8, -1 / 8, 0],
            [0, 1, 1, 16, 16, 1 / 16, 1 / 16, 0],
            [0, 1, -1, 32, -32, 1 / 32, -1 / 32, 1],
        ]
    else:
        raise ValueError(f"Winograd tile size m must be one of {WINOGRAD_TILES}, got {m!r}")
    return np.array(at, np.float64), np.array(g, np.float64), np.array(bt, np.float64)


# --- 1-D transforms (B^T d and A^T m) with the constants as float32: exact in float32, and
# they keep float32 arithmetic float32 (a Python float would promote it to float64).


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _bt4(d0, d1, d2, d3):  # pragma: no cover - compiled
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _at4(m0, m1, m2, m3):  # pragma: no cover - compiled
    return m0 + m1 + m2, m1 - m2 - m3


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _bt6(d0, d1, d2, d3, d4, d5):  # pragma: no cover - compiled
    f2 = np.float32(2.0)
    f4 = np.float32(4.0)
    f5 = np.float32(5.0)
    e1 = d4 - f4 * d2
    o1 = d3 - f4 * d1
    e2 = d4 - d2
    o2 = f2 * (d3 - d1)
    return f4 * d0 - f5 * d2 + d4, e1 + o1, e1 - o1, e2 + o2, e2 - o2, f4 * d1 - f5 * d3 + d5


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _at6(m0, m1, m2, m3, m4, m5):  # pragma: no cover - compiled
    f2 = np.float32(2.0)
    f4 = np.float32(4.0)
    f8 = np.float32(8.0)
    s1 = m1 + m2
    d1 = m1 - m2
    s2 = m3 + m4
    d2 = m3 - m4
    return m0 + s1 + s2, d1 + f2 * d2, s1 + f4 * s2, d1 + f8 * d2 + m5


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _bt8(d0, d1, d2, d3, d4, d5, d6, d7):  # pragma: no cover - compiled
    c21 = np.float32(5.25)
    c17 = np.float32(4.25)
    e1 = d2 + d6 - c17 * d4
    o1 = d1 + d5 - c17 * d3
    e2 = np.float32(0.25) * d2 - np.float32(1.25) * d4 + d6
    o2 = np.float32(0.5) * d1 - np.float32(2.5) * d3 + np.float32(2.0) * d5
    e3 = np.float32(4.0) * d2 - np.float32(5.0) * d4 + d6
    o3 = np.float32(2.0) * d1 - np.float32(2.5) * d3 + np.float32(0.5) * d5
    return (
        d0 - d6 + c21 * (d4 - d2),
        e1 + o1,
        e1 - o1,
        e2 + o2,
        e2 - o2,
        e3 + o3,
        e3 - o3,
        d7 - d1 + c21 * (d3 - d5),
    )


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _at8(m0, m1, m2, m3, m4, m5, m6, m7):  # pragma: no cover - compiled
    s1 = m1 + m2
    d1 = m1 - m2
    s2 = m3 + m4
    d2 = m3 - m4
    s3 = m5 + m6
    d3 = m5 - m6
    return (
        m0 + s1 + s2 + s3,
        d1 + np.float32(2.0) * d2 + np.float32(0.5) * d3,
        s1 + np.float32(4.0) * s2 + np.float32(0.25) * s3,
        d1 + np.float32(8.0) * d2 + np.float32(0.125) * d3,
        s1 + np.float32(16.0) * s2 + np.float32(0.0625) * s3,
        d1 + np.float32(32.0) * d2 + np.float32(0.03125) * d3 + m7,
    )


# --- Column-wise applications on 2-D C-contiguous arrays: ``s[sr + k*ss, sc]`` is element k of
# the column read. Row indices are loop-invariant and the column index is the loop variable,
# so Numba's negative-index wraparound folds away and LLVM sees unit-stride accesses it can
# vectorise (flat arrays with computed offsets ran 10x slower). ``m`` is a literal in every
# kernel below, so only one branch survives.


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _bt_col(m, s, sr, ss, sc, scs, d, dr, ds, dc):  # pragma: no cover - compiled
    """``d[dr + r*ds, dc] = sum_k B^T[r, k] s[sr + k*ss, sc + k*scs]`` for r < m + 2: read
    down a column (scs = 0) or along a row (ss = 0)."""
    if m == 2:
        u0, u1, u2, u3 = _bt4(
            s[sr, sc],
            s[sr + ss, sc + scs],
            s[sr + 2 * ss, sc + 2 * scs],
            s[sr + 3 * ss, sc + 3 * scs],
        )
        d[dr, dc] = u0
        d[dr + ds, dc] = u1
        d[dr + 2 * ds, dc] = u2
        d[dr + 3 * ds, dc] = u3
    elif m == 4:
        w0, w1, w2, w3, w4, w5 = _bt6(
            s[sr, sc],
            s[sr + ss, sc + scs],
            s[sr + 2 * ss, sc + 2 * scs],
            s[sr + 3 * ss, sc + 3 * scs],
            s[sr + 4 * ss, sc + 4 * scs],
            s[sr + 5 * ss, sc + 5 * scs],
        )
        d[dr, dc] = w0
        d[dr + ds, dc] = w1
        d[dr + 2 * ds, dc] = w2
        d[dr + 3 * ds, dc] = w3
        d[dr + 4 * ds, dc] = w4
        d[dr + 5 * ds, dc] = w5
    else:
        z0, z1, z2, z3, z4, z5, z6, z7 = _bt8(
            s[sr, sc],
            s[sr + ss, sc + scs],
            s[sr + 2 * ss, sc + 2 * scs],
            s[sr + 3 * ss, sc + 3 * scs],
            s[sr + 4 * ss, sc + 4 * scs],
            s[sr + 5 * ss, sc + 5 * scs],
            s[sr + 6 * ss, sc + 6 * scs],
            s[sr + 7 * ss, sc + 7 * scs],
        )
        d[dr, dc] = z0
        d[dr + ds, dc] = z1
        d[dr + 2 * ds, dc] = z2
        d[dr + 3 * ds, dc] = z3
        d[dr + 4 * ds, dc] = z4
        d[dr + 5 * ds, dc] = z5
        d[dr + 6 * ds, dc] = z6
        d[dr + 7 * ds, dc] = z7


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _bt_phase(m, s, sc, d, dr, ds, dc):  # pragma: no cover - compiled
    """``d[dr + c*ds, dc] = sum_l B^T[c, l] s[l % m, sc + l // m]``: the tile at column ``sc``
    of the m deinterleaved phase planes ``s`` (m, tiles + 1) of a row."""
    if m == 2:
        u0, u1, u2, u3 = _bt4(s[0, sc], s[1, sc], s[0, sc + 1], s[1, sc + 1])
        d[dr, dc] = u0
        d[dr + ds, dc] = u1
        d[dr + 2 * ds, dc] = u2
        d[dr + 3 * ds, dc] = u3
    elif m == 4:
        w0, w1, w2, w3, w4, w5 = _bt6(
            s[0, sc], s[1, sc], s[2, sc], s[3, sc], s[0, sc + 1], s[1, sc + 1]
        )
        d[dr, dc] = w0
        d[dr + ds, dc] = w1
        d[dr + 2 * ds, dc] = w2
        d[dr + 3 * ds, dc] = w3
        d[dr + 4 * ds, dc] = w4
        d[dr + 5 * ds, dc] = w5
    else:
        z0, z1, z2, z3, z4, z5, z6, z7 = _bt8(
            s[0, sc], s[1, sc], s[2, sc], s[3, sc], s[4, sc], s[5, sc], s[0, sc + 1], s[1, sc + 1]
        )
        d[dr, dc] = z0
        d[dr + ds, dc] = z1
        d[dr + 2 * ds, dc] = z2
        d[dr + 3 * ds, dc] = z3
        d[dr + 4 * ds, dc] = z4
        d[dr + 5 * ds, dc] = z5
        d[dr + 6 * ds, dc] = z6
        d[dr + 7 * ds, dc] = z7


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _at_col(m, s, sr, ss, sc, d, dr, ds, dc, dcs):  # pragma: no cover - compiled
    """``d[dr + i*ds, dc + i*dcs] = sum_r A^T[i, r] s[sr + r*ss, sc]`` for i < m: written down
    a column (dcs = 0) or along a row (ds = 0)."""
    if m == 2:
        u0, u1 = _at4(s[sr, sc], s[sr + ss, sc], s[sr + 2 * ss, sc], s[sr + 3 * ss, sc])
        d[dr, dc] = u0
        d[dr + ds, dc + dcs] = u1
    elif m == 4:
        w0, w1, w2, w3 = _at6(
            s[sr, sc],
            s[sr + ss, sc],
            s[sr + 2 * ss, sc],
            s[sr + 3 * ss, sc],
            s[sr + 4 * ss, sc],
            s[sr + 5 * ss, sc],
        )
        d[dr, dc] = w0
        d[dr + ds, dc + dcs] = w1
        d[dr + 2 * ds, dc + 2 * dcs] = w2
        d[dr + 3 * ds, dc + 3 * dcs] = w3
    else:
        z0, z1, z2, z3, z4, z5 = _at8(
            s[sr, sc],
            s[sr + ss, sc],
            s[sr + 2 * ss, sc],
            s[sr + 3 * ss, sc],
            s[sr + 4 * ss, sc],
            s[sr + 5 * ss, sc],
            s[sr + 6 * ss, sc],
            s[sr + 7 * ss, sc],
        )
        d[dr, dc] = z0
        d[dr + ds, dc + dcs] = z1
        d[dr + 2 * ds, dc + 2 * dcs] = z2
        d[dr + 3 * ds, dc + 3 * dcs] = z3
        d[dr + 4 * ds, dc + 4 * dcs] = z4
        d[dr + 5 * ds, dc + 5 * dcs] = z5


# --- Per-thread bodies: thread ``tid`` of ``nth`` takes a contiguous block of channels and
# every tile of the chunk for them, with its own scratch, so each value is computed by one
# thread in a fixed order (1 and N threads agree bit for bit).


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _input_worker(xp, th, tw, r0, nr, m, tid, nth, v):  # pragma: no cover - compiled
    n, c, hp, wp = xp.shape
    a = m + 2
    tc = nr * tw
    rw = tw * m  # columns of a tile row that start a tile
    xv = min(wp, rw)
    t1 = np.empty((a, nr, rw), xp.dtype)  # vertical pass of the chunk's tile rows
    t1v = t1.reshape(a * nr, rw)  # row r*nr + rr
    t1f = t1.reshape(a, nr * rw)  # row r: column t*m + q is phase q of tile t
    halo = np.empty((a * nr, a - m), xp.dtype)  # the a-m columns right of each tile row
    d = np.empty((m, tc + 1), xp.dtype)  # one row r of t1 deinterleaved into m phase planes
    pad = np.empty((a, wp), xp.dtype)
    x2 = xp.reshape(n * c * hp, wp)
    v2 = v.reshape(a * a * c, tc)  # row (r*a + c)*c_in + ci
    per = (c + nth - 1) // nth
    for ci in range(tid * per, min(c, (tid + 1) * per)):
        for rr in range(nr):
            big = r0 + rr
            b = big // th
            y0 = (big - b * th) * m
            if y0 + a <= hp:
                src = x2
                sr = (b * c + ci) * hp + y0
            else:  # the image's last tile row reaches below the padded input: zero rows
                for k in range(a):
                    for x in range(wp):
                        pad[k, x] = xp[b, ci, y0 + k, x] if y0 + k < hp else 0
                src = pad
                sr = 0
            for x in range(xv):
                _bt_col(m, src, sr, 1, x, 0, t1v, rr, nr, x)
            for k in range(a):  # right of the input: zero columns
                for x in range(xv, rw):
                    t1v[k * nr + rr, x] = 0
            for e in range(a - m):
                if rw + e < wp:
                    _bt_col(m, src, sr, 1, rw + e, 0, halo, rr, nr, e)
                else:
                    for k in range(a):
                        halo[k * nr + rr, e] = 0
        for r in range(a):
            for q in range(m):  # one long strided gather per phase, across all tile rows
                for t in range(tc):
                    d[q, t] = t1f[r, t * m + q]
            vr = r * a * c + ci  # row of V[r*a, ci] in v2; point r*a + c is c*c_in rows on
            for t in range(tc):
                _bt_phase(m, d, t, v2, vr, c, t)
            # The last tile of each row read its right neighbour's first phase values (the
            # next tile row's): put its halo there and redo it. Bottom-up, so that a patch
            # only lands on tiles already final (with tw == 1 a row's first tile is its last).
            for rr in range(nr - 1, -1, -1):
                t = rr * tw + tw - 1
                for q in range(a - m):
                    d[q, t + 1] = halo[r * nr + rr, q]
                _bt_phase(m, d, t, v2, vr, c, t)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _output_worker(mm, bias, act, alpha, r0, th, tw, m, tid, nth, out):  # pragma: no cover
    n, co, oh, ow = out.shape
    a = m + 2
    tc = mm.shape[2]
    nr = tc // tw
    rw = tw * m
    s = np.empty((a * m, tc), mm.dtype)  # vertical pass: row c*m + i
    yr = np.empty((m, tc * m), mm.dtype)  # output rows of the chunk's tile rows, side by side
    m2 = mm.reshape(a * a * co, tc)  # row p*c_out + o
    per = (co + nth - 1) // nth
    for o in range(tid * per, min(co, (tid + 1) * per)):
        for c in range(a):
            for t in range(tc):
                _at_col(m, m2, c * co + o, a * co, t, s, c * m, 1, t, 0)
        for i in range(m):
            for t in range(tc):  # along the row: tile t's pixels land at t*m .. t*m + m-1
                _at_col(m, s, i, m, t, yr, i, 0, t * m, 1)
        bv = bias[o]
        for rr in range(nr):
            big = r0 + rr
            b = big // th
            y0 = (big - b * th) * m
            for i in range(min(m, oh - y0)):
                src = yr[i, rr * rw : rr * rw + ow]
                dst = out[b, o, y0 + i]
                bias_act_row(dst, src, ow, bv, act, alpha)


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _input_f23(xp, th, tw, r0, nr, nth, v):  # pragma: no cover - compiled
    for tid in prange(nth):
        _input_worker(xp, th, tw, r0, nr, 2, tid, nth, v)


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _input_f43(xp, th, tw, r0, nr, nth, v):  # pragma: no cover - compiled
    for tid in prange(nth):
        _input_worker(xp, th, tw, r0, nr, 4, tid, nth, v)


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _input_f63(xp, th, tw, r0, nr, nth, v):  # pragma: no cover - compiled
    for tid in prange(nth):
        _input_worker(xp, th, tw, r0, nr, 6, tid, nth, v)


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _output_f23(mm, bias, act, alpha, r0, th, tw, nth, out):  # pragma: no cover - compiled
    for tid in prange(nth):
        _output_worker(mm, bias, act, alpha, r0, th, tw, 2, tid, nth, out)


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _output_f43(mm, bias, act, alpha, r0, th, tw, nth, out):  # pragma: no cover - compiled
    for tid in prange(nth):
        _output_worker(mm, bias, act, alpha, r0, th, tw, 4, tid, nth, out)


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _output_f63(mm, bias, act, alpha, r0, th, tw, nth, out):  # pragma: no cover - compiled
    for tid in prange(nth):
        _output_worker(mm, bias, act, alpha, r0, th, tw, 6, tid, nth, out)


_INPUT = {2: _input_f23, 4: _input_f43, 6: _input_f63}
_OUTPUT = {2: _output_f23, 4: _output_f43, 6: _output_f63}


def winograd_input_transform(
    m: int, xp: np.ndarray, th: int, tw: int, r0: int, nr: int, v: np.ndarray
) -> None:
    """``v[p, ci, t] = (B^T d B)[p]`` for the tiles of global tile rows ``[r0, r0 + nr)``.

    Args:
        m: output tile size (2, 4 or 6).
        xp: padded input (n, c_in, hp, wp), contiguous; tile (i, j) of image b reads rows
            ``i*m .. i*m+m+1`` and columns ``j*m .. j*m+m+1``, zeros beyond the array.
        th, tw: tiles per image column and row (``ceil(oh/m)``, ``ceil(ow/m)``).
        v: (a*a, c_in, nr*tw), contiguous, written completely.
    """
    _INPUT[m](xp, th, tw, r0, nr, numba.get_num_threads(), v)


def winograd_output_transform(
    m: int,
    mm: np.ndarray,
    bias: np.ndarray,
    act: int,
    alpha: float,
    r0: int,
    th: int,
    tw: int,
    out: np.ndarray,
) -> None:
    """``out = act(A^T M A + bias)`` for the tiles of global tile rows ``[r0, r0 + nr)``.

    Args:
        mm: (a*a, c_out, nr*tw), contiguous: the per-point GEMM results.
        bias: (c_out,) (zeros when the convolution has none).
        act, alpha: the fused activation (``kernels.epilogue`` codes).
        out: (n, c_out, oh, ow); only the valid part of edge tiles is written.
    """
    _OUTPUT[m](mm, bias, act, alpha, r0, th, tw, numba.get_num_threads(), out)


# --- The output transform of channel-blocked GEMM results (``kernels/blocked.py``'s layout):
# ``mb`` (a*a, c_out/8, tc, 8), flat. Eight channels are one vec8f: _at4 and _at6 above,
# written with the vector operations of ``kernels/simd.py``.

_BLOCK = 8


@njit(inline="always", error_model="numpy")
def _at_vec(m, q0, q1, q2, q3, q4, q5):  # pragma: no cover - compiled
    """A^T of one column of a tile: 4 vectors (F(4x4): all six) or 2 (F(2x2): q0..q3)."""
    if m == 4:
        s1 = vadd(q1, q2)
        d1 = vsub(q1, q2)
        s2 = vadd(q3, q4)
        d2 = vsub(q3, q4)
        return (
            vadd(vadd(q0, s1), s2),
            vfma(vbcast(np.float32(2.0)), d2, d1),
            vfma(vbcast(np.float32(4.0)), s2, s1),
            vadd(vfma(vbcast(np.float32(8.0)), d2, d1), q5),
        )
    y0 = vadd(vadd(q0, q1), q2)
    y1 = vsub(vsub(q1, q2), q3)
    return y0, y1, y0, y1


@njit(inline="always", error_model="numpy")
def _output_blocked_worker(m, mb, bias, lo, hi, r0, nr, th, tw, cob, n, c_out, oh, ow, task,
                           s, res, has_res, flags, out):  # fmt: skip  # pragma: no cover
    a = m + 2
    tc = nr * tw
    ps = cob * tc * _BLOCK  # floats between transform points
    plane = oh * ow
    lov = vbcast(np.float32(lo))
    hiv = vbcast(np.float32(hi))
    ob = task // nr
    rr = task - ob * nr
    big = r0 + rr
    b = big // th
    y0 = (big - b * th) * m
    bv = vload(bias, ob * _BLOCK)
    zero = vbcast(np.float32(0.0))
    check = zero  # stays 0 while every output before the activation is finite (inf*0 = NaN)
    rows = min(m, oh - y0)
    for tx in range(tw):
        base = (ob * tc + rr * tw + tx) * _BLOCK
        # vertical pass: s[i*a + c] = (A^T M)[i, c], one vector per (row i, column c)
        for c in range(a):
            q = base + c * ps
            y = _at_vec(m, vload(mb, q), vload(mb, q + a * ps), vload(mb, q + 2 * a * ps),
                        vload(mb, q + 3 * a * ps), vload(mb, q + (4 % a) * a * ps),
                        vload(mb, q + (5 % a) * a * ps))  # fmt: skip
            vstore(s, c * _BLOCK, y[0])
            vstore(s, (a + c) * _BLOCK, y[1])
            if m == 4:
                vstore(s, (2 * a + c) * _BLOCK, y[2])
                vstore(s, (3 * a + c) * _BLOCK, y[3])
        x0 = tx * m
        cols = min(m, ow - x0)
        for i in range(rows):
            r = i * a * _BLOCK
            y = _at_vec(m, vload(s, r), vload(s, r + _BLOCK), vload(s, r + 2 * _BLOCK),
                        vload(s, r + 3 * _BLOCK), vload(s, r + (4 % a) * _BLOCK),
                        vload(s, r + (5 % a) * _BLOCK))  # fmt: skip
            o = ((b * c_out + ob * _BLOCK) * oh + y0 + i) * ow + x0
            v0, v1, v2, v3 = vadd(y[0], bv), vadd(y[1], bv), vadd(y[2], bv), vadd(y[3], bv)
            check = vfma(v0, zero, check)
            if cols > 1:
                check = vfma(v1, zero, check)
            if cols > 2:
                check = vfma(v2, zero, check)
            if cols > 3:
                check = vfma(v3, zero, check)
            # the row's pixels (lanes: channels ob*8..) stored transposed into the NCHW
            # planes, 4 floats per channel (8 scalar stores per pixel took 0.2-0.5 ms more
            # per ResNet-18 layer with a residual at batch 1)
            if has_res:  # residual added to the sum, then the clamp
                if cols == 4:
                    r0, r1, r2, r3 = vload_t4(res, o, plane)
                else:
                    r0, r1, r2, r3 = vload_t4_n(res, o, plane, cols)
                v0, v1, v2, v3 = vadd(v0, r0), vadd(v1, r1), vadd(v2, r2), vadd(v3, r3)
            v0, v1 = vclamp(v0, lov, hiv), vclamp(v1, lov, hiv)
            v2, v3 = vclamp(v2, lov, hiv), vclamp(v3, lov, hiv)
            if cols == 4:
                vstore_t4(out, o, plane, v0, v1, v2, v3)
            else:
                vstore_t4_n(out, o, plane, v0, v1, v2, v3, cols)
    vstore(flags, task * _BLOCK, check)


@njit(parallel=True, cache=True, error_model="numpy")
def _output_blocked_f23(mb, bias, lo, hi, r0, nr, th, tw, cob, n, c_out, oh, ow, res, has_res,
                        flags, out):  # fmt: skip
    for task in prange(cob * nr):  # pragma: no cover - compiled
        s = np.empty(2 * 4 * _BLOCK, np.float32)
        _output_blocked_worker(2, mb, bias, lo, hi, r0, nr, th, tw, cob, n, c_out, oh, ow, task,
                               s, res, has_res, flags, out)  # fmt: skip


@njit(parallel=True, cache=True, error_model="numpy")
def _output_blocked_f43(mb, bias, lo, hi, r0, nr, th, tw, cob, n, c_out, oh, ow, res, has_res,
                        flags, out):  # fmt: skip
    for task in prange(cob * nr):  # pragma: no cover - compiled
        s = np.empty(4 * 6 * _BLOCK, np.float32)
        _output_blocked_worker(4, mb, bias, lo, hi, r0, nr, th, tw, cob, n, c_out, oh, ow, task,
                               s, res, has_res, flags, out)  # fmt: skip


_OUTPUT_BLOCKED = {2: _output_blocked_f23, 4: _output_blocked_f43}


def winograd_output_blocked(
    m: int,
    mb: np.ndarray,
    bias: np.ndarray,
    lo: float,
    hi: float,
    r0: int,
    nr: int,
    th: int,
    tw: int,
    out: np.ndarray,
    residual: np.ndarray | None = None,
) -> bool:
    """``out = clamp(A^T M A + bias [+ residual], lo, hi)`` for the tiles of global tile rows
    ``[r0, r0 + nr)``, from channel-blocked GEMM results; returns whether every
    ``A^T M A + bias`` was finite (a NaN or Inf in a tile's input spreads over the whole
    tile, which the caller then recomputes).

    Args:
        m: output tile size, 2 or 4.
        mb: (a*a, c_out/8, nr*tw, 8), flat, contiguous float32.
        bias: (c_out,) float32 (zeros when the convolution has none).
        lo, hi: the clamp: relu (0, inf), relu6 (0, 6), none (-inf, inf); NaN passes.
        out: (n, c_out, oh, ow) contiguous float32, c_out a multiple of 8; only the valid part
            of edge tiles is written.
        residual: None, or an array like ``out`` added before the clamp (rounded to float32
            first, as an unfused add).
    """
    n, c_out, oh, ow = out.shape
    cob = c_out // _BLOCK
    flat = out.reshape(-1)
    has_res = residual is not None
    res = residual.reshape(-1) if has_res else flat
    flags = np.empty(cob * nr * _BLOCK, np.float32)
    _OUTPUT_BLOCKED[m](mb, bias, lo, hi, r0, nr, th, tw, cob, n, c_out, oh, ow, res, has_res,
                       flags, flat)  # fmt: skip
    return not flags.any()
