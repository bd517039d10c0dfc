"""Argument normalisation shared by the layer modules (pairs, dtypes, devices, counts)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ..autograd.tensor import FLOAT_DTYPES

__all__ = ["pair", "resolve_dtype", "check_device", "positive_int"]


def pair(value: Any, name: str, layer: str) -> tuple[int, int]:
    """``value`` as a pair of ints (an int is repeated), as PyTorch's ``_pair``.

    Example:
        >>> pair(3, "kernel_size", "Conv2d"), pair((1, 2), "stride", "Conv2d")
        ((3, 3), (1, 2))
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value), int(value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise ValueError(f"{layer}: {name} must be an int or a pair of ints, got {value!r}")


def positive_int(value: Any, name: str, layer: str) -> int:
    """``value`` as an int > 0, or a ValueError naming it.

    Example:
        >>> positive_int(4, "in_features", "Linear")
        4
    """
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {value!r}")
    return int(value)


def resolve_dtype(dtype: Any, layer: str) -> np.dtype:
    """The parameter dtype: float32 by default (as PyTorch), or float64.

    Example:
        >>> resolve_dtype(None, "Linear"), resolve_dtype("float64", "Linear")
        (dtype('float32'), dtype('float64'))
    """
    dt = np.dtype(np.float32 if dtype is None else dtype)
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"{layer}: dtype must be float32 or float64, got {dt}")
    return dt


def check_device(device: Any, layer: str) -> None:
    """Accept PyTorch's ``device`` argument when it names the CPU (cnnperf runs only there).

    Example:
        >>> check_device("cpu", "Linear")
    """
    if device is not None and str(device) != "cpu":
        raise ValueError(f"{layer}: cnnperf runs on the CPU only, got device={device!r}")
