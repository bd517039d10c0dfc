"""Pooling layers: ``MaxPool2d``, ``AvgPool2d`` and ``AdaptiveAvgPool2d`` (no parameters).

>>> from cnnperf import nn
>>> pool = nn.MaxPool2d(2)
>>> pool(np.ones((1, 3, 8, 8), np.float32)).shape, pool
((1, 3, 4, 4), MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import functional as AF
from ..autograd.tensor import Tensor, as_tensor
from ._common import pair
from .module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


class MaxPool2d(Module):
    """2-D max pooling, as ``torch.nn.MaxPool2d``.

    Args:
        kernel_size, stride, padding, dilation: an int or a pair; ``stride`` defaults to
            ``kernel_size``.
        return_indices: also return the argmax indices (an int64 ndarray, flat ``ih*w + iw``).
        ceil_mode: round the output size up.

    Shape:
        (n, c, h, w) -> (n, c, oh, ow), ``oh = floor_or_ceil((h + 2*ph - dh*(kh-1) - 1)/sh) + 1``.

    Example:
        >>> MaxPool2d(3, stride=2, padding=1)(np.ones((1, 1, 7, 7), np.float32)).shape
        (1, 1, 4, 4)
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        stride = kernel_size if stride is None else stride
        for name, value in (("kernel_size", kernel_size), ("stride", stride)):
            pair(value, name, "MaxPool2d")
        pair(padding, "padding", "MaxPool2d")
        pair(dilation, "dilation", "MaxPool2d")
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.return_indices = bool(return_indices)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, input: Any) -> Tensor | tuple[Tensor, np.ndarray]:
        """Max over each window (and the indices with ``return_indices``)."""
        return AF.max_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            self.return_indices,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class AvgPool2d(Module):
    """2-D average pooling, as ``torch.nn.AvgPool2d``.

    Args:
        kernel_size, stride, padding: an int or a pair; ``stride`` defaults to ``kernel_size``.
        ceil_mode: round the output size up.
        count_include_pad: count the zero padding in the divisor.
        divisor_override: divide by this instead of the window size.

    Shape:
        (n, c, h, w) -> (n, c, oh, ow), ``oh = floor_or_ceil((h + 2*ph - kh) / sh) + 1``.

    Example:
        >>> AvgPool2d(2)(np.ones((1, 1, 4, 4), np.float32)).data.sum()
        np.float32(4.0)
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        stride = kernel_size if stride is None else stride
        for name, value in (("kernel_size", kernel_size), ("stride", stride), ("padding", padding)):
            pair(value, name, "AvgPool2d")
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = divisor_override

    def forward(self, input: Any) -> Tensor:
        """Mean over each window."""
        return AF.avg_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """2-D adaptive average pooling to a fixed output size, as ``torch.nn.AdaptiveAvgPool2d``.

    Args:
        output_size: an int, or a pair whose entries may be None (keep that input size).

    Shape:
        (n, c, h, w) -> (n, c, oh, ow).

    Example:
        >>> AdaptiveAvgPool2d((1, None))(np.ones((2, 3, 5, 7), np.float32)).shape
        (2, 3, 1, 7)
    """

    def __init__(self, output_size: int | tuple[int | None, int | None]) -> None:
        super().__init__()
        sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * 2
        if len(sizes) != 2 or any(
            s is not None and (not isinstance(s, (int, np.integer)) or s <= 0) for s in sizes
        ):
            raise ValueError(
                f"AdaptiveAvgPool2d: output_size must be a positive int or a pair of positive "
                f"ints or None, got {output_size!r}"
            )
        self.output_size = output_size

    def forward(self, input: Any) -> Tensor:
        """Average over the adaptive windows."""
        x = as_tensor(input, "input", "AdaptiveAvgPool2d")
        size = self.output_size
        if isinstance(size, (tuple, list)):
            if x.ndim < 2:
                raise ValueError(
                    f"AdaptiveAvgPool2d: expected a 3-d or 4-d input, got shape {x.shape}"
                )
            size = tuple(x.shape[-2 + i] if s is None else s for i, s in enumerate(size))
        return AF.adaptive_avg_pool2d(x, size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
