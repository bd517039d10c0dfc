"""Reference cross-entropy and mean-squared-error losses, forward and backward (float64 loops).

cross_entropy follows torch.nn.functional.cross_entropy exactly:

- logits (N, C), (N, C, d1, ...) or unbatched (C,); the class axis is dim 1 (dim 0 unbatched).
- Integer targets are class indices of shape (N, d1, ...). Per sample, with log-probabilities
  lp = log_softmax(logits) and class weights w (1 without ``weight``):
  loss_i = (1 - eps) * (-w[t_i] * lp[t_i]) + eps / C * sum_c(-w[c] * lp[c]).
  Samples whose target equals ``ignore_index`` contribute 0. "mean" divides the sum by
  sum_i w[t_i] over non-ignored samples (the count without weights); 0/0 gives NaN.
- Float targets are class probabilities with the logits' shape (``ignore_index`` unused):
  t' = t * (1 - eps) + eps / C; loss_i = -sum_c w[c] * t'[c] * lp[c]; "mean" divides by the
  number of samples N * d1 * ... (NOT by a weight sum); NaN when there are none.
"""

from __future__ import annotations

import math

import numpy as np

from ._args import as_f64, check_reduction

__all__ = ["cross_entropy", "cross_entropy_backward", "mse_loss", "mse_loss_backward"]


def _ce_layout(logits, target, weight, label_smoothing):
    """Logits as rows (M, C), targets as (M,) ints or (M, C) probabilities, plus the layout."""
    logits = as_f64(logits)
    if logits.ndim < 1:
        raise ValueError("cross_entropy needs logits of rank >= 1")
    target = np.asarray(target)
    unbatched = logits.ndim == 1
    if unbatched:
        logits = logits[None]
        target = target[None]
    n, c = logits.shape[:2]
    sample_shape = (n,) + logits.shape[2:]
    m = math.prod(sample_shape)
    rows = np.moveaxis(logits, 1, -1).reshape(m, c)  # (n*d1*..., c)
    if np.issubdtype(target.dtype, np.integer):
        if target.shape != sample_shape:
            raise ValueError(f"class-index target shape {target.shape} != {sample_shape}")
        tgt = target.reshape(m).astype(np.int64)  # (m,)
        probs = False
    elif np.issubdtype(target.dtype, np.floating):
        if target.shape != logits.shape:
            raise ValueError(f"probability target shape {target.shape} != logits {logits.shape}")
        tgt = np.moveaxis(as_f64(target), 1, -1).reshape(m, c)  # (m, c)
        probs = True
    else:
        raise ValueError(f"target must hold integer class indices or floats, got {target.dtype}")
    w = np.ones(c) if weight is None else as_f64(weight)
    if w.shape != (c,):
        raise ValueError(f"weight must have shape ({c},), got {w.shape}")
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {eps}")
    return rows, tgt, probs, w, eps, (unbatched, sample_shape, logits.shape)


def _log_softmax_row(row) -> list[float]:
    m = -math.inf
    for v in row:
        if math.isnan(v):
            return [math.nan] * len(row)
        m = max(m, v)
    total = 0.0
    for v in row:
        total += math.exp(v - m)
    lse = m + math.log(total)
    return [v - lse for v in row]


def _sample_losses(rows, tgt, probs, w, eps, ignore_index):
    """Per-sample losses (M,) and the "mean" denominator."""
    m, c = rows.shape
    losses = np.zeros(m, dtype=np.float64)
    denom = 0.0 if not probs else float(m)
    for i in range(m):
        lp = _log_softmax_row(rows[i])
        if probs:
            total = 0.0
            for k in range(c):
                total -= w[k] * (tgt[i, k] * (1.0 - eps) + eps / c) * lp[k]
            losses[i] = total
            continue
        t = int(tgt[i])
        if t == ignore_index:
            continue
        if not 0 <= t < c:
            raise ValueError(f"target {t} is out of range for {c} classes")
        smooth = 0.0
        for k in range(c):
            smooth -= w[k] * lp[k]
        losses[i] = (1.0 - eps) * (-w[t] * lp[t]) + eps / c * smooth
        denom += w[t]
    return losses, denom


def cross_entropy(
    logits,
    target,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
):
    """Cross-entropy of logits against class indices or probabilities (see the module doc)."""
    reduction = check_reduction(reduction)
    rows, tgt, probs, w, eps, (unbatched, sample_shape, _) = _ce_layout(
        logits, target, weight, label_smoothing
    )
    losses, denom = _sample_losses(rows, tgt, probs, w, eps, ignore_index)
    if reduction == "none":
        out = losses.reshape(sample_shape)
        return out[0] if unbatched else out
    total = 0.0
    for v in losses:
        total += v
    if reduction == "sum":
        return np.float64(total)
    return np.float64(math.nan if denom == 0 else total / denom)


def cross_entropy_backward(
    grad_out,
    logits,
    target,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
) -> np.ndarray:
    """grad_logits of cross_entropy; grad_out is a scalar ("mean"/"sum") or per-sample ("none").

    Per sample with p = softmax(logits) and coefficient a (grad_out[i], grad_out, or
    grad_out / denominator): indices: a * ((1-eps) * w[t] * (p - onehot(t)) + eps/C *
    (sum(w) * p - w)); probabilities: a * (sum_c(w[c] * t'[c]) * p - w * t').
    """
    reduction = check_reduction(reduction)
    rows, tgt, probs, w, eps, (unbatched, sample_shape, shape) = _ce_layout(
        logits, target, weight, label_smoothing
    )
    m, c = rows.shape
    grad_out = as_f64(grad_out)
    if reduction == "none":
        g = grad_out[None] if unbatched else grad_out
        if g.shape != sample_shape:
            raise ValueError(f"grad_out must have shape {sample_shape}, got {grad_out.shape}")
        coef = g.reshape(m)
    else:
        if grad_out.size != 1:
            raise ValueError(f"grad_out must be a scalar for reduction={reduction!r}")
        scale = float(grad_out.reshape(()))
        if reduction == "mean":
            _, denom = _sample_losses(rows, tgt, probs, w, eps, ignore_index)
            scale = scale / denom if denom != 0 else math.nan
        coef = np.full(m, scale)
    w_sum = 0.0
    for k in range(c):
        w_sum += w[k]
    grad = np.zeros((m, c), dtype=np.float64)
    for i in range(m):
        lp = _log_softmax_row(rows[i])
        p = [math.exp(v) for v in lp]
        if probs:
            ts = [tgt[i, k] * (1.0 - eps) + eps / c for k in range(c)]
            wt = 0.0
            for k in range(c):
                wt += w[k] * ts[k]
            for k in range(c):
                grad[i, k] = coef[i] * (wt * p[k] - w[k] * ts[k])
            continue
        t = int(tgt[i])
        if t == ignore_index:
            continue  # ignored samples get exactly zero gradient
        if not 0 <= t < c:
            raise ValueError(f"target {t} is out of range for {c} classes")
        for k in range(c):
            hard = w[t] * (p[k] - (1.0 if k == t else 0.0))
            smooth = w_sum * p[k] - w[k]
            grad[i, k] = coef[i] * ((1.0 - eps) * hard + eps / c * smooth)
    moved = (shape[0],) + shape[2:] + (c,)
    out = np.moveaxis(grad.reshape(moved), -1, 1)  # (n, c, d1, ...)
    return np.ascontiguousarray(out[0] if unbatched else out)


def _mse_check(input, target):
    input = as_f64(input)
    target = as_f64(target)
    if input.shape != target.shape:
        raise ValueError(f"input shape {input.shape} != target shape {target.shape}")
    return input, target


def mse_loss(input, target, reduction="mean"):
    """(input - target)^2, averaged ("mean", NaN when empty), summed or kept ("none")."""
    reduction = check_reduction(reduction)
    input, target = _mse_check(input, target)
    sq = np.empty(input.shape, dtype=np.float64)
    flat = sq.reshape(-1)
    for i, (a, b) in enumerate(zip(input.flat, target.flat, strict=True)):
        flat[i] = (a - b) * (a - b)
    if reduction == "none":
        return sq
    total = 0.0
    for v in flat:
        total += v
    if reduction == "sum":
        return np.float64(total)
    return np.float64(total / sq.size if sq.size else math.nan)


def mse_loss_backward(grad_out, input, target, reduction="mean") -> np.ndarray:
    """grad_input = 2 * (input - target) * grad_out (/ numel for "mean")."""
    reduction = check_reduction(reduction)
    input, target = _mse_check(input, target)
    grad_out = as_f64(grad_out)
    if reduction == "none":
        if grad_out.shape != input.shape:
            raise ValueError(f"grad_out shape {grad_out.shape} != input shape {input.shape}")
        coef = grad_out
    else:
        if grad_out.size != 1:
            raise ValueError(f"grad_out must be a scalar for reduction={reduction!r}")
        scale = float(grad_out.reshape(()))
        if reduction == "mean" and input.size:
            scale /= input.size
        coef = np.broadcast_to(scale, input.shape)
    out = np.empty(input.shape, dtype=np.float64)
    flat = out.reshape(-1)
    for i, (a, b, g) in enumerate(zip(input.flat, target.flat, coef.flat, strict=True)):
        flat[i] = 2.0 * (a - b) * g
    return out
