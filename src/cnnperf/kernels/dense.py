"""A fully connected layer for small batches on a pre-packed weight: :func:`dense_packed`.

A network's classifier at batch 1-8 is a matrix-vector product in all but name: 1280 x 1000
weights (5 MB) read once for a few rows of input. NumPy's ``x @ w.T`` wakes OpenBLAS's
threads and runs its GEMM (or GEMV) setup for it and adds the bias in a second pass. Here the
weight is packed once into blocks of 8 output features, ``(blocks, k, 8)``: every input
element is broadcast against the 8 features of a block, each block's weights are read in one
stream, the bias is added as the result is stored, and the blocks are shared out between the
threads.

Tiles are 4 rows x 2 blocks (8 accumulators of 8 lanes, ``kernels/simd.py``); rows past the
batch read the tile's first row (computed, never stored), so one batch-1 row still keeps 8
independent FMA chains in flight while the weights stream in.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .simd import vadd, vbcast_load, vfma, vload, vstore, vstore_n, vzero

__all__ = [
    "pack_dense_weight",
    "pack_dense_bias",
    "dense_packed",
    "dense_task",
    "dense_tasks",
    "DENSE_BLOCKS",
]

LANES = 8
ROWS = 4  # input rows per tile
DENSE_BLOCKS = 2  # blocks of 8 output features per tile


def _blocks(n_out: int) -> int:
    blocks = -(-n_out // LANES)
    return blocks + (-blocks % DENSE_BLOCKS)


def pack_dense_weight(w: np.ndarray) -> np.ndarray:
    """(n_out, k) -> (blocks, k, 8) float32, flat: ``packed[b, i, j] = w[8*b + j, i]``, the
    blocks padded with zeros to a multiple of DENSE_BLOCKS."""
    n_out, k = w.shape
    blocks = _blocks(n_out)
    packed = np.zeros((blocks * LANES, k), np.float32)
    packed[:n_out] = w
    return np.ascontiguousarray(packed.reshape(blocks, LANES, k).transpose(0, 2, 1)).reshape(-1)


def pack_dense_bias(bias: np.ndarray | None, n_out: int) -> np.ndarray:
    """The bias (or zeros) padded with zeros to the packed weight's blocks."""
    out = np.zeros(_blocks(n_out) * LANES, np.float32)
    if bias is not None:
        out[:n_out] = bias
    return out


def dense_tasks(n_out: int, threads: int) -> int:
    """Tasks for :func:`dense_packed`: tiles of DENSE_BLOCKS blocks, about 8 per thread."""
    tiles = -(-n_out // (LANES * DENSE_BLOCKS))
    return max(1, min(tiles, 8 * max(1, threads)))


@njit(parallel=True, cache=True, error_model="numpy")
def dense_packed(x, w, bias, m, k, n_out, tasks, out):  # pragma: no cover - compiled
    """``out[r, j] = bias[j] + sum_i x[r, i] * w[j, i]`` for ``r < m``, ``j < n_out``.

    Args:
        x: (m, k) float32, flat.
        w: :func:`pack_dense_weight`'s packed (n_out, k) weight.
        bias: :func:`pack_dense_bias`'s padded bias.
        tasks: parts the output features are split into (:func:`dense_tasks`).
        out: (m, n_out) float32, flat, written completely.
    """
    for task in prange(tasks):
        dense_task(task, x, w, bias, m, k, n_out, tasks, out)


@njit(inline="always")
def dense_task(task, x, w, bias, m, k, n_out, tasks, out):  # pragma: no cover - compiled
    """Task ``task`` of :func:`dense_packed`: its share of the tiles of output blocks, for
    every row."""
    tiles = (n_out + LANES * DENSE_BLOCKS - 1) // (LANES * DENSE_BLOCKS)
    for tile in range(task * tiles // tasks, (task + 1) * tiles // tasks):
        b0 = tile * DENSE_BLOCKS
        w0 = b0 * k * LANES
        w1 = w0 + k * LANES
        for r0 in range(0, m, ROWS):
            x0 = r0 * k
            x1 = (r0 + 1) * k if r0 + 1 < m else x0
            x2 = (r0 + 2) * k if r0 + 2 < m else x0
            x3 = (r0 + 3) * k if r0 + 3 < m else x0
            a00 = vzero()
            a01 = vzero()
            a02 = vzero()
            a03 = vzero()
            a10 = vzero()
            a11 = vzero()
            a12 = vzero()
            a13 = vzero()
            for i in range(k):
                v0 = vload(w, w0 + i * LANES)
                v1 = vload(w, w1 + i * LANES)
                xv = vbcast_load(x, x0 + i)
                a00 = vfma(v0, xv, a00)
                a10 = vfma(v1, xv, a10)
                xv = vbcast_load(x, x1 + i)
                a01 = vfma(v0, xv, a01)
                a11 = vfma(v1, xv, a11)
                xv = vbcast_load(x, x2 + i)
                a02 = vfma(v0, xv, a02)
                a12 = vfma(v1, xv, a12)
                xv = vbcast_load(x, x3 + i)
                a03 = vfma(v0, xv, a03)
                a13 = vfma(v1, xv, a13)
            rows = min(ROWS, m - r0)
            _store(out, bias, n_out, r0, b0, a00, a01, a02, a03, rows)
            _store(out, bias, n_out, r0, b0 + 1, a10, a11, a12, a13, rows)


@njit(inline="always")
def _store(out, bias, n_out, r0, block, a0, a1, a2, a3, rows):  # pragma: no cover - compiled
    """Rows r0..r0+rows-1 of output block ``block``: its first ``n_out - 8*block`` features
    (masked stores in the last, partial block; none past it)."""
    j = block * LANES
    if j >= n_out:
        return
    lanes = min(LANES, n_out - j)
    bv = vload(bias, j)
    _store_row(out, r0 * n_out + j, vadd(a0, bv), lanes)
    if rows > 1:
        _store_row(out, (r0 + 1) * n_out + j, vadd(a1, bv), lanes)
    if rows > 2:
        _store_row(out, (r0 + 2) * n_out + j, vadd(a2, bv), lanes)
    if rows > 3:
        _store_row(out, (r0 + 3) * n_out + j, vadd(a3, bv), lanes)


@njit(inline="always")
def _store_row(out, at, v, lanes):  # pragma: no cover - compiled
    if lanes == LANES:
        vstore(out, at, v)
    else:
        vstore_n(out, at, v, lanes)
