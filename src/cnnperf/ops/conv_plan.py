"""Convolution plans: the algorithm chosen and the weight prepared once, then run many times.

``conv2d`` prepares the weight on every call (for Winograd or FFT that is a transform of the
whole weight). A model layer or a compiled graph holds a :class:`Conv2dPlan` instead: the plan
copies the weight when it is made, so later changes to the caller's array never leak into it
(make a new plan after changing the weight).

A plan call can also write into a caller's array (``out=``, what a compiled graph's planned
buffers use) and add a residual before the activation (``residual=``: ResNet's
``relu(conv(x) + bias + identity)`` in one node).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ._validate import as_batched_4d, as_float_array, check_same_dtype
from .conv import _check_bias, conv_params, run_conv, run_conv_into, select_conv_algo
from .conv_algos import ConvAlgorithm
from .epilogue import NO_EPILOGUE, apply_residual_epilogue, parse_activation

__all__ = ["Conv2dPlan", "plan_conv2d", "run_conv_into"]


class Conv2dPlan:
    """``conv2d`` with fixed weight, bias, arguments and algorithm; call it with the input.

    The algorithm is chosen for ``input_shape`` (``algo="auto"``: by the heuristic or the
    tuning cache) and its weight prepared once. Called with another batch size, an "auto" plan
    asks ``auto`` again for that size (:meth:`algorithm_for`).

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
        # "auto" plans choose again for another batch size (the best algorithm depends on it,
        # e.g. depthwise and few-channel layers); each algorithm's weight is prepared once
        self._auto = algo == "auto"
        self._by_batch = {self.params.n: (self.algorithm, self.prepared)}
        self._by_name = {self.algorithm.name: self.prepared}

    def algorithm_for(self, n: int) -> tuple[ConvAlgorithm, object]:
        """The algorithm and prepared weight this plan runs at batch size ``n``: the planned
        ones, or for an ``algo="auto"`` plan, ``auto``'s choice at that batch size (chosen and
        prepared on first use, then kept)."""
        if n in self._by_batch:
            return self._by_batch[n]
        if not self._auto or n < 1:
            return self.algorithm, self.prepared
        p = dataclasses.replace(self.params, n=n)
        algo = select_conv_algo(p, "auto", dtype=self.dtype, weight_prepared=True)
        if algo.name not in self._by_name:
            self._by_name[algo.name] = algo.prepare_weight(self.weight, p)
        self._by_batch[n] = (algo, self._by_name[algo.name])
        return self._by_batch[n]

    def __call__(
        self,
        x: np.ndarray,
        *,
        residual: np.ndarray | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """``activation(conv(x) + bias [+ residual])``, written into ``out`` when given.

        Args:
            x: input (n, c_in, h, w) with the planned (c_in, h, w) and any batch size, or
                unbatched (c_in, h, w).
            residual: None, or an array of the output's shape and dtype added after the bias
                and before the activation: the result equals ``conv -> add -> activation``
                unfused (the sum rounded to the dtype first; NaN and Inf propagate).
            out: None (a new array is returned), or a C-contiguous array of the output's
                shape and dtype that is written and returned; it must not overlap ``x`` or
                ``residual``.

        Shape:
            output (n, c_out, oh, ow) (unbatched: (c_out, oh, ow)), oh and ow as ``conv2d``.

        Example:
            >>> plan = plan_conv2d(np.ones((2, 1, 1, 1), np.float32), input_shape=(1, 1, 2, 2),
            ...                    activation="relu")
            >>> x = np.ones((1, 1, 2, 2), np.float32); r = np.full((1, 2, 2, 2), -3, np.float32)
            >>> y = np.empty((1, 2, 2, 2), np.float32)
            >>> plan(x, residual=r, out=y) is y, y.max()  # relu(1 - 3)
            (True, np.float32(0.0))
        """
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
        algorithm, prepared = self.algorithm_for(p.n)
        shape = p.output_shape[1:] if unbatched else p.output_shape
        r4 = None
        if residual is not None:
            r4 = self._check_array(residual, "residual", shape, x4).reshape(p.output_shape)
            r4 = np.ascontiguousarray(r4)
        # an algorithm that fuses the residual adds it (and activates) as it writes
        fused = None if r4 is None or not algorithm.fuses_residual else r4
        epi = self.epilogue if r4 is None or fused is not None else NO_EPILOGUE
        if out is None:
            y4 = run_conv(algorithm, x4, prepared, self.bias, p, epi, fused)
        else:
            self._check_array(out, "out", shape, x4)
            if not out.flags.c_contiguous:
                raise ValueError(f"{op}: out must be C-contiguous")
            if residual is not None and np.may_share_memory(out, residual):
                raise ValueError(f"{op}: out must not overlap residual")
            y4 = out.reshape(p.output_shape)  # a view: out is contiguous
            run_conv_into(algorithm, x4, prepared, self.bias, p, epi, y4, fused)
        if r4 is not None and fused is None:
            apply_residual_epilogue(y4, r4, self.epilogue)
        if out is not None:
            return out
        return y4[0] if unbatched else y4

    def bind(
        self, x: np.ndarray, out: np.ndarray, residual: np.ndarray | None = None
    ) -> Callable[[], None] | None:
        """``self(x, residual=residual, out=out)`` prepared for these very arrays: a call
        without arguments that reruns the convolution on whatever they hold then, with the
        checks, the padded copy's allocation and the kernels' arguments done once (what a
        compiled model's fixed buffers use; ~20-60 us of Python a layer at batch 1). None
        where the algorithm has no such form (``ConvAlgorithm.bind``) or the arrays do not
        fit: contiguous, batched, of the plan's dtype and shapes, ``out`` overlapping
        neither."""
        arrays = [x, out] if residual is None else [x, out, residual]
        if not all(
            isinstance(a, np.ndarray) and a.dtype == self.dtype and a.flags.c_contiguous
            for a in arrays
        ):
            return None
        p = self.params
        if x.ndim != 4 or x.shape[1:] != (p.c_in, p.h, p.w) or x.shape[0] < 1:
            return None
        p = dataclasses.replace(p, n=x.shape[0])
        if out.shape != p.output_shape or (residual is not None and residual.shape != out.shape):
            return None
        if any(np.may_share_memory(out, a) for a in arrays[:1] + arrays[2:]):
            return None
        algorithm, prepared = self.algorithm_for(p.n)
        binder = getattr(algorithm, "bind", None)
        if binder is None or (residual is not None and not algorithm.fuses_residual):
            return None
        return binder(x, prepared, self.bias, p, self.epilogue, out, residual)

    def _check_array(self, a, name: str, shape: tuple, x4: np.ndarray) -> np.ndarray:
        """``a`` (residual or out) as an array of the output's ``shape`` and the plan's dtype,
        not overlapping the input ``x4``; ValueError naming ``name`` otherwise."""
        op = "Conv2dPlan"
        if not isinstance(a, np.ndarray):
            raise ValueError(f"{op}: {name} must be a NumPy array, got {type(a).__name__}")
        if a.dtype != self.dtype:
            raise ValueError(
                f"{op}: {name} must have the weight's dtype {self.dtype}, got {a.dtype}"
            )
        if a.shape != shape:
            raise ValueError(
                f"{op}: {name} must have the output's shape {shape} (no broadcasting), "
                f"got {tuple(a.shape)}"
            )
        if name == "out" and np.may_share_memory(a, x4):
            raise ValueError(f"{op}: out must not overlap the input")
        return a

    def __repr__(self) -> str:
        return f"Conv2dPlan({self.params}, algorithm={self.algorithm.name!r})"


def plan_conv2d(weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, input_shape,
                algo="auto", activation=None) -> Conv2dPlan:  # fmt: skip
    """Make a :class:`Conv2dPlan` (same arguments as ``conv2d``, plus the input shape)."""
    return Conv2dPlan(
        weight, bias, stride, padding, dilation, groups,
        input_shape=input_shape, algo=algo, activation=activation,
    )  # fmt: skip
