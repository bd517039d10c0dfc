"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

The update is ``torch.optim.SGD``'s (its single-tensor loop), in the parameter's dtype, with
PyTorch's fused multiply-adds (float32 results equal PyTorch's bit for bit on CPUs with FMA):

.. code-block:: text

    g = grad (+ weight_decay * p)
    buf = g                                   (first step)
    buf = momentum * buf + (1 - dampening) * g (later steps)
    g = g + momentum * buf   if nesterov   else   buf
    p = p - lr * g

>>> import numpy as np
>>> from cnnperf import nn, optim
>>> p = nn.Parameter(np.array([1.0], np.float32))
>>> opt = SGD([p], lr=0.1, momentum=0.9)
>>> for _ in range(2):
...     p.grad = np.array([1.0], np.float32); opt.step()
>>> p.data.astype(float).round(4).tolist()  # 1 - 0.1*1 - 0.1*(0.9 + 1)
[0.71]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .optimizer import Optimizer, ParamsT, fused_multiply_add

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent (optionally with momentum), as ``torch.optim.SGD``.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (PyTorch's default 1e-3).
        momentum: momentum factor.
        dampening: dampening of the momentum's gradient term.
        weight_decay: L2 penalty added to the gradient.
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        maximize: ascend instead of descend.

    Example:
        >>> from cnnperf import nn
        >>> SGD(nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9, nesterov=True).defaults
        {'lr': 0.1, 'momentum': 0.9, 'dampening': 0, 'weight_decay': 0, 'nesterov': True, \
'maximize': False}
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        for key in ("lr", "momentum", "weight_decay"):
            if not group[key] >= 0.0:
                raise ValueError(f"SGD: invalid {key} value: {group[key]!r} (must be >= 0)")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"SGD: Nesterov momentum requires a momentum and zero dampening, got "
                f"momentum={group['momentum']} and dampening={group['dampening']}"
            )

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns the closure's loss, if any.

        Example:
            >>> from cnnperf import nn
            >>> p = nn.Parameter(np.ones(1, np.float32)); p.grad = np.ones(1, np.float32)
            >>> SGD([p], lr=0.5).step(); p.data.tolist()
            [0.5]
        """
        loss = self._closure_loss(closure)
        for group, p, grad in self._params_with_grad():
            dt = p.dtype.type
            wd, momentum = group["weight_decay"], group["momentum"]
            g = -grad if group["maximize"] else grad
            if wd != 0:
                g = fused_multiply_add(dt(wd), p.data, g, p.dtype)  # grad.add(p, alpha=wd)
            if momentum != 0:
                state = self.state.setdefault(p, {})
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = np.array(g, copy=True)
                else:
                    buf *= dt(momentum)
                    buf[...] = fused_multiply_add(dt(1 - group["dampening"]), g, buf, p.dtype)
                if group["nesterov"]:
                    g = fused_multiply_add(dt(momentum), buf, g, p.dtype)
                else:
                    g = buf
            p.data[...] = fused_multiply_add(dt(-group["lr"]), g, p.data, p.dtype)
        return loss
