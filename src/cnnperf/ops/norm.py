"""Normalisation and regularisation layers: batch norm, dropout, local response norm.

PyTorch's semantics throughout, with one deliberate difference: nothing is updated in place.
Where PyTorch's ``batch_norm`` mutates ``running_mean``/``running_var``, ours returns the new
running statistics alongside the output.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._validate import as_float_array, check_same_dtype

__all__ = [
    "batch_norm",
    "batch_norm_backward",
    "dropout",
    "dropout_backward",
    "local_response_norm",
    "local_response_norm_backward",
]


# ----------------------------------------------------------------------------------------------
# Batch normalisation
# ----------------------------------------------------------------------------------------------


def _bn_args(op, x, running_mean, running_var, weight, bias, training, grad_out=None):
    """Check batch-norm arguments; return x as (n, c, l) and the (c,) arrays (or None)."""
    x = as_float_array(x, "x", op)
    if x.ndim < 2:
        raise ValueError(
            f"{op}: expected x of shape (N, C), (N, C, L) or (N, C, H, W), got shape "
            f"{tuple(x.shape)}"
        )
    c = x.shape[1]
    named = {"running_mean": running_mean, "running_var": running_var, "weight": weight}
    named["bias"] = bias
    arrays = {k: (None if v is None else as_float_array(v, k, op)) for k, v in named.items()}
    if grad_out is not None:
        grad_out = as_float_array(grad_out, "grad_out", op)
    check_same_dtype(op, x=x, grad_out=grad_out, **arrays)
    for k, v in arrays.items():
        if v is not None and v.shape != (c,):
            raise ValueError(
                f"{op}: {k} of shape {tuple(v.shape)} does not match the {c} channels of x "
                f"(shape {tuple(x.shape)}); expected ({c},)"
            )
    if (arrays["running_mean"] is None) != (arrays["running_var"] is None):
        raise ValueError(
            f"{op}: running_mean and running_var must either both be None or neither be None"
        )
    if not training and arrays["running_mean"] is None:
        raise ValueError(
            f"{op}: running_mean and running_var are required when training=False "
            "(evaluation normalises with the running statistics)"
        )
    if grad_out is not None and grad_out.shape != x.shape:
        raise ValueError(
            f"{op}: grad_out of shape {tuple(grad_out.shape)} does not match x of shape "
            f"{tuple(x.shape)}"
        )
    n, l = x.shape[0], math.prod(x.shape[2:])
    if training and n * l == 1:
        raise ValueError(
            f"{op}: Expected more than 1 value per channel when training, got input of shape "
            f"{tuple(x.shape)}"
        )
    x3 = x.reshape(n, c, l)  # (n, c, l)
    return x3, grad_out, arrays


def _batch_stats(x3: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel mean and biased variance (two-pass, for accuracy); also x3 - mean."""
    mean = np.mean(x3, axis=(0, 2))  # (c,)
    xc = x3 - mean[:, None]  # (n, c, l)
    var = np.mean(np.square(xc), axis=(0, 2))  # (c,)
    return mean, var, xc


def batch_norm(
    x: np.ndarray,
    running_mean: np.ndarray | None = None,
    running_var: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch normalisation over every dimension but the channel (dim 1).

    Evaluation (``training=False``) normalises with the running statistics, which are then
    required. Training normalises with the batch mean and biased variance; when running
    statistics are given it also returns their updates ``(1 - momentum) * old + momentum *
    batch_stat``, with the unbiased (n / (n - 1)) batch variance, as PyTorch does in place.

    Args:
        x: float32 or float64 input.
        running_mean, running_var: (C,) running statistics, never modified.
        weight, bias: optional (C,) affine parameters (gamma, beta).
        training: use batch statistics (True) or running statistics (False).
        momentum: weight of the batch statistic in the running-statistic update.
        eps: added to the variance before the square root.

    Shape:
        x (N, C), (N, C, L) or (N, C, H, W); y like x. Returns ``y``, or
        ``(y, new_running_mean, new_running_var)`` when training with running statistics.

    Example:
        >>> y = batch_norm(np.array([[1.0], [3.0]]), training=True)
        >>> np.round(y, 3).tolist()
        [[-1.0], [1.0]]
    """
    op = "batch_norm"
    x3, _, a = _bn_args(op, x, running_mean, running_var, weight, bias, training)
    w, b, rm, rv = a["weight"], a["bias"], a["running_mean"], a["running_var"]
    shape = np.shape(x)
    if not training:
        invstd = 1.0 / np.sqrt(rv + eps)  # (c,)
        scale = invstd if w is None else w * invstd
        shift = -rm * scale if b is None else b - rm * scale
        y = x3 * scale[:, None]  # (n, c, l)
        y += shift[:, None]
        return y.reshape(shape)
    if x3.size == 0:  # an empty batch: nothing to normalise, nothing learned
        y = x3.reshape(shape).copy()
        return y if rm is None else (y, rm.copy(), rv.copy())
    mean, var, y = _batch_stats(x3)
    invstd = 1.0 / np.sqrt(var + eps)
    y *= (invstd if w is None else w * invstd)[:, None]
    if b is not None:
        y += b[:, None]
    y = y.reshape(shape)
    if rm is None:
        return y
    if momentum is None:
        raise ValueError(
            f"{op}: momentum=None (a cumulative moving average) is not supported; pass a float"
        )
    m = x3.shape[0] * x3.shape[2]
    new_mean = (1 - momentum) * rm + momentum * mean
    new_var = (1 - momentum) * rv + momentum * (var * (m / (m - 1)))
    return y, new_mean.astype(rm.dtype, copy=False), new_var.astype(rv.dtype, copy=False)


def batch_norm_backward(
    grad_out: np.ndarray,
    x: np.ndarray,
    running_mean: np.ndarray | None = None,
    running_var: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    training: bool = False,
    eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of :func:`batch_norm`: ``(grad_x, grad_weight, grad_bias)``.

    ``grad_weight`` / ``grad_bias`` are None when ``weight`` / ``bias`` is None. In training
    mode the gradient flows through the batch statistics; running statistics, if given, are
    only checked.

    Args:
        grad_out: gradient with respect to y, shaped like x.
        x, running_mean, running_var, weight, bias, training, eps: as in the forward.

    Shape:
        grad_x like x; grad_weight and grad_bias (C,).

    Example:
        >>> gx, gw, gb = batch_norm_backward(np.ones((2, 1)), np.array([[1.0], [3.0]]),
        ...                                  weight=np.ones(1), training=True)
        >>> gx.tolist(), gw.tolist(), gb is None
        ([[0.0], [0.0]], [0.0], True)
    """
    op = "batch_norm_backward"
    x3, g, a = _bn_args(op, x, running_mean, running_var, weight, bias, training, grad_out)
    w, b = a["weight"], a["bias"]
    shape = np.shape(x)
    g3 = g.reshape(x3.shape)  # (n, c, l)
    if training:
        if x3.size == 0:
            zeros = np.zeros(x3.shape[1], x3.dtype)
            return (
                np.zeros(shape, x3.dtype),
                None if w is None else zeros,
                (None if b is None else zeros.copy()),
            )
        _, var, xhat = _batch_stats(x3)
    else:
        var = a["running_var"]
        xhat = x3 - a["running_mean"][:, None]  # (n, c, l)
    invstd = 1.0 / np.sqrt(var + eps)  # (c,)
    xhat *= invstd[:, None]
    sum_g = np.sum(g3, axis=(0, 2))  # (c,)
    sum_gx = np.sum(g3 * xhat, axis=(0, 2))  # (c,)
    scale = invstd if w is None else w * invstd
    if training:
        m = x3.shape[0] * x3.shape[2]
        # d/dx of (x - mean) / std through the batch mean and variance.
        xhat *= -(sum_gx / m)[:, None]
        xhat += g3
        xhat -= (sum_g / m)[:, None]
        grad_x = xhat
        grad_x *= scale[:, None]
    else:
        grad_x = g3 * scale[:, None]
    grad_w = None if w is None else sum_gx
    grad_b = None if b is None else sum_g
    return grad_x.reshape(shape), grad_w, grad_b


# ----------------------------------------------------------------------------------------------
# Dropout
# ----------------------------------------------------------------------------------------------


def _check_p(p, op: str) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")
    return p


def _generator(rng, op: str) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ValueError(
        f"{op}: rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}"
    )


def _scaled(a: np.ndarray, mask: np.ndarray, p: float) -> np.ndarray:
    # torch's form: a * (mask / (1 - p)); a dropped NaN or inf stays NaN (NaN * 0).
    noise = mask.astype(a.dtype)
    if p < 1.0:
        noise /= 1.0 - p
    with np.errstate(invalid="ignore"):
        return a * noise


def dropout(
    x: np.ndarray,
    p: float = 0.5,
    training: bool = True,
    *,
    rng: np.random.Generator | int | None = None,
    return_mask: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Zero each element with probability ``p`` and scale the survivors by ``1 / (1 - p)``.

    Args:
        x: float32 or float64 input.
        p: drop probability in [0, 1]; ``p == 1`` gives zeros (NaN stays NaN, as in torch).
        training: when False (or ``p == 0``) the result is a copy of x.
        rng: a ``numpy.random.Generator``, an int seed, or None for fresh entropy.
        return_mask: also return the boolean keep-mask (needed by :func:`dropout_backward`).

    Shape:
        Any; y like x; mask (bool) like x.

    Example:
        >>> y, mask = dropout(np.ones(4), 0.5, rng=0, return_mask=True)
        >>> sorted(set(y.tolist())) <= [0.0, 2.0]
        True
    """
    op = "dropout"
    x = as_float_array(x, "x", op)
    p = _check_p(p, op)
    gen = _generator(rng, op)
    if not training or p == 0.0:
        y, mask = x.copy(), np.ones(x.shape, dtype=bool)
    else:
        if p == 1.0:
            mask = np.zeros(x.shape, dtype=bool)
        else:
            # A float32 uniform in [0, 1) is half the memory traffic of float64; its 2**-24
            # granularity is far below any meaningful drop probability.
            mask = gen.random(x.shape, dtype=np.float32) >= p  # keep with prob 1 - p
        y = _scaled(x, mask, p)
    return (y, mask) if return_mask else y


def dropout_backward(grad_out: np.ndarray, mask: np.ndarray, p: float = 0.5) -> np.ndarray:
    """Gradient of :func:`dropout` given its keep-mask: ``grad_out * mask / (1 - p)``.

    Args:
        grad_out: gradient with respect to y.
        mask: the boolean keep-mask :func:`dropout` returned (all True for a no-op dropout).
        p: the forward's drop probability.

    Shape:
        grad_out and mask of one shape; the result like grad_out.

    Example:
        >>> dropout_backward(np.ones(2), np.array([True, False]), 0.5).tolist()
        [2.0, 0.0]
    """
    op = "dropout_backward"
    g = as_float_array(grad_out, "grad_out", op)
    p = _check_p(p, op)
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise ValueError(f"{op}: mask must be a bool array, got dtype {mask.dtype}")
    if mask.shape != g.shape:
        raise ValueError(
            f"{op}: mask of shape {tuple(mask.shape)} does not match grad_out of shape "
            f"{tuple(g.shape)}"
        )
    return _scaled(g, mask, p)


# ----------------------------------------------------------------------------------------------
# Local response normalisation
# ----------------------------------------------------------------------------------------------


def _lrn_args(op: str, x, size, grad_out=None):
    x = as_float_array(x, "x", op)
    if grad_out is not None:
        grad_out = as_float_array(grad_out, "grad_out", op)
        check_same_dtype(op, grad_out=grad_out, x=x)
        if grad_out.shape != x.shape:
            raise ValueError(
                f"{op}: grad_out of shape {tuple(grad_out.shape)} does not match x of shape "
                f"{tuple(x.shape)}"
            )
    if x.ndim < 3:
        raise ValueError(
            f"{op}: expected x to be 3-D or higher (N, C, *), got {x.ndim}-D with shape "
            f"{tuple(x.shape)}"
        )
    if not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1:
        raise ValueError(f"{op}: size must be a positive integer, got {size!r}")
    n, c = x.shape[:2]
    return x.reshape(n, c, math.prod(x.shape[2:])), grad_out  # (n, c, l)


def _channel_window_sum(a: np.ndarray, before: int, after: int) -> np.ndarray:
    """out[:, ch] = sum of a[:, j] for j in [ch - before, ch + after], clipped to valid channels.

    Summed offset by offset (size is small: 5 in AlexNet) rather than by a running cumulative
    sum, which would cancel catastrophically in float32.
    """
    c = a.shape[1]
    out = a.copy()
    for d in range(1, min(after, c - 1) + 1):
        out[:, : c - d] += a[:, d:]
    for d in range(1, min(before, c - 1) + 1):
        out[:, d:] += a[:, : c - d]
    return out


def local_response_norm(
    x: np.ndarray, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> np.ndarray:
    """Local response normalisation across channels (Krizhevsky et al., AlexNet, 2012).

    ``y[c] = x[c] / (k + alpha / size * sum(x[j]**2))**beta`` with j over channels
    ``[c - size // 2, c + (size - 1) // 2]`` clipped to the valid ones; the sum divided by
    ``size`` even at the edges, as in PyTorch.

    Args:
        x: float32 or float64 input, channels on dim 1.
        size: number of neighbouring channels in the window.
        alpha, beta, k: the scale, exponent and additive constant.

    Shape:
        x (N, C, *) with at least 3 dimensions; y like x.

    Example:
        >>> local_response_norm(np.ones((1, 2, 1)), 2, alpha=1.0, beta=1.0, k=1.0).ravel().tolist()
        [0.6666666666666666, 0.5]
    """
    op = "local_response_norm"
    x3, _ = _lrn_args(op, x, size)
    if x3.size == 0:
        return x3.reshape(np.shape(x)).copy()
    s = _channel_window_sum(np.square(x3), size // 2, (size - 1) // 2)  # (n, c, l)
    with np.errstate(divide="ignore", invalid="ignore"):  # k = 0 with an all-zero window
        div = (s * (alpha / size) + k) ** beta
        return (x3 / div).reshape(np.shape(x))


def local_response_norm_backward(
    grad_out: np.ndarray,
    x: np.ndarray,
    size: int,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 1.0,
) -> np.ndarray:
    """Gradient of :func:`local_response_norm` with respect to x.

    With ``d[c] = k + alpha / size * s[c]``: ``grad_x[j] = g[j] d[j]**-beta - 2 alpha beta / size
    * x[j] * sum(g[c] x[c] d[c]**(-beta - 1))`` over the channels c whose window contains j.

    Shape:
        grad_out and x (N, C, *); grad_x like x.

    Example:
        >>> g = local_response_norm_backward(np.ones((1, 1, 1)), np.zeros((1, 1, 1)), 1)
        >>> g.ravel().tolist()
        [1.0]
    """
    op = "local_response_norm_backward"
    x3, g = _lrn_args(op, x, size, grad_out)
    if x3.size == 0:
        return np.zeros(np.shape(x), x3.dtype)
    g3 = g.reshape(x3.shape)  # (n, c, l)
    before, after = size // 2, (size - 1) // 2
    s = _channel_window_sum(np.square(x3), before, after)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = s * (alpha / size) + k
        d_pow = d ** (-beta)  # d**-beta
        q = g3 * x3 * (d_pow / d)  # g x d**(-beta - 1)
        # j lies in the window of c exactly when c is in [j - after, j + before]: the
        # transposed window.
        t = _channel_window_sum(q, after, before)
        grad = g3 * d_pow
        grad -= (2 * alpha * beta / size) * x3 * t
    return grad.reshape(np.shape(x))
