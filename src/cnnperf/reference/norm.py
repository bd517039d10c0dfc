"""Reference batch normalisation and local response normalisation, forward and backward.

float64 loops over channels and elements; x is (N, C, ...) with the channel on dim 1.
"""

from __future__ import annotations

import math

import numpy as np

from ._args import as_f64

__all__ = [
    "batch_norm",
    "batch_norm_backward",
    "local_response_norm",
    "local_response_norm_backward",
]


def _channels_view(x: np.ndarray, what: str, min_ndim: int = 2) -> np.ndarray:
    """x (N, C, ...) as (N, C, L) with L the product of the trailing dims."""
    if x.ndim < min_ndim:
        raise ValueError(f"{what} needs an input of rank >= {min_ndim} (N, C, ...), got {x.shape}")
    return x.reshape(x.shape[0], x.shape[1], math.prod(x.shape[2:]))  # (n, c, l)


def _per_channel(a, c: int, name: str) -> np.ndarray | None:
    if a is None:
        return None
    a = as_f64(a)
    if a.shape != (c,):
        raise ValueError(f"{name} must have shape ({c},), got {a.shape}")
    return a


def _batch_stats(x3: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-channel mean and biased variance over (N, L); and the count M = N * L."""
    n, c, length = x3.shape
    m = n * length
    mean = np.zeros(c, dtype=np.float64)
    var = np.zeros(c, dtype=np.float64)
    for ch in range(c):
        if m == 0:
            mean[ch] = var[ch] = math.nan
            continue
        total = 0.0
        for b in range(n):
            for i in range(length):
                total += x3[b, ch, i]
        mean[ch] = total / m
        sq = 0.0
        for b in range(n):
            for i in range(length):
                sq += (x3[b, ch, i] - mean[ch]) ** 2
        var[ch] = sq / m
    return mean, var, m


def _bn_args(x, running_mean, running_var, weight, bias, training):
    x = as_f64(x)
    x3 = _channels_view(x, "batch_norm")
    c = x3.shape[1]
    rm = _per_channel(running_mean, c, "running_mean")
    rv = _per_channel(running_var, c, "running_var")
    if (rm is None) != (rv is None):
        raise ValueError("running_mean and running_var must both be given or both be None")
    if not training and rm is None:
        raise ValueError("batch_norm in eval mode (training=False) needs running_mean/running_var")
    if training and x3.shape[0] * x3.shape[2] == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got {x.shape}")
    w = _per_channel(weight, c, "weight")
    b = _per_channel(bias, c, "bias")
    return x, x3, rm, rv, w, b


def batch_norm(
    x,
    running_mean=None,
    running_var=None,
    weight=None,
    bias=None,
    training=False,
    momentum=0.1,
    eps=1e-5,
):
    """y = (x - mean) / sqrt(var + eps) * weight + bias per channel (dim 1).

    Eval: running stats. Training: batch mean and biased variance over all dims but 1; with
    running stats given, returns (y, new_running_mean, new_running_var) where new =
    (1 - momentum) * old + momentum * stat and the variance stat is unbiased. An empty batch
    leaves the running stats unchanged (like PyTorch).
    """
    x, x3, rm, rv, w, b = _bn_args(x, running_mean, running_var, weight, bias, training)
    n, c, length = x3.shape
    if training:
        mean, var, m = _batch_stats(x3)
    else:
        mean, var, m = rm, rv, n * length
    y3 = np.empty_like(x3)
    for ch in range(c):
        inv_std = 1.0 / math.sqrt(var[ch] + eps)
        scale = inv_std * (w[ch] if w is not None else 1.0)
        shift = b[ch] if b is not None else 0.0
        for bi in range(n):
            for i in range(length):
                y3[bi, ch, i] = (x3[bi, ch, i] - mean[ch]) * scale + shift
    y = y3.reshape(x.shape)
    if not training or rm is None:
        return y
    if m == 0:
        return y, rm.copy(), rv.copy()
    new_mean = np.empty(c, dtype=np.float64)
    new_var = np.empty(c, dtype=np.float64)
    for ch in range(c):
        unbiased = var[ch] * m / (m - 1)
        new_mean[ch] = (1.0 - momentum) * rm[ch] + momentum * mean[ch]
        new_var[ch] = (1.0 - momentum) * rv[ch] + momentum * unbiased
    return y, new_mean, new_var


def batch_norm_backward(
    grad_out,
    x,
    running_mean=None,
    running_var=None,
    weight=None,
    bias=None,
    training=False,
    eps=1e-5,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(grad_x, grad_weight or None, grad_bias or None) of batch_norm.

    With xhat = (x - mean) * inv_std, g' = grad * weight and M values per channel:
    training: grad_x = inv_std / M * (M * g' - sum(g') - xhat * sum(g' * xhat));
    eval: grad_x = g' * inv_std (running stats are constants). grad_weight = sum(grad * xhat),
    grad_bias = sum(grad), only for a given weight / bias.
    """
    x, x3, rm, rv, w, b = _bn_args(x, running_mean, running_var, weight, bias, training)
    grad_out = as_f64(grad_out)
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out shape {grad_out.shape} != x shape {x.shape}")
    g3 = grad_out.reshape(x3.shape)
    n, c, length = x3.shape
    if training:
        mean, var, m = _batch_stats(x3)
    else:
        mean, var, m = rm, rv, n * length
    grad_x3 = np.zeros_like(x3)
    grad_w = np.zeros(c, dtype=np.float64) if w is not None else None
    grad_b = np.zeros(c, dtype=np.float64) if b is not None else None
    for ch in range(c):
        inv_std = 1.0 / math.sqrt(var[ch] + eps) if m else 0.0
        gamma = w[ch] if w is not None else 1.0
        sum_g = 0.0
        sum_g_xhat = 0.0
        for bi in range(n):
            for i in range(length):
                xhat = (x3[bi, ch, i] - mean[ch]) * inv_std
                sum_g += g3[bi, ch, i]
                sum_g_xhat += g3[bi, ch, i] * xhat
        if grad_w is not None:
            grad_w[ch] = sum_g_xhat
        if grad_b is not None:
            grad_b[ch] = sum_g
        for bi in range(n):
            for i in range(length):
                gp = g3[bi, ch, i] * gamma
                if training:
                    xhat = (x3[bi, ch, i] - mean[ch]) * inv_std
                    grad_x3[bi, ch, i] = (
                        inv_std / m * (m * gp - gamma * sum_g - xhat * gamma * sum_g_xhat)
                    )
                else:
                    grad_x3[bi, ch, i] = gp * inv_std
    return grad_x3.reshape(x.shape), grad_w, grad_b


def _lrn_window(ch: int, c: int, size: int) -> range:
    """Channels summed for channel ch: [ch - size//2, ch + (size-1)//2] clipped to [0, c)."""
    return range(max(0, ch - size // 2), min(c, ch + (size - 1) // 2 + 1))


def _lrn_div(x3: np.ndarray, size: int, alpha: float, k: float) -> np.ndarray:
    """base[n, ch, l] = k + alpha / size * sum of x^2 over the channel window (before ** beta)."""
    n, c, length = x3.shape
    base = np.empty_like(x3)
    for b in range(n):
        for ch in range(c):
            for i in range(length):
                total = 0.0
                for j in _lrn_window(ch, c, size):
                    total += x3[b, j, i] * x3[b, j, i]
                base[b, ch, i] = k + alpha / size * total
    return base


def _lrn_args(x, size):
    x = as_f64(x)
    x3 = _channels_view(x, "local_response_norm", min_ndim=3)
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    return x, x3, size


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0) -> np.ndarray:
    """y = x / (k + alpha/size * sum_{j in window(c)} x_j^2) ** beta, window as in PyTorch."""
    x, x3, size = _lrn_args(x, size)
    base = _lrn_div(x3, size, alpha, k)
    y3 = np.empty_like(x3)
    for idx in np.ndindex(*x3.shape):
        y3[idx] = x3[idx] / base[idx] ** beta
    return y3.reshape(x.shape)


def local_response_norm_backward(grad_out, x, size, alpha=1e-4, beta=0.75, k=1.0) -> np.ndarray:
    """Gradient of local_response_norm w.r.t. x, with B = k + alpha/size * window sum of x^2.

    grad_x[j] = g[j] * B[j]^-beta
                - 2*alpha*beta/size * x[j] * sum_{c: j in window(c)} g[c] * x[c] * B[c]^(-beta-1)
    """
    x, x3, size = _lrn_args(x, size)
    grad_out = as_f64(grad_out)
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out shape {grad_out.shape} != x shape {x.shape}")
    g3 = grad_out.reshape(x3.shape)
    base = _lrn_div(x3, size, alpha, k)
    n, c, length = x3.shape
    grad_x3 = np.zeros_like(x3)
    for b in range(n):
        for ch in range(c):
            for i in range(length):
                grad_x3[b, ch, i] += g3[b, ch, i] * base[b, ch, i] ** -beta
                # y[ch] depends on every x[j] in its window through base[ch]
                coef = g3[b, ch, i] * x3[b, ch, i] * base[b, ch, i] ** (-beta - 1.0)
                for j in _lrn_window(ch, c, size):
                    grad_x3[b, j, i] -= 2.0 * alpha * beta / size * coef * x3[b, j, i]
    return grad_x3.reshape(x.shape)
