"""Weight initialisation with ``torch.nn.init``'s formulas, drawn from a NumPy ``Generator``.

Every function fills a Tensor's ``.data`` (or an ndarray) in place and returns it. Random ones
take ``generator``: a ``numpy.random.Generator``, an int seed (a fresh generator per call: the
same seed gives the same values), or None for the global generator of
:func:`cnnperf.autograd.manual_seed`, so that ``manual_seed(0)`` before building a model makes
its initial weights reproducible. The distributions and bounds are PyTorch's; the values
differ (a different random stream).

>>> import numpy as np
>>> from cnnperf.nn import Parameter
>>> w = Parameter(np.empty((4, 3, 3, 3), np.float32))
>>> bound = 1 / np.sqrt(3 * 3 * 3)  # kaiming_uniform_(a=sqrt(5)): PyTorch's default for conv
>>> bool(np.abs(kaiming_uniform_(w, a=5 ** 0.5, generator=0).data).max() <= bound)
True
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, TypeVar

import numpy as np

from ..autograd.random_state import default_generator
from ..autograd.tensor import Tensor

__all__ = [
    "calculate_gain",
    "calculate_fan_in_and_fan_out",
    "uniform_",
    "normal_",
    "constant_",
    "ones_",
    "zeros_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
]

T = TypeVar("T", Tensor, np.ndarray)

GeneratorLike = np.random.Generator | int | None


def _array(tensor: Any, op: str) -> np.ndarray:
    arr = tensor.data if isinstance(tensor, Tensor) else tensor
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{op}: expected a Tensor or an ndarray, got {type(tensor).__name__}")
    if arr.dtype.kind != "f":
        raise ValueError(f"{op}: expected a floating-point tensor, got dtype {arr.dtype}")
    return arr


def _generator(generator: GeneratorLike, op: str) -> np.random.Generator:
    if generator is None:
        return default_generator()
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    raise TypeError(
        f"{op}: generator must be a numpy.random.Generator, an int seed or None, got "
        f"{type(generator).__name__}"
    )


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for ``nonlinearity`` (as ``torch.nn.init.calculate_gain``).

    Example:
        >>> calculate_gain("relu") == 2 ** 0.5, calculate_gain("leaky_relu", 5 ** 0.5) ** 2
        (True, 0.3333333333333333)
    """
    linear = (
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
    )
    if nonlinearity in linear or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, numbers.Real) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def calculate_fan_in_and_fan_out(tensor: Tensor | np.ndarray) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight: ``size(1) * kh * kw`` and ``size(0) * kh * kw``.

    For a convolution (c_out, c_in/g, kh, kw) that is ``(c_in/g*kh*kw, c_out*kh*kw)``; for a
    transposed convolution's (c_in, c_out/g, kh, kw) weight, PyTorch's formula gives
    ``fan_in = c_out/g*kh*kw``.

    Example:
        >>> calculate_fan_in_and_fan_out(np.empty((8, 3, 3, 3), np.float32))
        (27, 72)
    """
    arr = _array(tensor, "calculate_fan_in_and_fan_out")
    if arr.ndim < 2:
        raise ValueError(
            f"Fan in and fan out can not be computed for tensor with fewer than 2 dimensions "
            f"(got shape {arr.shape})"
        )
    receptive = math.prod(arr.shape[2:])
    return arr.shape[1] * receptive, arr.shape[0] * receptive


def _fan(tensor: Any, mode: str) -> int:
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: T, a: float = 0.0, b: float = 1.0, generator: GeneratorLike = None) -> T:
    """Fill with values drawn from U(a, b).

    Example:
        >>> x = uniform_(np.empty(100, np.float32), -1.0, 1.0, generator=0)
        >>> bool(x.min() >= -1 and x.max() < 1)
        True
    """
    arr = _array(tensor, "uniform_")
    if not a <= b:
        raise ValueError(f"uniform_: expects a <= b, got a={a} and b={b}")
    arr[...] = _generator(generator, "uniform_").uniform(a, b, arr.shape)
    return tensor


def normal_(tensor: T, mean: float = 0.0, std: float = 1.0, generator: GeneratorLike = None) -> T:
    """Fill with values drawn from N(mean, std**2).

    Example:
        >>> round(float(normal_(np.empty(10000), 0.0, 2.0, generator=0).std()), 1)
        2.0
    """
    arr = _array(tensor, "normal_")
    if std < 0:
        raise ValueError(f"normal_: expects std >= 0.0, got std={std}")
    arr[...] = _generator(generator, "normal_").normal(mean, std, arr.shape)
    return tensor


def constant_(tensor: T, val: float) -> T:
    """Fill with ``val``.

    Example:
        >>> constant_(np.empty(2, np.float32), 0.5).tolist()
        [0.5, 0.5]
    """
    _array(tensor, "constant_")[...] = val
    return tensor


def ones_(tensor: T) -> T:
    """Fill with ones.

    Example:
        >>> ones_(np.empty(2, np.float32)).tolist()
        [1.0, 1.0]
    """
    return constant_(tensor, 1.0)


def zeros_(tensor: T) -> T:
    """Fill with zeros.

    Example:
        >>> zeros_(np.empty(2, np.float32)).tolist()
        [0.0, 0.0]
    """
    return constant_(tensor, 0.0)


def xavier_uniform_(tensor: T, gain: float = 1.0, generator: GeneratorLike = None) -> T:
    """Glorot uniform: U(-a, a), ``a = gain * sqrt(6 / (fan_in + fan_out))``.

    Example:
        >>> w = xavier_uniform_(np.empty((30, 20), np.float32), generator=0)
        >>> bool(np.abs(w).max() <= np.sqrt(6 / 50))
        True
    """
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    a = math.sqrt(3.0) * gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor: T, gain: float = 1.0, generator: GeneratorLike = None) -> T:
    """Glorot normal: N(0, std**2), ``std = gain * sqrt(2 / (fan_in + fan_out))``.

    Example:
        >>> xavier_normal_(np.empty((3, 2), np.float32), generator=0).shape
        (3, 2)
    """
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def _kaiming_std(tensor: Any, a: float, mode: str, nonlinearity: str, op: str) -> float | None:
    if 0 in _array(tensor, op).shape:
        warnings.warn(f"{op}: initializing a zero-element tensor is a no-op", stacklevel=3)
        return None
    return calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))


def kaiming_uniform_(
    tensor: T,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: GeneratorLike = None,
) -> T:
    """He uniform: U(-bound, bound), ``bound = gain * sqrt(3 / fan)`` (as PyTorch).

    With ``a=sqrt(5)`` (PyTorch's default for Conv2d and Linear weights) the bound is
    ``1 / sqrt(fan_in)``.

    Example:
        >>> w = kaiming_uniform_(np.empty((16, 8), np.float32), mode="fan_in", generator=0)
        >>> bool(np.abs(w).max() <= np.sqrt(2) * np.sqrt(3 / 8))
        True
    """
    std = _kaiming_std(tensor, a, mode, nonlinearity, "kaiming_uniform_")
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(
    tensor: T,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: GeneratorLike = None,
) -> T:
    """He normal: N(0, std**2), ``std = gain / sqrt(fan)`` (as PyTorch).

    Example:
        >>> kaiming_normal_(np.empty((4, 2, 3, 3), np.float32), generator=0).shape
        (4, 2, 3, 3)
    """
    std = _kaiming_std(tensor, a, mode, nonlinearity, "kaiming_normal_")
    if std is None:
        return tensor
    return normal_(tensor, 0.0, std, generator)
