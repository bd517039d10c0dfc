"""Basic layers: ``Linear``, ``Identity``, ``Flatten`` and ``Dropout``.

>>> from cnnperf import nn
>>> fc = nn.Linear(8, 3)
>>> fc(np.ones((2, 8), np.float32)).shape, fc
((2, 3), Linear(in_features=8, out_features=3, bias=True))
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..autograd import functional as AF
from ..autograd.tensor import Tensor, as_tensor
from . import init
from ._common import check_device, positive_int, resolve_dtype
from .module import Module
from .parameter import Parameter

__all__ = ["Linear", "Identity", "Flatten", "Dropout"]


class Linear(Module):
    """Affine map of the last dimension, ``y = x @ weight.T + bias``, as ``torch.nn.Linear``.

    The weight starts from ``kaiming_uniform_(a=sqrt(5))`` (U(-1/sqrt(in), 1/sqrt(in))) and
    the bias from the same range, as PyTorch.

    Args:
        in_features, out_features: sizes of the last dimension of the input and the output.
        bias: learn an additive (out_features,) bias.
        device, dtype: None/"cpu"; float32 (default) or float64.
        generator: random source of the initial weights (a NumPy Generator, an int seed, or
            None for :func:`cnnperf.autograd.manual_seed`'s); a cnnperf extension.

    Shape:
        (*, in_features) -> (*, out_features); weight (out_features, in_features).

    Example:
        >>> Linear(4, 2, bias=False).weight.shape
        (2, 4)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        generator: init.GeneratorLike = None,
    ) -> None:
        super().__init__()
        check_device(device, "Linear")
        dt = resolve_dtype(dtype, "Linear")
        self.in_features = positive_int(in_features, "in_features", "Linear")
        self.out_features = positive_int(out_features, "out_features", "Linear")
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dt))
        if bias:
            self.bias = Parameter(np.empty(self.out_features, dt))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: init.GeneratorLike = None) -> None:
        """Redraw the weight and bias with PyTorch's default distributions."""
        gen = init._generator(generator, "Linear")
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=gen)
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound, generator=gen)

    def forward(self, input: Any) -> Tensor:
        """``input @ weight.T + bias``."""
        return AF.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Identity(Module):
    """Returns its input (as a Tensor); any constructor arguments are ignored, as PyTorch.

    Example:
        >>> Identity(54, unused="x")(np.ones(2, np.float32)).data.tolist()
        [1.0, 1.0]
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Any) -> Any:
        """The input itself."""
        return input


class Flatten(Module):
    """Merge dimensions ``start_dim`` to ``end_dim`` into one, as ``torch.nn.Flatten``.

    Shape:
        (n, c, h, w) -> (n, c*h*w) with the defaults.

    Example:
        >>> Flatten()(np.ones((2, 3, 4, 5), np.float32)).shape
        (2, 60)
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = int(start_dim)
        self.end_dim = int(end_dim)

    def forward(self, input: Any) -> Tensor:
        """The flattened input."""
        return AF.flatten(as_tensor(input, "input", "Flatten"), self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """In training mode, zero each element with probability ``p`` and scale the others by
    ``1/(1-p)``; in evaluation mode return the input. As ``torch.nn.Dropout``.

    The mask comes from the global generator of :func:`cnnperf.autograd.manual_seed` (seed it
    for reproducible training). ``inplace`` is accepted for compatibility; the result is always
    a new Tensor.

    Example:
        >>> d = Dropout(0.5)
        >>> sorted(set(d(np.ones(100, np.float32)).data.tolist()))
        [0.0, 2.0]
        >>> d.eval()(np.ones(3, np.float32)).data.tolist()
        [1.0, 1.0, 1.0]
    """

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p!r}")
        self.p = float(p)
        self.inplace = bool(inplace)

    def forward(self, input: Any) -> Tensor:
        """The input with dropped elements (training) or unchanged (evaluation)."""
        return AF.dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
