"""Convolution on the channel-blocked layout NCHW8c (``kernels/blocked.py``), for compiled graphs.

A blocked array holds a logical (n, c, h, w) tensor as (n, c/8, h, w, 8): element
``[b, k, y, x, j]`` is channel ``k*8 + j``. :func:`to_blocked` and :func:`from_blocked` convert;
:class:`BlockedConv2d` runs the convolutions whose inner loops are 8 channels wide in this
layout (1x1 stride-1 unpadded and depthwise on blocked inputs, any ungrouped one of an NCHW
input), writing blocked arrays with bias, relu / relu6 and (not depthwise) a residual fused;
``compile.layout`` chains them through a model. :class:`BlockedGemmConv` is the
``"blocked_gemm"`` algorithm of ``ops.conv2d``: the NCHW-input kind, converted back to NCHW.

Example:
    >>> from cnnperf.ops import conv2d
    >>> x = np.random.default_rng(0).random((1, 16, 5, 5), dtype=np.float32)
    >>> w = np.full((8, 16, 1, 1), 0.5, np.float32)
    >>> y = from_blocked(BlockedConv2d(w, None, input_shape=x.shape)(to_blocked(x)))
    >>> bool(np.allclose(y, conv2d(x, w), rtol=1e-5))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from .. import config
from ..shapes import ConvParams
from .conv_algos import CONV_ALGOS, ConvAlgorithm, register_conv_algo
from .epilogue import NO_EPILOGUE, Epilogue, apply_epilogue, apply_residual_epilogue

__all__ = [
    "BLOCK",
    "BlockedConv2d",
    "to_blocked",
    "from_blocked",
    "blocked_shape",
    "global_avg_pool2d_blocked",
    "bind_global_avg_pool2d_blocked",
    "max_pool2d_blocked",
    "bind_max_pool2d_blocked",
    "BlockedGemmConv",
    "ChainLayer",
    "run_chained",
    "fuse_expand_depthwise",
]

BLOCK = 8
# activation -> the clamp the kernels fuse
_CLAMPS = {None: (-np.inf, np.inf), "relu": (0.0, np.inf), "relu6": (0.0, 6.0)}
_ONE_PHASE = np.ones(1, np.bool_)
# Output width from which a padded NCHW input is read in place (direct_conv_blocked) rather than
# from a zero-padded copy: its 4-pixel tiles stop at each row's interior, so a row of 14 costs 4
# tiles and an edge pixel where the padded GEMM's raster tiles cost 3.5. Inside ResNet-18 at
# batch 1 (each step timed in compiled runs, medians of 40): the 112-wide 7x7 stem 1.74 ms
# against 1.93 (pad + GEMM), the 3x3 stride-2 layers 1.01 / 1.11 / 1.12 ms at widths 28 / 14 / 7
# against 0.99 / 0.92 / 0.94.
DIRECT_MIN_WIDTH = 56
# Bytes of input one pointwise task sweeps for every group of output blocks (L2 is 512 KiB).
_PW_CHUNK_BYTES = 64 << 10
# Bytes of scratch per thread of a fused expansion + depthwise conv: the band of expanded rows
# one task computes and reads back (L2 is 512 KiB). MobileNetV2's nine kinds of pairs, kernels
# called alone, 2 threads, interleaved medians: fused / unfused 0.81 at batch 8 and 0.88 at
# batch 1 with 256 KiB, 0.82 at batch 8 with 128 KiB (more halo rows computed twice); on the
# 56x56 pairs, whole images in 384 KiB: 0.86 / 0.72 against 0.92 / 0.77 in 256 KiB.
FUSED_SCRATCH_BYTES = 384 << 10


def blocked_shape(shape: tuple) -> tuple:
    """(n, c, h, w) -> (n, c/8, h, w, 8)."""
    n, c, h, w = shape
    return (n, c // BLOCK, h, w, BLOCK)


def _check_float32(name: str, x: np.ndarray, ndim: int) -> None:
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != ndim:
        raise ValueError(
            f"{name}: expected a float32 {ndim}-D array, got "
            f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}"
        )


def to_blocked(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(n, c, h, w) float32, c a multiple of 8 -> the blocked (n, c/8, h, w, 8) array."""
    _check_float32("to_blocked", x, 4)
    if x.shape[1] % BLOCK:
        raise ValueError(f"to_blocked: channels must be a multiple of {BLOCK}, got {x.shape}")
    shape = blocked_shape(x.shape)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"to_blocked: out must be a contiguous float32 {shape}, got {out.shape}")
    _KERNELS.sync_threads()
    _KERNELS.to_blocked(np.ascontiguousarray(x), out)
    return out


def from_blocked(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The blocked (n, c/8, h, w, 8) array -> (n, c, h, w). An ``out`` of (n, c', h, w) with
    ``c - 8 < c' <= c`` takes the first c' channels (a zero-padded last block dropped)."""
    _check_float32("from_blocked", x, 5)
    if x.shape[4] != BLOCK:
        raise ValueError(f"from_blocked: the last dimension must be {BLOCK}, got {x.shape}")
    n, cb, h, w, _ = x.shape
    shape = (n, cb * BLOCK, h, w)
    if out is None:
        out = np.empty(shape, np.float32)
    elif (
        out.shape[:1] + out.shape[2:] != (n, h, w)
        or not shape[1] - BLOCK < out.shape[1] <= shape[1]
        or out.dtype != np.float32
        or not out.flags.c_contiguous
    ):
        raise ValueError(f"from_blocked: out must be a contiguous float32 {shape} (or with up "
                         f"to {BLOCK - 1} channels fewer), got {out.shape}")  # fmt: skip
    _KERNELS.sync_threads()
    _KERNELS.from_blocked(np.ascontiguousarray(x), out)
    return out


def global_avg_pool2d_blocked(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The blocked (n, c/8, h, w, 8) array -> its (n, c, 1, 1) mean over h and w (NCHW),
    written into ``out`` when given (a contiguous float32 array of that shape)."""
    _check_float32("global_avg_pool2d_blocked", x, 5)
    if x.shape[4] != BLOCK:
        raise ValueError(f"global_avg_pool2d_blocked: the last dimension must be {BLOCK}, got "
                         f"{x.shape}")  # fmt: skip
    n, cb, h, w, _ = x.shape
    shape = (n, cb * BLOCK, 1, 1)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != _F32 or not out.flags.c_contiguous:
        raise ValueError(f"global_avg_pool2d_blocked: out must be a contiguous float32 {shape}, "
                         f"got {out.dtype} {out.shape}")  # fmt: skip
    _KERNELS.sync_threads()
    _KERNELS.global_avg_pool_blocked(
        np.ascontiguousarray(x).reshape(-1), n, cb, h * w, out.reshape(-1)
    )
    return out


def bind_global_avg_pool2d_blocked(x: np.ndarray, out: np.ndarray) -> Callable[[], None] | None:
    """``global_avg_pool2d_blocked(x, out)`` prepared for these very arrays: a call without
    arguments (with ``.chain_layer``, so that a compiled model chains it after the blocked
    convolutions before it), or None when they do not fit."""
    ok = all(isinstance(a, np.ndarray) and a.dtype == _F32 and a.flags.c_contiguous
             for a in (x, out))  # fmt: skip
    if not ok or x.ndim != 5 or x.shape[4] != BLOCK or x.shape[0] < 1:
        return None
    n, cb, h, w, _ = x.shape
    if out.shape != (n, cb * BLOCK, 1, 1):
        return None
    from ..kernels import chain

    k = _KERNELS
    args = (x.reshape(-1), n, cb, h * w, out.reshape(-1))

    def run() -> None:
        k.sync_threads()
        k.global_avg_pool_blocked(*args)

    threads = config.get_num_threads()
    row = chain.layer_row(k.global_avg_pool_blocked, args, threads)
    run.chain_layer = ChainLayer(row, -np.inf, np.inf, threads, args, "global_avg_pool_blocked")
    return run


def max_pool2d_blocked(
    x: np.ndarray,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``ops.max_pool2d`` of the logical (n, c, h, w) tensor held in the blocked (n, c/8, h, w,
    8) array ``x``, returned as an NCHW (n, c, oh, ow) array (written into ``out`` when given:
    contiguous float32 of that shape): the same arguments and checks, the same result bit for
    bit (PyTorch's tap order, NaN propagation and sign of zero)."""
    run = _max_pool_blocked_call(x, kernel_size, stride, padding, dilation, ceil_mode, out)
    run()
    return run.out


def bind_max_pool2d_blocked(
    x: np.ndarray, out: np.ndarray, kernel_size, stride=None, padding=0, dilation=1,
    ceil_mode: bool = False,
) -> Callable[[], None] | None:  # fmt: skip
    """``max_pool2d_blocked(x, ..., out=out)`` prepared for these very arrays: a call without
    arguments, or None when they do not fit (contiguous float32 of the shapes it takes)."""
    arrays_fit = all(isinstance(a, np.ndarray) and a.dtype == _F32 and a.flags.c_contiguous
                     for a in (x, out))  # fmt: skip
    if not arrays_fit or x.ndim != 5 or x.shape[0] < 1:
        return None
    try:
        return _max_pool_blocked_call(x, kernel_size, stride, padding, dilation, ceil_mode, out)
    except ValueError:
        return None


def _max_pool_blocked_call(x, kernel_size, stride, padding, dilation, ceil_mode, out):
    """The checked call of :func:`max_pool2d_blocked`, without arguments (``.out``: its
    output array)."""
    from .pool import _pool_params

    _check_float32("max_pool2d_blocked", x, 5)
    if x.shape[4] != BLOCK:
        raise ValueError(f"max_pool2d_blocked: the last dimension must be {BLOCK}, got "
                         f"{x.shape}")  # fmt: skip
    n, cb, h, w, _ = x.shape
    if h == 0 or w == 0 or cb == 0:
        raise ValueError(f"max_pool2d_blocked: expected non-zero channel and spatial sizes, got "
                         f"{x.shape}")  # fmt: skip
    logical = np.broadcast_to(np.float32(0), (n, cb * BLOCK, h, w))  # its shape, no memory
    p = _pool_params("max_pool2d_blocked", logical, False, kernel_size, stride, padding,
                     dilation, ceil_mode)  # fmt: skip
    shape = (n, cb * BLOCK, p.oh, p.ow)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != _F32 or not out.flags.c_contiguous:
        raise ValueError(f"max_pool2d_blocked: out must be a contiguous float32 {shape}, got "
                         f"{out.dtype} {out.shape}")  # fmt: skip
    args = (np.ascontiguousarray(x).reshape(-1), n, cb, h, w, p.kh, p.kw, p.sh, p.sw, p.ph,
            p.pw, p.dh, p.dw, p.oh, p.ow, out.reshape(-1))  # fmt: skip
    k = _KERNELS

    def run() -> None:
        if n:
            k.sync_threads()
            k.max_pool_blocked(*args)

    run.out = out
    return run


class ChainLayer(NamedTuple):
    """A bound blocked convolution as one layer of a chain (``BlockedConv2d.bind(...)``'s
    ``.chain_layer``): its ``kernels.chain`` table row, clamp, the thread count the row's
    claims were sized for, the kernel's arguments (the arrays whose addresses the row holds,
    kept alive), the kernel's name, and a second clamp (a fused pair's second layer's)."""

    row: np.ndarray
    lo: float
    hi: float
    threads: int
    arrays: tuple
    kernel: str = ""
    lo2: float = -np.inf
    hi2: float = np.inf


def run_chained(layers: Sequence[ChainLayer]) -> Callable[[], None]:
    """One call without arguments that runs bound blocked convolutions in order, as one
    parallel region (``kernels.chain``): what calling each layer's bound ``run()`` in turn
    does, without waking the threads for each layer. The layers' arrays must stay as they
    were bound (a compiled model's arena)."""
    from ..kernels import chain, sync_threads

    if not layers:
        raise ValueError("run_chained: no layers")
    threads = {layer.threads for layer in layers}
    if len(threads) != 1:
        raise ValueError(f"run_chained: layers bound at different thread counts {threads}")
    table = np.stack([layer.row for layer in layers])
    clamps = np.array([(layer.lo, layer.hi, layer.lo2, layer.hi2) for layer in layers],
                      np.float64)  # fmt: skip
    sync = np.zeros(2 * len(layers), np.int64)
    n_threads = threads.pop()
    kernel = chain.run_chain

    def run() -> None:
        sync_threads()
        sync.fill(0)
        kernel(table, clamps, sync, n_threads)

    run.layers = tuple(layers)  # and so their arrays, whose addresses the table holds
    return run


def fuse_expand_depthwise(first: ChainLayer, second: ChainLayer) -> ChainLayer | None:
    """One chain layer computing ``first`` (a bound 1x1 convolution of a blocked input, no
    residual) and then ``second`` (a bound depthwise convolution of ``first``'s output) with
    ``kernels.fused.expand_depthwise_blocked``: bit-identical to the two in turn, except that
    ``first``'s output buffer is not written. None when the pair is not of that kind. The
    caller makes sure nothing else reads ``first``'s output."""
    import numba

    from ..kernels import chain

    if first.kernel != "pointwise_blocked" or second.kernel != "depthwise_blocked":
        return None
    if first.threads != second.threads:
        return None
    x, wp, bp, _, has_res, n, c_in, cbo, pixels, _, _, offs, lo1, hi1, mid, _ = first.arrays
    xd, wd, bd, n2, cb, h, wi, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, lo2, hi2, out = second.arrays
    same = xd.ctypes.data == mid.ctypes.data and xd.size == mid.size
    if has_res or not same or (n2, cb, h * wi) != (n, cbo, pixels):
        return None
    band_rows, slot_size = expand_depthwise_split(n, cb, h, wi, oh, kh, sh, dh, first.threads)
    scratch = np.empty(numba.config.NUMBA_NUM_THREADS * slot_size, np.float32)
    args = (x, wp, bp, offs, n, c_in, cb, h, wi, wd, bd, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow,
            band_rows, lo1, hi1, lo2, hi2, scratch, slot_size, out)  # fmt: skip
    row = chain.expand_depthwise_row(*args, threads=first.threads)
    return ChainLayer(row, float(lo1), float(hi1), first.threads, args,
                      "expand_depthwise_blocked", float(lo2), float(hi2))  # fmt: skip


def expand_depthwise_split(
    n: int, cb: int, h: int, wi: int, oh: int, kh: int, sh: int, dh: int, threads: int
) -> tuple:
    """(band_rows, slot_size) of ``kernels.fused.expand_depthwise_blocked``: the most output
    rows per band whose expanded input rows fit FUSED_SCRATCH_BYTES for a group of
    PW_BLOCKS blocks, bands of equal height, and enough bands for every thread to have two
    tasks; slot_size in floats."""
    from ..kernels.blocked import PW_BLOCKS

    groups = -(-cb // PW_BLOCKS)
    row_bytes = PW_BLOCKS * BLOCK * 4 * wi
    fit = max(1, (FUSED_SCRATCH_BYTES // row_bytes - (kh - 1) * dh - 1) // sh + 1)
    bands = -(-oh // fit)
    if n * groups * bands < 2 * threads:
        bands = min(oh, -(-2 * threads // (n * groups)))
    band_rows = -(-oh // bands)
    rows = min(h, (band_rows - 1) * sh + (kh - 1) * dh + 1)
    return band_rows, PW_BLOCKS * BLOCK * wi * rows


def gemm_work_split(pixels: int, terms: int, out_blocks: int, n: int, threads: int) -> tuple:
    """(tile_chunk, splits) for :func:`gemm_conv_blocked
    <cnnperf.kernels.blocked.gemm_conv_blocked>` and ``pointwise_blocked``: ``n`` images of
    ``pixels`` outputs, ``terms`` products each, ``out_blocks`` blocks of 8 channels."""
    from ..kernels.blocked import PW_BLOCKS, PW_PIXELS

    tiles = -(-pixels // PW_PIXELS)
    groups = -(-out_blocks // PW_BLOCKS)
    want = 4 * threads  # tasks, for the threads to share evenly
    if out_blocks * BLOCK > pixels:
        # more weight than input (the small late planes): every task sweeps all of an image's
        # pixels for its groups of output blocks, so each weight is read once per image, not
        # once per pixel chunk
        chunk = tiles
    else:
        # a task's input chunk stays in L2 (1x1 of a blocked input: 4 pixels x c_in)
        chunk = max(1, _PW_CHUNK_BYTES // (PW_PIXELS * terms * 4))
        chunk = min(chunk, max(1, -(-tiles * n // want)))
    chunks = -(-tiles // chunk)
    return chunk, min(groups, max(1, -(-want // (n * chunks))))


class BlockedConv2d:
    """A prepared convolution that writes a blocked array: ``conv(x, residual=None, out=None)``.

    Three kinds (:meth:`supports`), all float32 with c_out a multiple of 8 and the activations
    None, "relu" or "relu6" fused:

    - ``input_layout="nchw8c"`` (a blocked input, c_in a multiple of 8): 1x1, stride 1,
      unpadded, ungrouped (a blocked residual may be fused);
    - the same input: depthwise (groups == c_in == c_out, any kernel, stride, padding,
      dilation; no residual);
    - ``input_layout="nchw"`` (an NCHW input, any c_in): any ungrouped convolution, read from a
      zero-padded copy of the input (a network's RGB stem, writing the blocked layout the
      layers after it read; a blocked residual may be fused).

    Same arguments as ``ops.plan_conv2d``; ``input_shape`` is the logical (n, c, h, w) shape
    (the batch may differ per call).
    """

    def __init__(
        self,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        *,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        activation: str | None = None,
        input_shape: tuple,
        input_layout: str = "nchw8c",
    ) -> None:
        from ..kernels import blocked as k
        from .conv import conv_params

        weight = np.asarray(weight)
        n = 1 if input_shape[0] is None else input_shape[0]
        p = conv_params((n, *input_shape[1:]), weight.shape, stride, padding, dilation, groups)
        reason = self.unsupported(p, weight.dtype, activation, input_layout=input_layout)
        if reason:
            raise ValueError(f"BlockedConv2d: {reason}")
        self.params: ConvParams = p
        self._kernels = _KERNELS
        self._splits: dict[tuple, tuple] = {}
        self._in_tail = (
            (p.c_in, p.h, p.w) if input_layout == "nchw" else (p.c_in // BLOCK, p.h, p.w, BLOCK)
        )
        self._out_tail = (p.c_out // BLOCK, p.oh, p.ow, BLOCK)
        self.activation = activation
        self.input_layout = input_layout
        self.lo, self.hi = _CLAMPS[activation]
        self.depthwise = p.g > 1
        self.out_blocks = p.c_out // BLOCK
        # 1x1 of a blocked input: tiles of 3 pixels x 4 output blocks where 4 x 3 would end
        # each pixel tile in a 1-2 block group (kernels.blocked.use_quads)
        self.quad = input_layout == "nchw8c" and not self.depthwise and k.use_quads(self.out_blocks)
        if self.depthwise:
            self.weight = k.pack_depthwise_weight(weight)
            self.bias = k.pack_bias(bias, p.c_out, self.out_blocks)
            return
        self.weight = k.pack_gemm_weight(weight)
        terms = p.c_in * p.kh * p.kw
        self.bias = k.pack_bias(bias, p.c_out, self.weight.size // (BLOCK * terms))
        if input_layout == "nchw8c":  # channel c of pixel 0 of a blocked image
            c = np.arange(p.c_in)
            self.offs = ((c // BLOCK) * (p.h * p.w * BLOCK) + c % BLOCK).astype(np.int64)
        else:  # term (c, i, j) of the zero-padded input
            self.hp, self.wp = p.h + p.pt + p.pb, p.w + p.pl + p.pr
            c, i, j = np.meshgrid(np.arange(p.c_in), np.arange(p.kh), np.arange(p.kw),
                                  indexing="ij")  # fmt: skip
            self.offs = (c * self.hp * self.wp + i * p.dh * self.wp + j * p.dw).ravel()
            self.offs = self.offs.astype(np.int64)
        # a padded NCHW input is read as it is, its padding skipped (direct_conv_blocked), when
        # its output rows are wide enough for the row-bound tiles
        self.direct = (
            input_layout == "nchw" and (self.hp, self.wp) != (p.h, p.w) and p.ow >= DIRECT_MIN_WIDTH
        )

    @staticmethod
    def unsupported(
        p: ConvParams, dtype, activation, residual: bool = False, input_layout: str = "nchw8c"
    ) -> str | None:
        """Why :class:`BlockedConv2d` cannot run ``p``, or None if it can."""
        if np.dtype(dtype) != np.float32:
            return f"needs a float32 weight, got {np.dtype(dtype)}"
        if activation not in _CLAMPS:
            return f"fuses the activations None, 'relu' and 'relu6', got {activation!r}"
        if input_layout == "nchw":
            if p.c_out % BLOCK:
                return f"needs output channels in multiples of {BLOCK}, got c_out={p.c_out}"
            return "reads an NCHW input for ungrouped convolutions only" if p.g > 1 else None
        if input_layout != "nchw8c":
            return f"input_layout must be 'nchw8c' or 'nchw', got {input_layout!r}"
        if p.c_in % BLOCK or p.c_out % BLOCK:
            return f"needs channels in multiples of {BLOCK}, got c_in={p.c_in}, c_out={p.c_out}"
        pointwise = (p.kh, p.kw, p.sh, p.sw, p.pt, p.pb, p.pl, p.pr) == (1, 1, 1, 1, 0, 0, 0, 0)
        if p.g == 1 and pointwise:
            return None
        if p.g == p.c_in == p.c_out:
            return "fuses a residual into 1x1 convolutions only" if residual else None
        return "runs 1x1 stride-1 unpadded ungrouped and depthwise convolutions only"

    @classmethod
    def supports(
        cls, p: ConvParams, dtype=np.float32, activation=None, residual=False, input_layout="nchw8c"
    ) -> bool:
        return cls.unsupported(p, dtype, activation, residual, input_layout) is None

    @property
    def name(self) -> str:
        """What ``CompiledModel.profile`` shows as the algorithm."""
        if self.depthwise:
            return "blocked_depthwise"
        return "blocked_gemm" if self.input_layout == "nchw" else "blocked_pointwise"

    def output_shape(self, n: int) -> tuple:
        return (n, *self._out_tail)

    def _check_input(self, x: np.ndarray) -> None:
        _check_float32("BlockedConv2d", x, 1 + len(self._in_tail))
        if x.shape[1:] != self._in_tail:
            kind = "an input" if self.input_layout == "nchw" else "a blocked input"
            tail = ", ".join(map(str, self._in_tail))
            raise ValueError(f"BlockedConv2d: expected {kind} (n, {tail}), got {x.shape}")

    def _launch(self, n: int) -> tuple:
        """The kernel's work split at batch ``n`` and the current thread count (cached)."""
        threads = config.get_num_threads()
        key = (n, threads)
        split = self._splits.get(key)
        if split is None:
            p = self.params
            split = gemm_work_split(p.oh * p.ow, p.c_in * p.kh * p.kw, self.out_blocks, n, threads)
            self._splits[key] = split
        return split

    def _direct_launch(self, n: int) -> tuple:
        """(rows, splits) of :func:`direct_conv_blocked
        <cnnperf.kernels.blocked.direct_conv_blocked>` at batch ``n`` (cached): about 4 tasks
        per thread, whole rows each, the groups of output blocks shared out when the rows
        are too few."""
        threads = config.get_num_threads()
        key = ("direct", n, threads)
        split = self._splits.get(key)
        if split is None:
            from ..kernels.blocked import PW_BLOCKS

            p = self.params
            want = 4 * threads
            if self.out_blocks * BLOCK > p.oh * p.ow:
                # more weight than output pixels (the small late planes): every task sweeps
                # all of an image's rows for its groups, each weight read once per image
                rows = p.oh
            else:
                rows = max(1, min(p.oh, n * p.oh // want))
            chunks = -(-p.oh // rows)
            groups = -(-self.out_blocks // PW_BLOCKS)
            split = self._splits[key] = (rows, min(groups, max(1, -(-want // (n * chunks)))))
        return split

    def __call__(
        self, x: np.ndarray, residual: np.ndarray | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        if (
            not (isinstance(x, np.ndarray) and x.shape[1:] == self._in_tail and x.dtype == _F32)
            or not x.flags.c_contiguous
        ):
            self._check_input(x)  # raises for the wrong kind of array
            x = np.ascontiguousarray(x)
        n = x.shape[0]
        shape = self.output_shape(n)
        if out is None:
            out = np.empty(shape, np.float32)
        elif out.shape != shape or out.dtype != _F32 or not out.flags.c_contiguous:
            raise ValueError(f"BlockedConv2d: out must be a contiguous float32 {shape}")
        if residual is not None:
            if self.depthwise:
                raise ValueError("BlockedConv2d: a residual is fused into 1x1 convolutions only")
            _check_float32("BlockedConv2d residual", residual, 5)
            if residual.shape != shape:
                raise ValueError(f"BlockedConv2d: residual must have shape {shape}, got "
                                 f"{residual.shape}")  # fmt: skip
        return self._run(x, out, self.bias, self.lo, self.hi, residual)

    def bind(
        self, x: np.ndarray, out: np.ndarray, residual: np.ndarray | None = None
    ) -> Callable[[], None] | None:
        """``conv(x, residual, out=out)`` prepared for these very arrays: a call without
        arguments that reruns the kernel on whatever they hold then, with the checks, the
        work split and the kernel's arguments done once (a compiled model's fixed buffers at
        batch 1 paid ~5 us of Python per layer for them). None when the arrays do not fit
        (not contiguous float32 of the shapes ``__call__`` accepts) or the kind needs a
        padded copy of the input."""
        n = x.shape[0] if isinstance(x, np.ndarray) and x.ndim else 0
        shape = self.output_shape(n)
        arrays = [x, out] if residual is None else [x, out, residual]
        if not all(
            isinstance(a, np.ndarray) and a.dtype == _F32 and a.flags.c_contiguous for a in arrays
        ):
            return None
        if x.shape[1:] != self._in_tail or out.shape != shape or n < 1:
            return None
        if (
            self.input_layout == "nchw"
            and not self.direct
            and (self.hp, self.wp)
            != (
                self.params.h,
                self.params.w,
            )
        ):
            return None  # each call pads its input into a new array
        if residual is not None and (self.depthwise or residual.shape != shape):
            return None
        kernel, args = self._call(x, out, self.bias, self.lo, self.hi, residual)
        sync = self._kernels.sync_threads

        def run() -> None:
            sync()
            kernel(*args)

        run.chain_layer = self._chain_layer(kernel, args)
        return run

    def _chain_layer(self, kernel, args: tuple) -> ChainLayer:
        """The call ``kernel(*args)`` as a layer of a chain (:func:`run_chained`)."""
        from ..kernels import chain

        threads = config.get_num_threads()
        return ChainLayer(chain.layer_row(kernel, args, threads), float(self.lo),
                          float(self.hi), threads, args, kernel.__name__)  # fmt: skip

    def _run(self, x, out, bias, lo, hi, residual=None) -> np.ndarray:
        """Run the kernel on checked arrays with this bias (packed) and clamp."""
        if x.shape[0] == 0:  # an empty batch: nothing to write
            return out
        self._kernels.sync_threads()
        if self.input_layout == "nchw" and not self.direct:
            x = self._padded(x)
        if residual is not None:
            residual = np.ascontiguousarray(residual)
        kernel, args = self._call(x, out, bias, lo, hi, residual)
        kernel(*args)
        return out

    def _call(self, x, out, bias, lo, hi, residual=None) -> tuple:
        """(kernel, its arguments) writing this conv of ``x`` into ``out``: contiguous
        checked arrays, an NCHW input already padded (``_padded``) unless ``self.direct``."""
        p = self.params
        n = x.shape[0]
        k = self._kernels
        flat_x, flat_out = x.reshape(-1), out.reshape(-1)
        if self.depthwise:
            return k.depthwise_blocked, (
                flat_x, self.weight, bias, n, p.c_in // BLOCK, p.h, p.w, p.kh, p.kw, p.sh,
                p.sw, p.pt, p.pl, p.dh, p.dw, p.oh, p.ow, lo, hi, flat_out,
            )  # fmt: skip
        has_res = residual is not None
        res = residual.reshape(-1) if has_res else flat_out
        if self.input_layout == "nchw8c":
            chunk, splits = self._launch(n)
            return k.pointwise_blocked, (
                flat_x, self.weight, bias, res, has_res, n, p.c_in, self.out_blocks,
                p.oh * p.ow, chunk, splits, self.offs, lo, hi, flat_out, self.quad,
            )  # fmt: skip
        if self.direct:
            return k.direct_conv_blocked, self._direct_args(flat_x, flat_out, bias, lo, hi, n,
                                                            res, has_res)  # fmt: skip
        args = self._gemm_args(flat_x, x[0].size, self.offs, flat_out, bias, lo, hi, n, res,
                               has_res)  # fmt: skip
        return k.gemm_conv_blocked, args

    def _direct_args(self, xf, flat_out, bias, lo, hi, n, res, has_res, nchw_out=False) -> tuple:
        """direct_conv_blocked's arguments for the unpadded NCHW ``xf`` (flat)."""
        p = self.params
        rows, splits = self._direct_launch(n)
        return (
            xf, p.c_in * p.h * p.w, p.c_in, p.h, p.w, p.kh, p.kw, p.sh, p.sw, p.pt, p.pl, p.dh,
            p.dw, p.oh, p.ow, self.weight, bias, res, has_res, n, self.out_blocks, rows, splits,
            lo, hi, flat_out, nchw_out,
        )  # fmt: skip

    def _padded(self, x: np.ndarray) -> np.ndarray:
        """An NCHW input zero-padded for the gemm kernel (x itself when unpadded)."""
        p = self.params
        if (self.hp, self.wp) == (p.h, p.w):
            return x
        padded = np.empty((x.shape[0], x.shape[1], 1, 1, self.hp, self.wp), np.float32)
        self._kernels.pad_phase_split(x, p.pt, p.pl, 1, 1, self.hp, self.wp, _ONE_PHASE, padded)
        return padded

    def _gemm(self, xf, img_stride, offs, flat_out, bias, lo, hi, n, res=None, has_res=False,
              nchw_out=False):  # fmt: skip
        """gemm_conv_blocked on a padded NCHW source: images ``img_stride`` apart, this conv's
        input channels at ``offs`` (a group's: shifted to its first channel); ``nchw_out``
        writes (and reads a residual) as NCHW."""
        args = self._gemm_args(xf, img_stride, offs, flat_out, bias, lo, hi, n, res, has_res,
                               nchw_out)  # fmt: skip
        self._kernels.gemm_conv_blocked(*args)

    def _gemm_args(self, xf, img_stride, offs, flat_out, bias, lo, hi, n, res, has_res,
                   nchw_out=False) -> tuple:  # fmt: skip
        p = self.params
        chunk, splits = self._launch(n)
        return (
            xf, img_stride, offs, p.sh * self.wp, p.sw, p.ow, self.weight, bias,
            flat_out if res is None else res, has_res, n, self.out_blocks, p.oh * p.ow, chunk,
            splits, lo, hi, flat_out, 0, nchw_out,
        )  # fmt: skip


class _Kernels:
    """The Numba kernels, imported on first use (``import cnnperf`` compiles nothing)."""

    def __getattr__(self, name: str):
        from ..kernels import blocked, sync_threads
        from ..kernels.implicit_gemm import pad_phase_split

        for kernel in ("pointwise_blocked", "gemm_conv_blocked", "direct_conv_blocked",
                       "depthwise_blocked",
                       "to_blocked", "from_blocked", "global_avg_pool_blocked",
                       "max_pool_blocked"):  # fmt: skip
            setattr(self, kernel, getattr(blocked, kernel))
        self.pad_phase_split = pad_phase_split
        self.sync_threads = sync_threads
        return object.__getattribute__(self, name)


_KERNELS = _Kernels()
_F32 = np.dtype(np.float32)


# ops.conv2d's epilogue codes the blocked kernels apply as a clamp: none, relu, relu6
_CLAMP_CODES = {0: (-np.inf, np.inf), 1: (0.0, np.inf), 2: (0.0, 6.0)}


class BlockedGemmConv(ConvAlgorithm):
    """The "blocked_gemm" convolution algorithm on NCHW arrays: :func:`gemm_conv_blocked
    <cnnperf.kernels.blocked.gemm_conv_blocked>` reads the zero-padded input through a table of
    term offsets. Ungrouped with c_out a multiple of 8, it writes ``out`` directly (each tile
    transposed to NCHW as it is stored; bias, a residual and relu / relu6 fused); otherwise it
    writes a channel-blocked buffer per group, which :func:`from_blocked` turns into the
    group's channels of ``out`` (each group's output channels padded to a multiple of 8 with
    zero weights). float32, any kernel, stride, padding, dilation and groups; other
    activations (and a residual on the grouped path) run as a second pass; float64 runs
    im2col.

    Chosen for plans at batch 1 where its micro-kernel (4 pixels x 24 channels) beats the
    alternatives even with the conversion (``ops.conv._heuristic``).
    """

    name = "blocked_gemm"
    pads_input = True
    fuses_residual = True

    def prepare_weight(self, w, p):
        w = np.ascontiguousarray(w)
        if w.dtype != np.float32:
            return (w, None)
        cog, cig = p.c_out // p.g, p.c_in // p.g
        cog8 = -(-cog // BLOCK) * BLOCK
        groups = []
        for gi in range(p.g):
            wg = w[gi * cog : (gi + 1) * cog]
            if cog8 != cog:  # zero output channels, dropped again by from_blocked
                wg = np.concatenate([wg, np.zeros((cog8 - cog, *w.shape[1:]), w.dtype)])
            conv = BlockedConv2d(
                wg, None, stride=(p.sh, p.sw), padding=((p.pt, p.pb), (p.pl, p.pr)),
                dilation=(p.dh, p.dw), input_shape=(None, cig, p.h, p.w), input_layout="nchw",
            )  # fmt: skip
            groups.append((conv, conv.offs + gi * cig * conv.hp * conv.wp))
        return (w, tuple(groups))

    def run(self, x, w_prep, bias, p, out, epi: Epilogue = NO_EPILOGUE, residual=None):
        if not isinstance(w_prep, tuple):
            w_prep = self.prepare_weight(w_prep, p)
        weight, groups = w_prep
        if x.dtype != np.float32 or groups is None:
            CONV_ALGOS["im2col"].run(x, weight, bias, p, out, epi if residual is None
                                     else NO_EPILOGUE)  # im2col pads as it reads  # fmt: skip
            if residual is not None:
                apply_residual_epilogue(out, residual, epi)
            return
        fused = epi.code in _CLAMP_CODES
        lo, hi = _CLAMP_CODES[epi.code if fused else 0]
        cog = p.c_out // p.g
        first = groups[0][0]
        k = first._kernels
        k.sync_threads()
        if _writes_nchw(p, out) and (residual is None or fused):
            packed = first.bias if bias is None else _packed_bias(first, bias)
            res = None if residual is None else np.ascontiguousarray(residual, np.float32)
            flat_out = out.reshape(-1)
            flat_res = flat_out if res is None else res.reshape(-1)
            xc = np.ascontiguousarray(x)
            if first.direct:  # read unpadded
                k.direct_conv_blocked(*first._direct_args(xc.reshape(-1), flat_out, packed, lo,
                                                          hi, p.n, flat_res, res is not None,
                                                          True))  # fmt: skip
            else:
                xp = first._padded(xc)
                first._gemm(xp.reshape(-1), xp.size // p.n, groups[0][1], flat_out, packed, lo,
                            hi, p.n, flat_res, res is not None, True)  # fmt: skip
            if not fused:
                apply_epilogue(out, None, epi)
            return
        xp = first._padded(np.ascontiguousarray(x)) if p.g == 1 else _pad_groups(x, first, p)
        xf = xp.reshape(-1)
        if residual is not None:  # added after the groups, before the activation
            lo, hi = _CLAMP_CODES[0]
        for gi, (conv, offs) in enumerate(groups):
            packed = conv.bias if bias is None else _packed_bias(conv, bias[gi * cog :][:cog])
            blocked = np.empty(conv.output_shape(p.n), np.float32)
            conv._gemm(xf, xp.size // p.n, offs, blocked.reshape(-1), packed, lo, hi, p.n)
            k.from_blocked(blocked, out[:, gi * cog : (gi + 1) * cog])
        if residual is not None:
            apply_residual_epilogue(out, residual, epi)
        elif not fused:
            apply_epilogue(out, None, epi)

    def bind(self, x, w_prep, bias, p, epi, out, residual=None):
        """:meth:`run` of ``x`` into ``out`` prepared for these very arrays (see
        ``Conv2dPlan.bind``): a call without arguments for the direct NCHW path with a fused
        clamp, None otherwise."""
        weight, groups = w_prep
        if groups is None or not _writes_nchw(p, out) or epi.code not in _CLAMP_CODES:
            return None
        conv, offs = groups[0]
        lo, hi = _CLAMP_CODES[epi.code]
        k = conv._kernels
        packed = conv.bias if bias is None else _packed_bias(conv, bias)
        flat_out = out.reshape(-1)
        res = flat_out if residual is None else residual.reshape(-1)
        sync = k.sync_threads
        if conv.direct:
            kernel = k.direct_conv_blocked
            args = conv._direct_args(x.reshape(-1), flat_out, packed, lo, hi, p.n, res,
                                     residual is not None, True)  # fmt: skip

            def run() -> None:
                sync()
                kernel(*args)

            return run
        img = p.c_in * conv.hp * conv.wp  # floats per (padded) input image
        # the arguments after the source (x itself, or a padded copy made per run)
        rest = conv._gemm_args(x.reshape(-1), img, offs, flat_out, packed, lo, hi, p.n, res,
                               residual is not None, True)[1:]  # fmt: skip
        gemm, padded = k.gemm_conv_blocked, conv._padded

        def run_padded() -> None:
            sync()
            gemm(padded(x).reshape(-1), *rest)

        return run_padded


def _writes_nchw(p: ConvParams, out: np.ndarray) -> bool:
    """Whether "blocked_gemm" writes ``out`` directly (NCHW tiles, no blocked buffer):
    ungrouped, output channels a multiple of 8, a contiguous float32 ``out``, a batch."""
    return (
        p.g == 1
        and p.c_out % BLOCK == 0
        and p.n > 0
        and out.dtype == np.float32
        and out.flags.c_contiguous
    )


def _packed_bias(conv: BlockedConv2d, bias: np.ndarray) -> np.ndarray:
    """One group's bias (cog,) as ``conv``'s kernel reads it (-0.0 past cog: the padding of
    ``conv.bias``, all -0.0 when there is no bias)."""
    packed = np.full(conv.bias.size, -0.0, np.float32)
    packed[: bias.size] = bias
    return packed


def _pad_groups(x: np.ndarray, conv: BlockedConv2d, p: ConvParams) -> np.ndarray:
    """All channels of ``x`` zero-padded as one group's conv reads them."""
    padded = np.empty((p.n, p.c_in, 1, 1, conv.hp, conv.wp), np.float32)
    pp = conv.params
    conv._kernels.pad_phase_split(
        np.ascontiguousarray(x), pp.pt, pp.pl, 1, 1, conv.hp, conv.wp, _ONE_PHASE, padded
    )
    return padded


register_conv_algo(BlockedGemmConv())
