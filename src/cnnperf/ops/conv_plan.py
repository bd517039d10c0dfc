"""Convolution plans: the algorithm chosen and the weight prepared once, then run many times.

``conv2d`` prepares the weight on every call (for Winograd or FFT that is a transform of the
whole weight). A model layer or a compiled graph holds a :class:`Conv2dPlan` instead: the plan
copies the weight when it is made, so later changes to the caller's array never leak into it
(make a new plan after changing the weight).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._validate import as_batched_4d, as_float_array, check_same_dtype
from .conv import _check_bias, conv_params, run_conv, select_conv_algo
from .epilogue import parse_activation

__all__ = ["Conv2dPlan", "plan_conv2d"]


class Conv2dPlan:
    """``conv2d`` with fixed weight, bias, arguments and algorithm; call it with the input.

    Example:
        >>> w = np.ones((2, 3, 3, 3), np.float32)
        >>> plan = plan_conv2d(w, input_shape=(1, 3, 8, 8), padding=1, activation="relu")
        >>> plan(np.ones((4, 3, 8, 8), np.float32)).shape  # any batch size
        (4, 2, 8, 8)
    """

    def __init__(
        self,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        *,
        input_shape: tuple,
        algo: str = "auto",
        activation=None,
    ) -> None:
        op = "plan_conv2d"
        weight = np.array(as_float_array(weight, "weight", op), copy=True, order="C")
        if len(input_shape) == 3:
            input_shape = (1, *input_shape)
        if len(input_shape) != 4:
            raise ValueError(
                f"{op}: input_shape must be (n, c, h, w) or (c, h, w), got {input_shape}"
            )
        self.params = conv_params(
            tuple(int(v) for v in input_shape), weight.shape, stride, padding, dilation, groups, op
        )
        self.dtype = weight.dtype
        b = _check_bias(bias, self.params.c_out, weight.dtype, op)
        self.bias = None if b is None else np.array(b, copy=True)
        self.epilogue = parse_activation(activation, op)
        self.algorithm = select_conv_algo(
            self.params, algo, dtype=weight.dtype, weight_prepared=True
        )
        self.weight = weight
        self.prepared = self.algorithm.prepare_weight(weight, self.params)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        op = "Conv2dPlan"
        x = as_float_array(x, "input", op)
        x4, unbatched = as_batched_4d(x, "input", op)
        check_same_dtype(op, input=x4, weight=self.weight)
        p = self.params
        if x4.shape[1:] != (p.c_in, p.h, p.w):
            raise ValueError(
                f"{op}: planned for input (n, {p.c_in}, {p.h}, {p.w}), got {tuple(x.shape)}"
            )
        if x4.shape[0] != p.n:
            p = dataclasses.replace(p, n=x4.shape[0])
        out = run_conv(self.algorithm, x4, self.prepared, self.bias, p, self.epilogue)
        return out[0] if unbatched else out

    def __repr__(self) -> str:
        return f"Conv2dPlan({self.params}, algorithm={self.algorithm.name!r})"


def plan_conv2d(weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, input_shape,
                algo="auto", activation=None) -> Conv2dPlan:  # fmt: skip
    """Make a :class:`Conv2dPlan` (same arguments as ``conv2d``, plus the input shape)."""
    return Conv2dPlan(
        weight, bias, stride, padding, dilation, groups,
        input_shape=input_shape, algo=algo, activation=activation,
    )  # fmt: skip
