"""Activation modules with ``torch.nn``'s names: ``ReLU``, ``GELU``, ``Softmax``, ...

Each wraps the function of the same name in :mod:`cnnperf.nn.functional`; ``inplace`` flags
are accepted for compatibility (the result is always a new Tensor).

>>> from cnnperf import nn
>>> act = nn.LeakyReLU(0.25)
>>> act(np.array([-1.0, 1.0], np.float32)).data.tolist(), act
([-0.25, 1.0], LeakyReLU(negative_slope=0.25))
"""

from __future__ import annotations

from typing import Any

from ..autograd.tensor import Tensor
from . import functional as F
from .module import Module

__all__ = [
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "ELU",
    "Hardtanh",
    "Sigmoid",
    "Hardsigmoid",
    "Tanh",
    "GELU",
    "SiLU",
    "Hardswish",
    "Softmax",
    "LogSoftmax",
]


class _Inplace(Module):
    """An activation with PyTorch's (ignored) ``inplace`` flag."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = bool(inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class ReLU(_Inplace):
    """``max(x, 0)``, as ``torch.nn.ReLU``.

    Example:
        >>> ReLU()(np.array([-1.0, 2.0])).data.tolist()
        [0.0, 2.0]
    """

    def forward(self, input: Any) -> Tensor:
        """Apply the activation."""
        return F.relu(input)


class ReLU6(_Inplace):
    """``min(max(x, 0), 6)``, as ``torch.nn.ReLU6``.

    Example:
        >>> ReLU6()(np.array([-1.0, 8.0])).data.tolist()
        [0.0, 6.0]
    """

    def forward(self, input: Any) -> Tensor:
        """Apply the activation."""
        return F.relu6(input)


class LeakyReLU(Module):
    """``x`` for ``x > 0``, else ``negative_slope * x``, as ``torch.nn.LeakyReLU``.

    Example:
        >>> LeakyReLU(0.5)(np.array([-2.0])).data.tolist()
        [-1.0]
    """

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = bool(inplace)

    def forward(self, input: Any) -> Tensor:
        """Apply the activation."""
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class ELU(Module):
    """``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``, as ``torch.nn.ELU``.

    Example:
        >>> ELU()(np.array([1.0])).data.tolist()
        [1.0]
    """

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha = alpha
        self.inplace = bool(inplace)

    def forward(self, input: Any) -> Tensor:
        """Apply the activation."""
        return F.elu(input, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class Hardtanh(Module):
    """``clip(x, min_val, max_val)``, as ``torch.nn.Hardtanh``.

    Example:
        >>> Hardtanh()(np.array([-2.0, 0.5])).data.tolist()
        [-1.0, 0.5]
    """

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__()
        if max_val <= min_val:
            raise ValueError(
                f"Hardtanh: max_val must be greater than min_val, got min_val={min_val}, "
                f"max_val={max_val}"
            )
        self.min_val = min_val
        self.max_val = max_val
        self.inplace = bool(inplace)

    def forward(self, input: Any) -> Tensor:
        """Apply the activation."""
        return F.hardtanh(input, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        extra = ", inplace=True" if self.inplace else ""
        return f"min_val={self.min_val}, max_val={self.max_val}{extra}"


class Sigmoid(Module):
    """``1 / (1 + exp(-x))``, as ``torch.nn.Sigmoid``.

    Example:
        >>> Sigmoid()(np.array([0.0])).data.tolist()
        [0.5]
    """

    def forward(self, input: Any) -> Tensor:
        """Apply the activation."""
        return F.sigmoid(input)


class Hardsigmoid(_Inplace):
    """``clip(x / 6 + 1/2, 0, 1)``, as ``torch.nn.Hardsigmoid``.

    Example:
        >>> Hardsigmoid()(np.array([0.0])).data.tolist()
        [0.5]
    """

    def forward(self, input: Any) -> Tensor:
        """Apply the activation."""
        return F.hardsigmoid(input)

    def extra_repr(self) -> str:
        return ""


class Tanh(Module):
    """Hyperbolic tangent, as ``torch.nn.Tanh``.

    Example:
        >>> Tanh()(np.array([0.0])).data.tolist()
        [0.0]
    """

    def forward(self, input: Any) -> Tensor:
        """Apply the activation."""
        return F.tanh(input)


class GELU(Module):
    """``x * Phi(x)``, or the tanh approximation with ``approximate="tanh"``, as
    ``torch.nn.GELU``.

    Example:
        >>> GELU(approximate="tanh")
        GELU(approximate='tanh')
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input: Any) -> Tensor:
        """Apply the activation."""
        return F.gelu(input, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(_Inplace):
    """``x * sigmoid(x)`` (swish), as ``torch.nn.SiLU``.

    Example:
        >>> SiLU()(np.array([0.0])).data.tolist()
        [0.0]
    """

    def forward(self, input: Any) -> Tensor:
        """Apply the activation."""
        return F.silu(input)


class Hardswish(_Inplace):
    """``x * relu6(x + 3) / 6``, as ``torch.nn.Hardswish``.

    Example:
        >>> Hardswish()(np.array([-3.0, 3.0])).data.tolist()
        [-0.0, 3.0]
    """

    def forward(self, input: Any) -> Tensor:
        """Apply the activation."""
        return F.hardswish(input)

    def extra_repr(self) -> str:
        return ""


class Softmax(Module):
    """Softmax along ``dim``, as ``torch.nn.Softmax`` (``dim=None``: PyTorch's legacy choice,
    with a deprecation warning).

    Example:
        >>> Softmax(dim=1)(np.zeros((1, 2))).data.tolist()
        [[0.5, 0.5]]
    """

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: Any) -> Tensor:
        """Apply the softmax."""
        return F.softmax(input, self.dim, _stacklevel=5)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """Log-softmax along ``dim``, as ``torch.nn.LogSoftmax``.

    Example:
        >>> LogSoftmax(dim=0)(np.zeros(1)).data.tolist()
        [0.0]
    """

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: Any) -> Tensor:
        """Apply the log-softmax."""
        return F.log_softmax(input, self.dim, _stacklevel=5)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
