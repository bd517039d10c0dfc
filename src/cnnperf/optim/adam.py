"""Adam and AdamW, following ``torch.optim.Adam``'s single-tensor update step for step.

.. code-block:: text

    step += 1
    p = p * (1 - lr * weight_decay)           (AdamW: decoupled decay)
    g = grad + weight_decay * p               (Adam: L2 penalty in the gradient)
    m = lerp(m, g, 1 - beta1)                 (= beta1 * m + (1 - beta1) * g)
    v = beta2 * v + (1 - beta2) * g * g
    vmax = max(vmax, v)                       (amsgrad: use vmax below instead of v)
    p = p - lr / (1 - beta1**step) * m / (sqrt(v) / sqrt(1 - beta2**step) + eps)

The scalars (bias corrections, step size) are Python floats as in PyTorch; the array
arithmetic is in the parameter's dtype, in PyTorch's order of operations and with its fused
multiply-adds. (PyTorch's vectorised float32 ``sqrt`` is not always correctly rounded, so
results can differ from PyTorch's in the last bit.)

>>> import numpy as np
>>> from cnnperf import nn
>>> p = nn.Parameter(np.array([1.0, -1.0], np.float32))
>>> opt = Adam([p], lr=0.1)
>>> p.grad = np.array([0.5, -2.0], np.float32); opt.step()
>>> p.data.astype(float).round(4).tolist()  # the first step moves each weight by lr
[0.9, -0.9]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .optimizer import Optimizer, ParamsT, fused_multiply_add

__all__ = ["Adam", "AdamW"]


def _lerp_(start: np.ndarray, end: np.ndarray, weight: float) -> None:
    """``start += weight * (end - start)`` in place, as PyTorch's vectorised CPU ``lerp_``:
    ``fma(weight, end - start, start)``, or ``fma(weight - 1, end - start, end)`` for
    ``|weight| >= 0.5``."""
    dt = start.dtype.type
    w = dt(weight)
    diff = end - start
    if abs(w) < 0.5:
        start[...] = fused_multiply_add(w, diff, start, start.dtype)
    else:
        start[...] = fused_multiply_add(w - dt(1), diff, end, start.dtype)


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2014), as ``torch.optim.Adam``.

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        betas: decay rates of the first and second moment averages.
        eps: added to the denominator.
        weight_decay: L2 penalty added to the gradient (decoupled with
            ``decoupled_weight_decay=True``, which is :class:`AdamW`).
        amsgrad: use the maximum of the second moments so far (Reddi et al., 2018).
        maximize: ascend instead of descend.
        decoupled_weight_decay: multiply the weights by ``1 - lr * weight_decay`` instead.

    Example:
        >>> from cnnperf import nn
        >>> Adam(nn.Linear(2, 2).parameters()).defaults["betas"]
        (0.9, 0.999)
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        name = type(self).__name__
        for key in ("lr", "eps", "weight_decay"):
            if not group[key] >= 0.0:
                raise ValueError(f"{name}: invalid {key} value: {group[key]!r} (must be >= 0)")
        betas = group["betas"]
        if len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair, got {betas!r}")
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"{name}: invalid beta parameter at index {i}: {b!r}")

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns the closure's loss, if any.

        Example:
            >>> from cnnperf import nn
            >>> p = nn.Parameter(np.zeros(1, np.float32)); p.grad = np.ones(1, np.float32)
            >>> opt = Adam([p], lr=0.01); opt.step(); opt.state[p]["step"], p.data.round(4)
            (1.0, array([-0.01], dtype=float32))
        """
        loss = self._closure_loss(closure)
        for group, p, grad in self._params_with_grad():
            dt = p.dtype.type
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            beta1, beta2 = group["betas"]
            state = self.state.setdefault(p, {})
            if not state:
                state["step"] = 0.0
                state["exp_avg"] = np.zeros_like(p.data)
                state["exp_avg_sq"] = np.zeros_like(p.data)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = np.zeros_like(p.data)
            g = -grad if group["maximize"] else grad
            state["step"] += 1.0
            step = state["step"]
            if wd != 0:
                if group["decoupled_weight_decay"]:
                    p.data *= dt(1 - lr * wd)
                else:
                    g = fused_multiply_add(dt(wd), p.data, g, p.dtype)
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            _lerp_(exp_avg, g, 1 - beta1)
            exp_avg_sq *= dt(beta2)
            # addcmul_(g, g, value=1 - beta2): fma(value * g, g, v)
            exp_avg_sq[...] = fused_multiply_add(dt(1 - beta2) * g, g, exp_avg_sq, p.dtype)
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = lr / bias_correction1
            bias_correction2_sqrt = bias_correction2**0.5
            if group["amsgrad"]:
                second = state.get("max_exp_avg_sq")
                if second is None:  # amsgrad switched on after the first step
                    second = state["max_exp_avg_sq"] = np.zeros_like(p.data)
                np.maximum(second, exp_avg_sq, out=second)
            else:
                second = exp_avg_sq
            denom = np.sqrt(second) / dt(bias_correction2_sqrt)
            denom += dt(eps)
            p.data += (dt(-step_size) * exp_avg) / denom
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``.

    Same arguments as :class:`Adam`, with ``weight_decay`` defaulting to 1e-2 and applied as
    ``p *= 1 - lr * weight_decay`` before the Adam update.

    Example:
        >>> from cnnperf import nn
        >>> p = nn.Parameter(np.ones(1, np.float32)); p.grad = np.zeros(1, np.float32)
        >>> AdamW([p], lr=0.1, weight_decay=0.5).step(); p.data.tolist()
        [0.949999988079071]
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
        )
