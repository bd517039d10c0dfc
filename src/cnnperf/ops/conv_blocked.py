"""Convolution on the channel-blocked layout NCHW8c (``kernels/blocked.py``), for compiled graphs.

A blocked array holds a logical (n, c, h, w) tensor as (n, c/8, h, w, 8): element
``[b, k, y, x, j]`` is channel ``k*8 + j``. :func:`to_blocked` and :func:`from_blocked` convert;
:class:`BlockedConv2d` runs the two convolutions whose inner loops are 8 channels wide in this
layout (1x1 stride-1 unpadded, and depthwise), reading and writing blocked arrays, with bias,
relu / relu6 and (1x1) a residual fused. ``compile.layout`` chains them through a model.

Example:
    >>> x = np.random.default_rng(0).random((1, 16, 5, 5), dtype=np.float32)
    >>> w = np.full((8, 16, 1, 1), 0.5, np.float32)
    >>> y = from_blocked(BlockedConv2d(w, None, input_shape=x.shape)(to_blocked(x)))
    >>> bool(np.allclose(y, conv2d(x, w), rtol=1e-5))
    True
"""

from __future__ import annotations

import numpy as np

from .. import config
from ..shapes import ConvParams
from .conv import conv2d as conv2d  # for the example
from .conv import conv_params

__all__ = ["BLOCK", "BlockedConv2d", "to_blocked", "from_blocked", "blocked_shape"]

BLOCK = 8
# activation -> the clamp the kernels fuse
_CLAMPS = {None: (-np.inf, np.inf), "relu": (0.0, np.inf), "relu6": (0.0, 6.0)}
# Bytes of input one pointwise task sweeps for every group of output blocks (L2 is 512 KiB).
_PW_CHUNK_BYTES = 64 << 10


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
    from ..kernels import sync_threads
    from ..kernels.blocked import to_blocked as kernel

    sync_threads()
    kernel(np.ascontiguousarray(x), out)
    return out


def from_blocked(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The blocked (n, c/8, h, w, 8) array -> (n, c, h, w)."""
    _check_float32("from_blocked", x, 5)
    if x.shape[4] != BLOCK:
        raise ValueError(f"from_blocked: the last dimension must be {BLOCK}, got {x.shape}")
    n, cb, h, w, _ = x.shape
    shape = (n, cb * BLOCK, h, w)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"from_blocked: out must be a contiguous float32 {shape}, got {out.shape}")
    from ..kernels import sync_threads
    from ..kernels.blocked import from_blocked as kernel

    sync_threads()
    kernel(np.ascontiguousarray(x), out)
    return out


class BlockedConv2d:
    """A prepared convolution on blocked arrays: ``conv(x, residual=None, out=None)``.

    Covers (:meth:`supports`) float32 convolutions with channels in multiples of 8 that are
    either 1x1, stride 1, unpadded, ungrouped (a residual may be fused), or depthwise
    (groups == c_in == c_out, any kernel, stride, padding, dilation; no residual), with the
    activations None, "relu" and "relu6". Same arguments as ``ops.plan_conv2d``;
    ``input_shape`` is the logical (n, c, h, w) shape (the batch may differ per call).
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
    ) -> None:
        from ..kernels import blocked as k

        weight = np.asarray(weight)
        n = 1 if input_shape[0] is None else input_shape[0]
        p = conv_params((n, *input_shape[1:]), weight.shape, stride, padding, dilation, groups)
        reason = self.unsupported(p, weight.dtype, activation)
        if reason:
            raise ValueError(f"BlockedConv2d: {reason}")
        self.params: ConvParams = p
        self.activation = activation
        self.lo, self.hi = _CLAMPS[activation]
        self.depthwise = p.g > 1
        self.out_blocks = p.c_out // BLOCK
        if self.depthwise:
            self.weight = k.pack_depthwise_weight(weight)
            self.bias = k.pack_bias(bias, p.c_out, self.out_blocks)
        else:
            self.weight = k.pack_pointwise_weight(weight)
            self.bias = k.pack_bias(bias, p.c_out, self.weight.size // (BLOCK * p.c_in))

    @staticmethod
    def unsupported(p: ConvParams, dtype, activation, residual: bool = False) -> str | None:
        """Why :class:`BlockedConv2d` cannot run ``p``, or None if it can."""
        if np.dtype(dtype) != np.float32:
            return f"needs a float32 weight, got {np.dtype(dtype)}"
        if activation not in _CLAMPS:
            return f"fuses the activations None, 'relu' and 'relu6', got {activation!r}"
        if p.c_in % BLOCK or p.c_out % BLOCK:
            return f"needs channels in multiples of {BLOCK}, got c_in={p.c_in}, c_out={p.c_out}"
        pointwise = (p.kh, p.kw, p.sh, p.sw, p.pt, p.pb, p.pl, p.pr) == (1, 1, 1, 1, 0, 0, 0, 0)
        if p.g == 1 and pointwise:
            return None
        if p.g == p.c_in == p.c_out:
            return "fuses a residual into 1x1 convolutions only" if residual else None
        return "runs 1x1 stride-1 unpadded ungrouped and depthwise convolutions only"

    @classmethod
    def supports(cls, p: ConvParams, dtype=np.float32, activation=None, residual=False) -> bool:
        return cls.unsupported(p, dtype, activation, residual) is None

    def output_shape(self, n: int) -> tuple:
        p = self.params
        return (n, self.out_blocks, p.oh, p.ow, BLOCK)

    def __call__(
        self, x: np.ndarray, residual: np.ndarray | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        from ..kernels import blocked as k
        from ..kernels import sync_threads

        p = self.params
        _check_float32("BlockedConv2d", x, 5)
        if x.shape[1:] != (p.c_in // BLOCK, p.h, p.w, BLOCK):
            raise ValueError(
                f"BlockedConv2d: expected a blocked input (n, {p.c_in // BLOCK}, {p.h}, {p.w}, "
                f"{BLOCK}), got {x.shape}"
            )
        n = x.shape[0]
        shape = self.output_shape(n)
        if out is None:
            out = np.empty(shape, np.float32)
        elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"BlockedConv2d: out must be a contiguous float32 {shape}")
        if residual is not None:
            if self.depthwise:
                raise ValueError("BlockedConv2d: a residual is fused into 1x1 convolutions only")
            _check_float32("BlockedConv2d residual", residual, 5)
            if residual.shape != shape:
                raise ValueError(f"BlockedConv2d: residual must have shape {shape}, got "
                                 f"{residual.shape}")  # fmt: skip
        x = np.ascontiguousarray(x)
        sync_threads()
        if self.depthwise:
            k.depthwise_blocked(
                x.reshape(-1), self.weight, self.bias, n, p.c_in // BLOCK, p.h, p.w, p.kh, p.kw,
                p.sh, p.sw, p.pt, p.pl, p.dh, p.dw, p.oh, p.ow, self.lo, self.hi,
                out.reshape(-1),
            )  # fmt: skip
            return out
        pixels = p.h * p.w
        tiles = -(-pixels // k.PW_PIXELS)
        chunk = max(1, _PW_CHUNK_BYTES // (k.PW_PIXELS * p.c_in * 4))
        want = 4 * config.get_num_threads()  # tasks, for the threads to share evenly
        chunk = min(chunk, max(1, -(-tiles * n // want)))
        chunks = -(-tiles // chunk)
        groups = -(-self.out_blocks // k.PW_BLOCKS)
        splits = min(groups, max(1, -(-want // (n * chunks))))
        flat_out = out.reshape(-1)
        res = flat_out if residual is None else np.ascontiguousarray(residual).reshape(-1)
        k.pointwise_blocked(
            x.reshape(-1), self.weight, self.bias, res, residual is not None, n, p.c_in,
            self.out_blocks, pixels, chunk, splits, self.lo, self.hi, flat_out,
        )  # fmt: skip
        return out
