"""Convolution layers: ``Conv2d`` and ``ConvTranspose2d``, with PyTorch's arguments and init.

Weights are (c_out, c_in/groups, kh, kw) for ``Conv2d`` and (c_in, c_out/groups, kh, kw) for
``ConvTranspose2d``; both start from PyTorch's default: ``kaiming_uniform_(a=sqrt(5))``, that is
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and a bias from the same range.

>>> from cnnperf import nn
>>> conv = nn.Conv2d(3, 8, 3, padding=1)
>>> conv(np.ones((2, 3, 5, 5), np.float32)).shape, conv
((2, 8, 5, 5), Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import shapes
from ..autograd import functional as AF
from ..autograd.tensor import Tensor, as_tensor
from . import init
from ._common import check_device, pair, positive_int, resolve_dtype
from .module import Module
from .parameter import Parameter

__all__ = ["Conv2d", "ConvTranspose2d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvNd(Module):
    """Shared settings, parameters, init and ``repr`` of the 2-D convolutions."""

    transposed = False

    def __init__(
        self,
        layer: str,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any,
        padding: Any,
        dilation: Any,
        groups: int,
        bias: bool,
        padding_mode: str,
        output_padding: Any,
        device: Any,
        dtype: Any,
        generator: init.GeneratorLike,
    ) -> None:
        super().__init__()
        check_device(device, layer)
        dt = resolve_dtype(dtype, layer)
        self.in_channels = positive_int(in_channels, "in_channels", layer)
        self.out_channels = positive_int(out_channels, "out_channels", layer)
        self.groups = positive_int(groups, "groups", layer)
        if in_channels % groups:
            raise ValueError(
                f"{layer}: in_channels must be divisible by groups, got in_channels="
                f"{in_channels} and groups={groups}"
            )
        if out_channels % groups:
            raise ValueError(
                f"{layer}: out_channels must be divisible by groups, got out_channels="
                f"{out_channels} and groups={groups}"
            )
        self.kernel_size = pair(kernel_size, "kernel_size", layer)
        self.stride = pair(stride, "stride", layer)
        self.dilation = pair(dilation, "dilation", layer)
        self.output_padding = pair(output_padding, "output_padding", layer)
        for name in ("kernel_size", "stride", "dilation"):
            if min(getattr(self, name)) <= 0:
                raise ValueError(f"{layer}: {name} must be positive, got {getattr(self, name)}")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"{layer}: invalid padding string {padding!r}, should be one of "
                    f"('same', 'valid')"
                )
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(
                    f"{layer}: padding='same' is not supported for strided convolutions "
                    f"(stride={self.stride})"
                )
            self.padding: tuple[int, int] | str = padding
        else:
            self.padding = pair(padding, "padding", layer)
            if min(self.padding) < 0:
                raise ValueError(f"{layer}: padding must be non-negative, got {self.padding}")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(
                f"{layer}: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}"
            )
        if padding_mode == "circular":
            raise NotImplementedError(f"{layer}: padding_mode='circular' is not implemented")
        self.padding_mode = padding_mode
        kh, kw = self.kernel_size
        if self.transposed:
            shape = (self.in_channels, self.out_channels // self.groups, kh, kw)
        else:
            shape = (self.out_channels, self.in_channels // self.groups, kh, kw)
        self.weight = Parameter(np.empty(shape, dt))
        if bias:
            self.bias = Parameter(np.empty(self.out_channels, dt))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: init.GeneratorLike = None) -> None:
        """Redraw the weight (``kaiming_uniform_(a=sqrt(5))``) and the bias
        (U(-1/sqrt(fan_in), 1/sqrt(fan_in))), as PyTorch's ``reset_parameters``.

        Args:
            generator: a NumPy Generator, an int seed, or None for the global generator
                (:func:`cnnperf.autograd.manual_seed`).
        """
        gen = init._generator(generator, type(self).__name__)
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=gen)
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound, generator=gen)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        s += f", stride={self.stride}"
        pad = self.padding
        if isinstance(pad, str) or pad != (0, 0):
            s += f", padding={pad}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv2d(_ConvNd):
    """2-D convolution over (n, c_in, h, w) inputs, as ``torch.nn.Conv2d``.

    Args:
        in_channels, out_channels: c_in and c_out.
        kernel_size, stride, dilation: an int or a pair.
        padding: an int, a pair, ``"same"`` or ``"valid"``.
        groups: c_in and c_out are split into this many independent groups.
        bias: add a learnable (c_out,) bias.
        padding_mode: ``"zeros"``, ``"reflect"`` or ``"replicate"`` (``"circular"`` is not
            implemented).
        device: None or ``"cpu"``.
        dtype: float32 (default) or float64.
        generator: random source of the initial weights (a NumPy Generator, an int seed or None
            for the global one); a cnnperf extension, keyword only.

    Shape:
        (n, c_in, h, w) -> (n, c_out, oh, ow),
        ``oh = floor((h + 2*ph - dh*(kh-1) - 1) / sh) + 1``.

    Example:
        >>> conv = Conv2d(4, 6, 3, stride=2, groups=2, bias=False)
        >>> conv.weight.shape, conv(np.ones((1, 4, 7, 7), np.float32)).shape
        ((6, 2, 3, 3), (1, 6, 3, 3))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        generator: init.GeneratorLike = None,
    ) -> None:
        super().__init__(
            "Conv2d",
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            0,
            device,
            dtype,
            generator,
        )

    def _explicit_padding(self) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) for ``F.pad`` when the padding mode is not zeros."""
        top, bottom, left, right = shapes.normalize_padding(
            self.padding, self.kernel_size, self.dilation, self.stride
        )
        return left, right, top, bottom

    def forward(self, input: Any) -> Tensor:
        """Convolve ``input`` with the weight (and add the bias)."""
        if self.padding_mode != "zeros":
            x = AF.pad(input, self._explicit_padding(), mode=self.padding_mode)
            return AF.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return AF.conv2d(
            input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class ConvTranspose2d(_ConvNd):
    """2-D transposed convolution (the gradient of ``Conv2d`` with respect to its input), as
    ``torch.nn.ConvTranspose2d``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, groups, bias, dilation: as
            PyTorch (``padding`` an int or a pair: it removes rows/columns of the output).
        output_padding: extra rows/columns on the bottom/right of the output.
        padding_mode: only ``"zeros"``.
        device, dtype, generator: as :class:`Conv2d`.

    Shape:
        (n, c_in, h, w) -> (n, c_out, H, W),
        ``H = (h-1)*sh - 2*ph + dh*(kh-1) + output_padding_h + 1``.

    Example:
        >>> up = ConvTranspose2d(4, 2, 2, stride=2)
        >>> up.weight.shape, up(np.ones((1, 4, 3, 3), np.float32)).shape
        ((4, 2, 2, 2), (1, 2, 6, 6))
    """

    transposed = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        output_padding: int | tuple[int, int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | tuple[int, int] = 1,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        generator: init.GeneratorLike = None,
    ) -> None:
        if padding_mode != "zeros":
            raise ValueError(
                f"Only 'zeros' padding mode is supported for ConvTranspose2d, got {padding_mode!r}"
            )
        if isinstance(padding, str):
            raise ValueError(f"ConvTranspose2d: padding must be an int or a pair, got {padding!r}")
        super().__init__(
            "ConvTranspose2d",
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            output_padding,
            device,
            dtype,
            generator,
        )

    def _output_padding(self, x: Tensor, output_size: Sequence[int] | None) -> tuple[int, int]:
        if output_size is None:
            return self.output_padding
        size = [int(s) for s in output_size]
        if len(size) == x.ndim:
            size = size[-2:]
        if len(size) != 2:
            raise ValueError(
                f"ConvTranspose2d: for {x.ndim}D input, output_size must have 2 or {x.ndim} "
                f"elements (got {len(size)})"
            )
        mins = [
            (x.shape[d - 2] - 1) * self.stride[d]
            - 2 * self.padding[d]  # type: ignore[index]
            + self.dilation[d] * (self.kernel_size[d] - 1)
            + 1
            for d in range(2)
        ]
        maxs = [mins[d] + self.stride[d] - 1 for d in range(2)]
        if any(not mins[d] <= size[d] <= maxs[d] for d in range(2)):
            raise ValueError(
                f"ConvTranspose2d: requested an output size of {size}, but valid sizes range "
                f"from {mins} to {maxs} (for an input of {x.shape[-2:]})"
            )
        return size[0] - mins[0], size[1] - mins[1]

    def forward(self, input: Any, output_size: Sequence[int] | None = None) -> Tensor:
        """Transposed-convolve ``input``; ``output_size`` picks the output padding."""
        x = as_tensor(input, "input", "ConvTranspose2d")
        return AF.conv_transpose2d(
            x,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self._output_padding(x, output_size),
            self.groups,
            self.dilation,
        )
