"""Fully connected layer, ``y = x @ weight.T + bias``, forward and backward on BLAS GEMMs."""

from __future__ import annotations

import math

import numpy as np

from ._validate import as_float_array, check_same_dtype

__all__ = ["linear", "linear_backward", "PackedLinear"]


def _check(x, weight, bias, op: str):
    x = as_float_array(x, "x", op)
    weight = as_float_array(weight, "weight", op)
    if bias is not None:
        bias = as_float_array(bias, "bias", op)
    check_same_dtype(op, x=x, weight=weight, bias=bias)
    if weight.ndim != 2:
        raise ValueError(
            f"{op}: weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}"
        )
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{op}: x of shape {tuple(x.shape)} does not match weight of shape "
            f"{tuple(weight.shape)}: expected x's last dimension to be {weight.shape[1]}"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(
            f"{op}: bias of shape {tuple(bias.shape)} does not match weight of shape "
            f"{tuple(weight.shape)}: expected ({weight.shape[0]},)"
        )
    return x, weight, bias


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Affine map of the last dimension, ``x @ weight.T + bias`` (one sgemm/dgemm).

    Args:
        x: float32 or float64 array, features on the last dimension.
        weight: (out_features, in_features), same dtype as ``x``.
        bias: optional (out_features,).

    Shape:
        x (*, in_features) -> (*, out_features); ``*`` may be empty (x 1-D).

    Example:
        >>> linear(np.ones((2, 3)), np.ones((4, 3)), np.zeros(4)).shape
        (2, 4)
    """
    x, weight, bias = _check(x, weight, bias, "linear")
    out_f, in_f = weight.shape
    m = math.prod(x.shape[:-1])
    x2 = x.reshape(m, in_f)  # (m, in_f)
    y = x2 @ weight.T  # (m, out_f); BLAS handles the transposed operand without a copy
    if bias is not None:
        y += bias
    return y.reshape(x.shape[:-1] + (out_f,))


class PackedLinear:
    """:func:`linear` with a float32 weight packed once, for inputs of a few rows (a
    classifier at batch 1-8): ``PackedLinear(weight, bias)(x, out=None)``.

    ``kernels/dense.py`` reads the packed weight once per 4 rows of ``x`` and adds the bias as
    it stores, on cnnperf's threads (no BLAS call). ``x`` is (m, in_features) float32; the
    result is (m, out_features), written into ``out`` when given. Sums run in input order
    per lane, as a GEMM's do: the result matches :func:`linear` to float32 rounding.

    Example:
        >>> lin = PackedLinear(np.ones((3, 4), np.float32), np.arange(3, dtype=np.float32))
        >>> lin(np.ones((2, 4), np.float32)).tolist()
        [[4.0, 5.0, 6.0], [4.0, 5.0, 6.0]]
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None = None) -> None:
        from ..kernels.dense import pack_dense_bias, pack_dense_weight

        op = "PackedLinear"
        weight = as_float_array(weight, "weight", op)
        if weight.dtype != np.float32:
            raise ValueError(f"{op}: the weight must be float32, got {weight.dtype}")
        if weight.ndim != 2 or 0 in weight.shape:
            raise ValueError(f"{op}: weight must be 2-D (out_features, in_features) and not "
                             f"empty, got shape {tuple(weight.shape)}")  # fmt: skip
        if bias is not None:
            bias = as_float_array(bias, "bias", op)
            check_same_dtype(op, weight=weight, bias=bias)
            if bias.shape != (weight.shape[0],):
                raise ValueError(f"{op}: bias must have shape ({weight.shape[0]},), got "
                                 f"{tuple(bias.shape)}")  # fmt: skip
        self.out_features, self.in_features = weight.shape
        self._weight = pack_dense_weight(weight)
        self._bias = pack_dense_bias(bias, self.out_features)

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        from .. import config
        from ..kernels import dense, sync_threads

        if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 2):
            raise ValueError(f"PackedLinear: x must be a 2-D float32 array, got "
                             f"{getattr(x, 'dtype', type(x))} {np.shape(x)}")  # fmt: skip
        m, k = x.shape
        if k != self.in_features:
            raise ValueError(f"PackedLinear: x has {k} features, the weight takes "
                             f"{self.in_features}")  # fmt: skip
        shape = (m, self.out_features)
        if out is None:
            out = np.empty(shape, np.float32)
        elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"PackedLinear: out must be a contiguous float32 {shape}")
        if m == 0:
            return out
        threads = config.get_num_threads()
        sync_threads()
        dense.dense_packed(np.ascontiguousarray(x).reshape(-1), self._weight, self._bias, m, k,
                           self.out_features, dense.dense_tasks(self.out_features, threads),
                           out.reshape(-1))  # fmt: skip
        return out


def linear_backward(
    grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray, *, bias: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of :func:`linear`: ``(grad_x, grad_weight, grad_bias)``.

    Args:
        grad_out: (*, out_features), gradient of the loss with respect to the output.
        x: the forward input, (*, in_features).
        weight: the forward weight, (out_features, in_features).
        bias: whether the forward had a bias; if False ``grad_bias`` is None.

    Shape:
        grad_x like x; grad_weight (out_features, in_features); grad_bias (out_features,).

    Example:
        >>> gx, gw, gb = linear_backward(np.ones((2, 4)), np.ones((2, 3)), np.ones((4, 3)))
        >>> gx.shape, gw.shape, gb.tolist()
        ((2, 3), (4, 3), [2.0, 2.0, 2.0, 2.0])
    """
    op = "linear_backward"
    x, weight, _ = _check(x, weight, None, op)
    g = as_float_array(grad_out, "grad_out", op)
    check_same_dtype(op, grad_out=g, x=x)
    out_f, in_f = weight.shape
    expected = x.shape[:-1] + (out_f,)
    if g.shape != expected:
        raise ValueError(
            f"{op}: grad_out of shape {tuple(g.shape)} does not match the output shape "
            f"{expected} of x {tuple(x.shape)} and weight {tuple(weight.shape)}"
        )
    m = math.prod(x.shape[:-1])
    g2 = g.reshape(m, out_f)  # (m, out_f)
    x2 = x.reshape(m, in_f)  # (m, in_f)
    grad_x = (g2 @ weight).reshape(x.shape)  # (m, in_f)
    grad_w = g2.T @ x2  # (out_f, in_f)
    grad_b = np.sum(g2, axis=0) if bias else None  # (out_f,)
    return grad_x, grad_w, grad_b
