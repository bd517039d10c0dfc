"""Differentiable layer functions: convolution, pooling, linear, batch norm, dropout, padding.

Each calls the array-level forward in :mod:`cnnperf.ops` and, in its backward closure, the
matching ``*_backward`` function; nothing here recomputes an operator's math. Arguments have
PyTorch's names and meaning (``torch.nn.functional``). Weights and biases may be Tensors (then
they receive gradients) or plain float arrays (constants).

>>> import numpy as np
>>> from cnnperf.autograd import tensor
>>> x = tensor(np.ones((1, 1, 4, 4), np.float32), requires_grad=True)
>>> w = tensor(np.ones((2, 1, 3, 3), np.float32), requires_grad=True)
>>> conv2d(x, w, padding=1).sum().backward()
>>> x.grad.shape, w.grad.shape
((1, 1, 4, 4), (2, 1, 3, 3))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import ops
from .random_state import default_generator
from .tensor import Tensor, as_tensor, record

__all__ = [
    "conv2d",
    "conv_transpose2d",
    "linear",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "batch_norm",
    "dropout",
    "pad",
]


def _optional(value: Any, name: str, op: str) -> Tensor | None:
    return None if value is None else as_tensor(value, name, op)


def _data(t: Tensor | None) -> np.ndarray | None:
    return None if t is None else t.data


def _needed(*grads_and_tensors: tuple[np.ndarray | None, Tensor | None]) -> tuple:
    """Each gradient where its tensor requires grad, else None (so nothing extra is summed)."""
    return tuple(g if (t is not None and t.requires_grad) else None for g, t in grads_and_tensors)


# ----------------------------------------------------------------------------------------------
# convolution and linear


def conv2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation), as ``torch.nn.functional.conv2d``.

    Args:
        input: (n, c_in, h, w) or (c_in, h, w).
        weight: (c_out, c_in/groups, kh, kw).
        bias: (c_out,) or None.
        stride, padding, dilation, groups: as :func:`cnnperf.ops.conv2d` (padding may be
            "same"/"valid" or asymmetric).

    Shape:
        (n, c_out, oh, ow), ``oh = floor((h + pt + pb - dh*(kh-1) - 1)/sh) + 1``.

    Example:
        >>> x = Tensor(np.ones((1, 3, 5, 5), np.float32))
        >>> conv2d(x, np.ones((2, 3, 3, 3), np.float32), stride=2).shape
        (1, 2, 2, 2)
    """
    op = "conv2d"
    x, w = as_tensor(input, "input", op), as_tensor(weight, "weight", op)
    b = _optional(bias, "bias", op)
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    xd, wd = x.data, w.data
    y = ops.conv2d(xd, wd, _data(b), **args)

    def backward(g):
        # An input that needs no gradient (data into a first layer) skips the transposed
        # convolution: half of the backward pass.
        gx, gw, gb = ops.conv2d_backward(
            g, xd, wd, bias=b is not None, need_input_grad=x.requires_grad, **args
        )
        return _needed((gx, x), (gw, w), (gb, b))

    return record(y, (x, w, b), backward, op)


def conv_transpose2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
) -> Tensor:
    """2-D transposed convolution, as ``torch.nn.functional.conv_transpose2d``.

    Args:
        input: (n, c_in, h, w) or (c_in, h, w).
        weight: (c_in, c_out/groups, kh, kw).
        bias: (c_out,) or None.

    Shape:
        (n, c_out, H, W), ``H = (h-1)*sh - 2*ph + dh*(kh-1) + output_padding_h + 1``.

    Example:
        >>> x = Tensor(np.ones((1, 1, 2, 2), np.float32))
        >>> conv_transpose2d(x, np.ones((1, 3, 2, 2), np.float32), stride=2).shape
        (1, 3, 4, 4)
    """
    op = "conv_transpose2d"
    x, w = as_tensor(input, "input", op), as_tensor(weight, "weight", op)
    b = _optional(bias, "bias", op)
    args = dict(
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
    )
    xd, wd = x.data, w.data
    y = ops.conv_transpose2d(xd, wd, _data(b), **args)

    def backward(g):
        gx, gw, gb = ops.conv_transpose2d_backward(g, xd, wd, bias=b is not None, **args)
        return _needed((gx, x), (gw, w), (gb, b))

    return record(y, (x, w, b), backward, op)


def linear(input: Any, weight: Any, bias: Any = None) -> Tensor:
    """Affine map of the last dimension, ``input @ weight.T + bias``.

    Shape:
        (*, in_features) -> (*, out_features); weight (out_features, in_features).

    Example:
        >>> linear(Tensor(np.ones((2, 3), np.float32)), np.ones((4, 3), np.float32)).shape
        (2, 4)
    """
    op = "linear"
    x, w = as_tensor(input, "input", op), as_tensor(weight, "weight", op)
    b = _optional(bias, "bias", op)
    xd, wd = x.data, w.data
    y = ops.linear(xd, wd, _data(b))

    def backward(g):
        gx, gw, gb = ops.linear_backward(g, xd, wd, bias=b is not None)
        return _needed((gx, x), (gw, w), (gb, b))

    return record(y, (x, w, b), backward, op)


# ----------------------------------------------------------------------------------------------
# pooling


def max_pool2d(
    input: Any,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, np.ndarray]:
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``.

    The argmax indices found by the forward pass are kept for the backward pass; with
    ``return_indices=True`` they are also returned (an int64 ndarray, flat ``ih*w + iw``).

    Shape:
        ``oh = floor_or_ceil((h + 2*ph - dh*(kh-1) - 1) / sh) + 1``; output (n, c, oh, ow).

    Example:
        >>> max_pool2d(Tensor(np.ones((1, 2, 4, 4), np.float32)), 2).shape
        (1, 2, 2, 2)
    """
    op = "max_pool2d"
    x = as_tensor(input, "input", op)
    args = dict(
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
    )
    xd = x.data
    y, idx = ops.max_pool2d(xd, return_indices=True, **args)

    def backward(g):
        return (ops.max_pool2d_backward(g, xd, indices=idx, **args),)

    out = record(y, (x,), backward, op)
    return (out, idx) if return_indices else out


def avg_pool2d(
    input: Any,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``.

    Shape:
        ``oh = floor_or_ceil((h + 2*ph - kh) / sh) + 1``; output (n, c, oh, ow).

    Example:
        >>> avg_pool2d(Tensor(np.ones((1, 1, 4, 4), np.float32)), 2, stride=1).shape
        (1, 1, 3, 3)
    """
    op = "avg_pool2d"
    x = as_tensor(input, "input", op)
    args = dict(
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
        divisor_override=divisor_override,
    )
    xd = x.data
    y = ops.avg_pool2d(xd, **args)
    return record(y, (x,), lambda g: (ops.avg_pool2d_backward(g, xd, **args),), op)


def adaptive_avg_pool2d(input: Any, output_size) -> Tensor:
    """2-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool2d``.

    Shape:
        (n, c, h, w) -> (n, c, oh, ow) with ``(oh, ow) = output_size``.

    Example:
        >>> adaptive_avg_pool2d(Tensor(np.ones((2, 3, 5, 7), np.float32)), 1).shape
        (2, 3, 1, 1)
    """
    op = "adaptive_avg_pool2d"
    x = as_tensor(input, "input", op)
    xd = x.data
    y = ops.adaptive_avg_pool2d(xd, output_size)
    return record(y, (x,), lambda g: (ops.adaptive_avg_pool2d_backward(g, xd, output_size),), op)


# ----------------------------------------------------------------------------------------------
# normalisation, dropout, padding


def _running_stat(value: Any, name: str, op: str) -> np.ndarray | None:
    """A running statistic as the ndarray to read (and, when training, update in place)."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        if value.requires_grad:
            raise ValueError(
                f"{op}: {name} is a statistic, not a parameter: it cannot require grad"
            )
        value = value.data
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{op}: {name} must be an ndarray or a Tensor, got {type(value).__name__}")
    return value


def batch_norm(
    input: Any,
    running_mean: np.ndarray | Tensor | None,
    running_var: np.ndarray | Tensor | None,
    weight: Any = None,
    bias: Any = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalisation over every dimension but the channel (dim 1), as ``F.batch_norm``.

    Running statistics: like PyTorch (and unlike :func:`cnnperf.ops.batch_norm`, which returns
    new arrays), a training call with ``running_mean``/``running_var`` given updates them **in
    place**: ``stat[...] = (1 - momentum) * stat + momentum * batch_stat`` (unbiased batch
    variance). They may be ndarrays or Tensors without grad (their ``.data`` is updated), must
    be writable and have the input's dtype; a module passes its buffers and keeps them. The
    update happens in the forward call, also under ``no_grad``. Evaluation
    (``training=False``) normalises with them and leaves them unchanged.

    Args:
        input: (N, C), (N, C, L) or (N, C, H, W).
        running_mean, running_var: (C,) statistics, or None (then training must be True).
        weight, bias: optional (C,) affine parameters.
        training: normalise with the batch statistics (and update the running ones).
        momentum: weight of the batch statistic in the update.
        eps: added to the variance before the square root.

    Example:
        >>> rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
        >>> x = Tensor(np.arange(8, dtype=np.float32).reshape(4, 2))
        >>> y = batch_norm(x, rm, rv, training=True)
        >>> rm.tolist()  # updated in place: 0.9 * 0 + 0.1 * [3, 4]
        [0.30000001192092896, 0.4000000059604645]
    """
    op = "batch_norm"
    x = as_tensor(input, "input", op)
    w, b = _optional(weight, "weight", op), _optional(bias, "bias", op)
    rm = _running_stat(running_mean, "running_mean", op)
    rv = _running_stat(running_var, "running_var", op)
    update = training and rm is not None and rv is not None
    if update:
        for name, a in (("running_mean", rm), ("running_var", rv)):
            if not a.flags.writeable:
                raise ValueError(f"{op}: {name} must be writable: it is updated in place")
    xd, wd, bd = x.data, _data(w), _data(b)
    res = ops.batch_norm(xd, rm, rv, wd, bd, training, momentum, eps)
    if update:
        y, new_mean, new_var = res
        np.copyto(rm, new_mean)
        np.copyto(rv, new_var)
        saved_mean = saved_var = None  # training's backward uses the batch statistics only
    else:
        y = res
        # evaluation's backward needs the statistics of this call, even if they change later
        saved_mean = None if rm is None else rm.copy()
        saved_var = None if rv is None else rv.copy()

    def backward(g):
        gx, gw, gb = ops.batch_norm_backward(
            g, xd, saved_mean, saved_var, wd, bd, training=training, eps=eps
        )
        return _needed((gx, x), (gw, w), (gb, b))

    return record(y, (x, w, b), backward, op)


def dropout(
    input: Any,
    p: float = 0.5,
    training: bool = True,
    *,
    rng: np.random.Generator | int | None = None,
) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    Args:
        input: any shape.
        p: drop probability in [0, 1].
        training: when False (or ``p == 0``) the input itself is returned.
        rng: a ``numpy.random.Generator`` or an int seed; None uses the global generator
            (see :func:`cnnperf.autograd.manual_seed`).

    Example:
        >>> y = dropout(Tensor(np.ones(6, np.float32)), 0.5, rng=0)
        >>> sorted(set(y.data.tolist())) <= [0.0, 2.0]
        True
    """
    op = "dropout"
    x = as_tensor(input, "input", op)
    prob = float(p)
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")
    if not training or prob == 0.0:
        return x
    gen = default_generator() if rng is None else rng
    y, mask = ops.dropout(x.data, prob, True, rng=gen, return_mask=True)
    return record(y, (x,), lambda g: (ops.dropout_backward(g, mask, prob),), op)


def pad(input: Any, pad: Sequence[int], mode: str = "constant", value: float = 0.0) -> Tensor:
    """Pad the trailing dimensions, as ``torch.nn.functional.pad`` (constant/reflect/replicate).

    Example:
        >>> pad(Tensor(np.ones((1, 2), np.float32)), (1, 2)).shape
        (1, 5)
    """
    op = "pad"
    x = as_tensor(input, "input", op)
    xd = x.data
    y = ops.pad(xd, pad, mode, value)
    return record(y, (x,), lambda g: (ops.pad_backward(g, xd, pad, mode),), op)
