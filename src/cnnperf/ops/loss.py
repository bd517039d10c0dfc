"""Loss functions with PyTorch's semantics: cross-entropy (class indices or probabilities) and MSE.

For ``reduction="mean"`` or ``"sum"`` a loss is a 0-d array of the input's dtype; for ``"none"``
it has one value per sample (and per spatial position). Each backward takes that loss's upstream
gradient: a scalar (float or 0-d array) for mean/sum, an array shaped like the loss for none.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._validate import as_float_array, check_reduction, check_same_dtype

__all__ = ["cross_entropy", "cross_entropy_backward", "mse_loss", "mse_loss_backward"]


# ----------------------------------------------------------------------------------------------
# Cross-entropy
# ----------------------------------------------------------------------------------------------


class _CE:
    """Checked cross-entropy arguments, shared by forward and backward."""

    def __init__(self, op, logits, target, weight, ignore_index, reduction, label_smoothing):
        check_reduction(reduction, op)
        logits = as_float_array(logits, "logits", op)
        if logits.ndim == 0:
            raise ValueError(f"{op}: logits must have a class dimension, got a 0-d array")
        axis = 0 if logits.ndim == 1 else 1  # unbatched (C,) like torch
        c = logits.shape[axis]
        target = np.asarray(target)
        if weight is not None:
            weight = as_float_array(weight, "weight", op)
            if weight.shape != (c,):
                raise ValueError(
                    f"{op}: weight of shape {tuple(weight.shape)} does not match the {c} "
                    f"classes of logits (shape {tuple(logits.shape)}); expected ({c},)"
                )
        ls = float(label_smoothing)
        if not 0.0 <= ls <= 1.0:
            raise ValueError(f"{op}: label_smoothing must be between 0.0 and 1.0, got {ls}")
        if not isinstance(ignore_index, numbers.Integral):
            raise ValueError(f"{op}: ignore_index must be an integer, got {ignore_index!r}")

        self.probs = np.issubdtype(target.dtype, np.floating)
        if self.probs:
            target = as_float_array(target, "target", op)
            check_same_dtype(op, logits=logits, target=target, weight=weight)
            if target.shape != logits.shape:
                raise ValueError(
                    f"{op}: class-probability target of shape {tuple(target.shape)} must have "
                    f"the shape of logits {tuple(logits.shape)}"
                )
        elif np.issubdtype(target.dtype, np.integer) and target.dtype != np.bool_:
            check_same_dtype(op, logits=logits, weight=weight)
            expected = logits.shape[:axis] + logits.shape[axis + 1 :]
            if target.shape != expected:
                raise ValueError(
                    f"{op}: class-index target of shape {tuple(target.shape)} does not match "
                    f"logits of shape {tuple(logits.shape)}: expected {expected}"
                )
            valid = target != ignore_index
            bad = valid & ((target < 0) | (target >= c))
            if bad.any():
                values = np.unique(target[bad])
                shown = ", ".join(str(v) for v in values[:5]) + (", ..." if values.size > 5 else "")
                raise ValueError(
                    f"{op}: target class index {shown} out of range for {c} classes "
                    f"(valid: 0 to {c - 1}, or ignore_index={ignore_index})"
                )
            self.valid = valid
            self.safe_target = np.where(valid, target, 0)  # gatherable everywhere
        else:
            raise ValueError(
                f"{op}: target must hold integer class indices or float class probabilities, "
                f"got dtype {target.dtype} with shape {tuple(target.shape)}"
            )
        self.logits, self.target, self.weight = logits, target, weight
        self.axis, self.c, self.reduction, self.ls = axis, c, reduction, ls
        self.dtype = logits.dtype

    def wshape(self) -> tuple[int, ...]:
        """Shape that broadcasts a (C,) vector along the class axis."""
        s = [1] * self.logits.ndim
        s[self.axis] = self.c
        return tuple(s)

    def log_probs(self) -> np.ndarray:
        x = self.logits
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf; -3e38 - 3e38
            z = x - np.max(x, axis=self.axis, keepdims=True)
        z -= np.log(np.sum(np.exp(z), axis=self.axis, keepdims=True))
        return z

    def gather(self, a: np.ndarray) -> np.ndarray:
        """a[n, target[n, ...], ...] along the class axis; a has logits' shape."""
        idx = np.expand_dims(self.safe_target, self.axis)
        return np.take_along_axis(a, idx, axis=self.axis).squeeze(self.axis)

    def target_weight(self) -> np.ndarray:
        """Per-element class weight w[target], 0 where ignored (class-index targets)."""
        if self.weight is None:
            w = np.ones(self.safe_target.shape, self.dtype)
        else:
            w = self.weight[self.safe_target]
        return np.where(self.valid, w, 0).astype(self.dtype, copy=False)

    def denominator(self) -> np.ndarray:
        """What 'mean' divides by: the summed target weights, or the number of samples."""
        if self.probs:
            return np.asarray(self.logits.size // max(self.c, 1), self.dtype)
        return np.sum(self.target_weight(), dtype=self.dtype)

    def smoothed_probs(self) -> np.ndarray:
        t = self.target
        if self.ls > 0:
            t = t * (1 - self.ls) + self.ls / self.c
        return t


def _plain_index_target(logits, target, weight, ignore_index, reduction, label_smoothing):
    """``(logits, target)`` as arrays when the call is the common plain case, else None.

    Plain: (n, c) float logits, (n,) integer class indices all in range and none ignored, no
    class weights, no label smoothing, 'mean' or 'sum'. The general path then multiplies by
    weights of exactly 1 and selects nothing away, so the short path below computes the same
    floating-point operations in the same order (identical results) with a third of the NumPy
    calls (LeNet's (64, 10) logits: forward and backward 0.25 -> 0.06 ms).
    """
    if weight is not None or label_smoothing != 0 or reduction not in ("mean", "sum"):
        return None
    if not isinstance(logits, np.ndarray) or logits.ndim != 2:
        return None
    if logits.dtype not in (np.float32, np.float64) or logits.shape[0] == 0:
        return None
    if not isinstance(target, np.ndarray) or target.shape != logits.shape[:1]:
        return None
    if target.dtype == np.bool_ or not np.issubdtype(target.dtype, np.integer):
        return None
    if not isinstance(ignore_index, numbers.Integral):
        return None
    lo, hi = target.min(), target.max()
    if lo < 0 or hi >= logits.shape[1]:
        return None  # the general path names the bad indices
    if lo <= ignore_index <= hi and (target == ignore_index).any():
        return None
    return logits, target


def _log_softmax_rows(x: np.ndarray) -> np.ndarray:
    """log softmax over axis 1, exactly as ``_CE.log_probs`` computes it."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf; -3e38 - 3e38
        z = x - np.max(x, axis=1, keepdims=True)
    z -= np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return z


def _reduce_plain(loss: np.ndarray, reduction: str) -> np.ndarray:
    """``_reduce`` for the plain case: every target weight is 1."""
    total = np.sum(loss, dtype=loss.dtype)
    if reduction == "sum":
        return np.asarray(total, loss.dtype)
    return np.asarray(total / np.asarray(loss.size, loss.dtype), loss.dtype)


def _reduce(loss: np.ndarray, ce: _CE) -> np.ndarray:
    if ce.reduction == "none":
        return loss
    total = np.sum(loss, dtype=ce.dtype)
    if ce.reduction == "sum":
        return np.asarray(total, ce.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):  # all targets ignored: 0 / 0 = nan
        return np.asarray(total / ce.denominator(), ce.dtype)


def cross_entropy(
    logits: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> np.ndarray:
    """Cross-entropy between the softmax of ``logits`` and a target, as ``F.cross_entropy``.

    With class indices: ``loss[n] = -w[t] log softmax(logits[n])[t]`` (0 where ``t ==
    ignore_index``), mixed with the uniform-target loss when ``label_smoothing > 0``; 'mean'
    divides by the summed weights of the non-ignored targets (NaN if all are ignored). With
    class probabilities (a float target): ``loss[n] = -sum_c w[c] p[c] log softmax[c]``, and
    'mean' divides by the number of samples.

    Args:
        logits: unnormalised scores, float32 or float64.
        target: integer class indices (any integer dtype) or float class probabilities.
        weight: optional (C,) class weights.
        ignore_index: class index that contributes neither loss nor gradient (index targets).
        reduction: 'mean', 'sum' or 'none'.
        label_smoothing: in [0, 1]; mixes the target with the uniform distribution.

    Shape:
        logits (N, C), (N, C, d1, ...) or (C,); index target (N,), (N, d1, ...) or ();
        probability target like logits. Output: 0-d for mean/sum, target's shape
        (logits' shape without C) for none.

    Example:
        >>> round(float(cross_entropy(np.zeros((2, 4)), np.array([0, 3]))), 4)  # log(4)
        1.3863
    """
    fast = _plain_index_target(logits, target, weight, ignore_index, reduction, label_smoothing)
    if fast is not None:
        x, t = fast
        logp = _log_softmax_rows(x)
        loss = -logp[np.arange(t.size), t]  # (n,)
        return _reduce_plain(loss, reduction)
    ce = _CE("cross_entropy", logits, target, weight, ignore_index, reduction, label_smoothing)
    logp = ce.log_probs()
    wb = None if ce.weight is None else ce.weight.reshape(ce.wshape())
    with np.errstate(invalid="ignore"):  # -inf log-probabilities times zero targets
        if ce.probs:
            prod = logp * ce.smoothed_probs()
            if wb is not None:
                prod *= wb
            loss = -np.sum(prod, axis=ce.axis)
        else:
            # np.where, not a multiplication by 0: an ignored sample's loss is 0 even if its
            # logits are not finite, as in torch.
            loss = np.where(ce.valid, -ce.gather(logp) * ce.target_weight(), 0)
            if ce.ls > 0:
                wl = logp if wb is None else logp * wb
                smooth = -np.sum(wl, axis=ce.axis)
                smooth = np.where(ce.valid, smooth, 0)
                loss = (1 - ce.ls) * loss + (ce.ls / ce.c) * smooth
    return _reduce(np.asarray(loss, ce.dtype), ce)


def _upstream(grad_out, ce: _CE, loss_shape: tuple[int, ...], op: str) -> np.ndarray:
    """The per-element gradient of the reduced loss with respect to the unreduced one."""
    g = as_float_array(grad_out, "grad_out", op)
    if ce.reduction == "none":
        check_same_dtype(op, grad_out=g, logits=ce.logits)
        if g.shape != loss_shape:
            raise ValueError(
                f"{op}: grad_out of shape {tuple(g.shape)} does not match the loss shape "
                f"{loss_shape} (reduction='none')"
            )
        return g
    if g.size != 1:
        raise ValueError(
            f"{op}: grad_out must be a scalar for reduction={ce.reduction!r}, got shape "
            f"{tuple(g.shape)}"
        )
    g = g.reshape(()).astype(ce.dtype)
    if ce.reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            g = g / ce.denominator()
    return np.full(loss_shape, g, ce.dtype)


def cross_entropy_backward(
    grad_out: np.ndarray | float,
    logits: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> np.ndarray:
    """Gradient of :func:`cross_entropy` with respect to ``logits``.

    Args:
        grad_out: scalar (float or 0-d array) for 'mean'/'sum'; shaped like the loss for 'none'.
        logits, target, weight, ignore_index, reduction, label_smoothing: as in the forward.

    Shape:
        grad_logits like logits.

    Example:
        >>> cross_entropy_backward(1.0, np.zeros((1, 2)), np.array([0])).tolist()
        [[-0.5, 0.5]]
    """
    op = "cross_entropy_backward"
    fast = _plain_index_target(logits, target, weight, ignore_index, reduction, label_smoothing)
    if fast is not None:
        x, t = fast
        g = as_float_array(grad_out, "grad_out", op)
        if g.size == 1:
            g = g.reshape(()).astype(x.dtype)
            if reduction == "mean":
                with np.errstate(invalid="ignore", divide="ignore"):
                    g = g / np.asarray(t.size, x.dtype)
            grad = np.exp(_log_softmax_rows(x))  # softmax, (n, c)
            grad[np.arange(t.size), t] -= 1
            with np.errstate(invalid="ignore"):
                grad *= g
            return grad
    ce = _CE(op, logits, target, weight, ignore_index, reduction, label_smoothing)
    sample_shape = ce.logits.shape[: ce.axis] + ce.logits.shape[ce.axis + 1 :]
    up = np.expand_dims(_upstream(grad_out, ce, sample_shape, op), ce.axis)  # class axis = 1
    p = np.exp(ce.log_probs())  # softmax
    wb = None if ce.weight is None else ce.weight.reshape(ce.wshape())
    if ce.probs:
        # loss = -sum_c w_c q_c log p_c  ->  d/dz_j = p_j sum_c w_c q_c - w_j q_j
        wq = ce.smoothed_probs() if wb is None else ce.smoothed_probs() * wb
        grad = p * np.sum(wq, axis=ce.axis, keepdims=True) - wq
    else:
        tw = np.expand_dims(ce.target_weight(), ce.axis)
        onehot_idx = np.expand_dims(ce.safe_target, ce.axis)
        # nll part: w_t (p - onehot(t)), scaled by (1 - ls)
        grad = p * tw
        picked = np.take_along_axis(grad, onehot_idx, axis=ce.axis)  # p_t w_t
        np.put_along_axis(grad, onehot_idx, picked - tw, ce.axis)
        if ce.ls > 0:
            # smooth part: -sum_c w_c log p_c  ->  d/dz_j = p_j sum_c w_c - w_j, 0 where ignored
            wsum = ce.c if wb is None else np.sum(ce.weight)
            smooth = p * wsum - (1 if wb is None else wb)
            valid = np.expand_dims(ce.valid, ce.axis)
            grad = (1 - ce.ls) * grad + (ce.ls / ce.c) * np.where(valid, smooth, 0)
    with np.errstate(invalid="ignore"):  # a NaN upstream (mean over no targets) times 0
        grad = grad * up
    if not ce.probs:
        # an ignored sample's gradient is exactly 0, even when the mean is 0/0 = NaN (as torch)
        grad = np.where(np.expand_dims(ce.valid, ce.axis), grad, 0)
    return np.asarray(grad, ce.dtype)


# ----------------------------------------------------------------------------------------------
# Mean squared error
# ----------------------------------------------------------------------------------------------


def _mse_args(op: str, input, target, reduction: str):
    check_reduction(reduction, op)
    x = as_float_array(input, "input", op)
    t = as_float_array(target, "target", op)
    check_same_dtype(op, input=x, target=t)
    if x.shape != t.shape:
        raise ValueError(
            f"{op}: target of shape {tuple(t.shape)} does not match input of shape "
            f"{tuple(x.shape)} (no broadcasting)"
        )
    return x, t


def mse_loss(input: np.ndarray, target: np.ndarray, reduction: str = "mean") -> np.ndarray:
    """Mean squared error, ``(input - target)**2`` reduced by ``reduction``.

    Args:
        input: prediction, float32 or float64.
        target: same shape and dtype as input (no broadcasting, unlike torch's warning path).
        reduction: 'mean', 'sum' or 'none'.

    Shape:
        input and target of one shape; output 0-d (mean/sum) or that shape (none).

    Example:
        >>> float(mse_loss(np.array([1.0, 3.0]), np.array([0.0, 0.0])))
        5.0
    """
    x, t = _mse_args("mse_loss", input, target, reduction)
    sq = np.asarray(np.square(x - t))
    if reduction == "none":
        return sq
    total = np.sum(sq, dtype=x.dtype)
    if reduction == "sum":
        return np.asarray(total, x.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty input: nan, as in torch
        return np.asarray(total / np.asarray(sq.size, x.dtype), x.dtype)


def mse_loss_backward(
    grad_out: np.ndarray | float, input: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> np.ndarray:
    """Gradient of :func:`mse_loss` with respect to ``input``: ``2 (input - target) * grad``.

    Args:
        grad_out: scalar for 'mean'/'sum'; shaped like input for 'none'.
        input, target, reduction: as in the forward.

    Shape:
        grad_input like input.

    Example:
        >>> mse_loss_backward(1.0, np.array([1.0, 3.0]), np.zeros(2)).tolist()
        [1.0, 3.0]
    """
    op = "mse_loss_backward"
    x, t = _mse_args(op, input, target, reduction)
    g = as_float_array(grad_out, "grad_out", op)
    if reduction == "none":
        check_same_dtype(op, grad_out=g, input=x)
        if g.shape != x.shape:
            raise ValueError(
                f"{op}: grad_out of shape {tuple(g.shape)} does not match input of shape "
                f"{tuple(x.shape)} (reduction='none')"
            )
    else:
        if g.size != 1:
            raise ValueError(
                f"{op}: grad_out must be a scalar for reduction={reduction!r}, got shape "
                f"{tuple(g.shape)}"
            )
        g = g.reshape(()).astype(x.dtype)
        if reduction == "mean":
            g = g / np.asarray(max(x.size, 1), x.dtype)
    diff = x - t
    diff *= 2 * g
    return diff
