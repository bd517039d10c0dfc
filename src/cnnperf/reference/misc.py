"""Reference linear, dropout (explicit mask) and pad, forward and backward (float64 loops)."""

from __future__ import annotations

import itertools

import numpy as np

from ._args import as_f64

__all__ = [
    "linear",
    "linear_backward",
    "dropout",
    "dropout_backward",
    "pad",
    "pad_backward",
]


def _linear_check(x: np.ndarray, weight: np.ndarray) -> tuple[int, int]:
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {weight.shape}")
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"x of shape {x.shape} needs last dim {weight.shape[1]} for {weight.shape}"
        )
    return weight.shape


def linear(x, weight, bias=None) -> np.ndarray:
    """y[..., o] = sum_i x[..., i] * weight[o, i] + bias[o]; x (..., in) -> y (..., out)."""
    x = as_f64(x)
    weight = as_f64(weight)
    n_out, n_in = _linear_check(x, weight)
    rows = x.reshape(-1, n_in)  # (m, in)
    out = np.zeros((rows.shape[0], n_out), dtype=np.float64)
    if bias is not None:
        bias = as_f64(bias)
        if bias.shape != (n_out,):
            raise ValueError(f"bias must have shape ({n_out},), got {bias.shape}")
    for r in range(rows.shape[0]):
        for o in range(n_out):
            acc = 0.0
            for i in range(n_in):
                acc += rows[r, i] * weight[o, i]
            out[r, o] = acc + (bias[o] if bias is not None else 0.0)
    return out.reshape(x.shape[:-1] + (n_out,))


def linear_backward(
    grad_out, x, weight, *, bias=True
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(grad_x = grad @ weight, grad_weight = sum grad^T x, grad_bias = sum grad or None)."""
    x = as_f64(x)
    weight = as_f64(weight)
    grad_out = as_f64(grad_out)
    n_out, n_in = _linear_check(x, weight)
    if grad_out.shape != x.shape[:-1] + (n_out,):
        raise ValueError(
            f"grad_out must have shape {x.shape[:-1] + (n_out,)}, got {grad_out.shape}"
        )
    rows = x.reshape(-1, n_in)  # (m, in)
    g = grad_out.reshape(-1, n_out)  # (m, out)
    grad_x = np.zeros_like(rows)
    grad_w = np.zeros_like(weight)
    grad_b = np.zeros(n_out, dtype=np.float64) if bias else None
    for r in range(rows.shape[0]):
        for o in range(n_out):
            go = g[r, o]
            for i in range(n_in):
                grad_x[r, i] += go * weight[o, i]
                grad_w[o, i] += go * rows[r, i]
            if grad_b is not None:
                grad_b[o] += go
    return grad_x.reshape(x.shape), grad_w, grad_b


def _keep_scale(p: float) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    return 0.0 if p == 1.0 else 1.0 / (1.0 - p)


def dropout(x, mask, p) -> np.ndarray:
    """y = x * mask / (1 - p) with an explicit boolean keep-mask (x * 0 when p == 1)."""
    x = as_f64(x)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != x.shape:
        raise ValueError(f"mask shape {mask.shape} != x shape {x.shape}")
    scale = _keep_scale(p)
    out = np.empty(x.shape, dtype=np.float64)
    flat = out.reshape(-1)
    for i, (v, keep) in enumerate(zip(x.flat, mask.flat, strict=True)):
        flat[i] = v * (scale if keep else 0.0)  # a multiply, like PyTorch: NaN * 0 stays NaN
    return out


def dropout_backward(grad_out, mask, p) -> np.ndarray:
    """grad_x = grad * mask / (1 - p) (zeros when p == 1)."""
    return dropout(grad_out, mask, p)


def _pad_spec(x: np.ndarray, pad, mode: str) -> list[tuple[int, int]]:
    """Per-dimension (before, after) from PyTorch's (last_before, last_after, prev_before, ...)."""
    pad = [int(v) for v in pad]
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad {tuple(pad)} must have even length <= 2 * {x.ndim}")
    if mode not in ("constant", "reflect", "replicate"):
        raise ValueError(f"mode must be 'constant', 'reflect' or 'replicate', got {mode!r}")
    spec = [(0, 0)] * x.ndim
    for k in range(len(pad) // 2):
        dim = x.ndim - 1 - k
        before, after = pad[2 * k], pad[2 * k + 1]
        size = x.shape[dim]
        if mode != "constant" and min(before, after) < 0:
            raise ValueError(f"negative padding {tuple(pad)} needs mode='constant'")
        if mode == "reflect" and (before >= size or after >= size):
            raise ValueError(f"reflect padding {(before, after)} must be < dim size {size}")
        if mode == "replicate" and size == 0 and before + after > 0:
            raise ValueError("replicate padding needs a non-empty dimension")
        if size + before + after < 0:
            raise ValueError(f"pad {tuple(pad)} makes dim {dim} of size {size} negative")
        spec[dim] = (before, after)
    return spec


def _source_index(o: int, before: int, size: int, mode: str) -> int | None:
    """Input index feeding output index o along one dim, or None for a constant fill."""
    i = o - before
    if 0 <= i < size:
        return i
    if mode == "constant":
        return None
    if mode == "replicate":
        return 0 if i < 0 else size - 1
    # reflect: mirror about the first / last element without repeating it
    return -i if i < 0 else 2 * (size - 1) - i


def _pad_map(x: np.ndarray, spec, mode: str):
    """Output shape and an iterator of (output index, input index or None)."""
    out_shape = tuple(s + b + a for s, (b, a) in zip(x.shape, spec, strict=True))

    def pairs():
        for o in itertools.product(*(range(n) for n in out_shape)):
            src = []
            for d, od in enumerate(o):
                i = _source_index(od, spec[d][0], x.shape[d], mode)
                if i is None:
                    src = None
                    break
                src.append(i)
            yield o, (None if src is None else tuple(src))

    return out_shape, pairs()


def pad(x, pad, mode="constant", value=0.0) -> np.ndarray:
    """Pad like torch.nn.functional.pad: pad = (left, right, top, bottom, ...) from the last dim."""
    x = as_f64(x)
    spec = _pad_spec(x, pad, mode)
    out_shape, pairs = _pad_map(x, spec, mode)
    out = np.empty(out_shape, dtype=np.float64)
    for o, src in pairs:
        out[o] = float(value) if src is None else x[src]
    return out


def pad_backward(grad_out, x, pad, mode="constant") -> np.ndarray:
    """Gradient of pad w.r.t. x: each output's gradient added back at its source element."""
    x = as_f64(x)
    grad_out = as_f64(grad_out)
    spec = _pad_spec(x, pad, mode)
    out_shape, pairs = _pad_map(x, spec, mode)
    if grad_out.shape != out_shape:
        raise ValueError(f"grad_out must have shape {out_shape}, got {grad_out.shape}")
    grad_x = np.zeros_like(x)
    for o, src in pairs:
        if src is not None:
            grad_x[src] += grad_out[o]
    return grad_x
