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

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .optimizer import Optimizer, ParamsT

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
        # (dtype and group settings) -> the one-pass kernel's constant arrays, for this step
        self._one_pass_args: dict[tuple, tuple] = {}
        for group, p, grad in self._params_with_grad():
            if _one_pass(p.data, grad):
                self._step_one_pass(group, p, grad)
                continue
            dt = p.dtype.type
            wd, momentum = group["weight_decay"], group["momentum"]
            work = self._work(p.shape)
            g = -grad if group["maximize"] else grad
            if wd != 0:
                g = _fma(dt(wd), p.data, g, work, np.empty_like(p.data))  # grad.add(p, alpha=wd)
            if momentum != 0:
                state = self.state.setdefault(p, {})
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = np.array(g, copy=True)
                else:
                    buf *= dt(momentum)
                    _fma(dt(1 - group["dampening"]), g, buf, work, buf)
                if group["nesterov"]:
                    g = _fma(dt(momentum), buf, g, work, np.empty_like(p.data))
                else:
                    g = buf
            _fma(dt(-group["lr"]), g, p.data, work, p.data)
        return loss

    def _step_one_pass(self, group: dict[str, Any], p, grad: np.ndarray) -> None:
        """The update of :meth:`step` as one Numba call per parameter (the NumPy form costs a
        few ufunc calls per parameter: 0.25 ms per step for LeNet's ten, against 0.1)."""
        from ..kernels.elementwise import sgd_step

        momentum = group["momentum"]
        buf = None
        first = False
        if momentum != 0:
            state = self.state.setdefault(p, {})
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.empty_like(p.data)
                first = True
        settings = (
            p.dtype, group["weight_decay"], momentum, group["dampening"], group["lr"],
            group["maximize"], group["nesterov"],
        )  # fmt: skip
        cached = self._one_pass_args.get(settings)
        if cached is None:
            dt = p.dtype.type
            wd = group["weight_decay"]
            consts = np.array([dt(wd), dt(momentum), dt(1 - group["dampening"]),
                               dt(-group["lr"])], dtype=p.dtype)  # fmt: skip
            flags = [np.array([group["maximize"], momentum != 0, f, group["nesterov"], wd != 0],
                              dtype=np.int64) for f in (False, True)]  # fmt: skip
            cached = self._one_pass_args[settings] = (consts, flags)
        flat = p.data.reshape(-1)
        buf_flat = flat if buf is None else buf.reshape(-1)
        sgd_step(flat, grad.reshape(-1), buf_flat, cached[0], cached[1][first])

    def _work(self, shape: tuple[int, ...]) -> np.ndarray:
        """A float64 scratch array of ``shape`` (a view of one buffer reused for every step)."""
        size = math.prod(shape)
        scratch = getattr(self, "_scratch", None)
        if scratch is None or scratch.size < size:
            scratch = self._scratch = np.empty(size, np.float64)
        return scratch[:size].reshape(shape)


def _fma(a: np.generic, b: np.ndarray, c: np.ndarray, work: np.ndarray, out: np.ndarray):
    """``out = a * b + c``, as :func:`~cnnperf.optim.optimizer.fused_multiply_add` computes it
    (in float64, then rounded once to ``out``'s dtype), through the float64 ``work`` array:
    with every step in place, a parameter costs a few ufunc calls and no allocation (the
    allocating form took 0.4 ms per step for LeNet's ten parameters, more than PyTorch's).
    ``out`` may be ``c``; returns ``out``."""
    np.multiply(b, np.float64(a), out=work)  # exact for float32 ``a`` and ``b``
    np.add(work, c, out=work)
    np.copyto(out, work, casting="same_kind")
    return out


def _one_pass(data: np.ndarray, grad: np.ndarray) -> bool:
    """Whether the one-pass kernel can update ``data`` from ``grad``: contiguous float arrays
    of one dtype (anything else takes the NumPy path)."""
    return (
        data.dtype in (np.float32, np.float64)
        and grad.dtype == data.dtype
        and data.flags.c_contiguous
        and grad.flags.c_contiguous
        and data.size > 0
    )
