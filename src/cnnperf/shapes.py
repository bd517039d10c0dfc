"""Normalised convolution and pooling parameters and their output-size formulas.

Every public op turns its PyTorch-style arguments (``int | tuple | "same" | "valid"``) into one of
these frozen dataclasses once, at the boundary; kernels only ever see the normalised form.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

__all__ = [
    "ConvParams",
    "PoolParams",
    "conv_output_size",
    "pool_output_size",
    "pair",
    "normalize_padding",
    "adaptive_bounds",
]


def pair(value, name: str) -> tuple[int, int]:
    """``3 -> (3, 3)``, ``(2, 3) -> (2, 3)``; anything else raises ValueError naming ``name``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int) or (hasattr(value, "__index__") and not hasattr(value, "__len__")):
        v = int(value)
        return (v, v)
    try:
        items = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if len(items) == 1:
        items = items * 2
    if len(items) != 2 or not all(
        not isinstance(v, bool) and (isinstance(v, int) or hasattr(v, "__index__")) for v in items
    ):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return (int(items[0]), int(items[1]))


def normalize_padding(
    padding, kernel: tuple[int, int], dilation: tuple[int, int], stride: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Return ``(top, bottom, left, right)`` for the padding forms conv2d accepts.

    Accepted: an int, ``(ph, pw)``, ``((top, bottom), (left, right))``, ``"valid"`` (no padding)
    and ``"same"`` (stride 1 only; an odd total goes to the bottom/right, as in PyTorch).
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode == "same":
            if stride != (1, 1):
                raise ValueError(
                    f"padding='same' is not supported for strided convolutions (stride={stride})"
                )
            th = dilation[0] * (kernel[0] - 1)
            tw = dilation[1] * (kernel[1] - 1)
            return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        raise ValueError(f"padding string must be 'same' or 'valid', got {padding!r}")
    if (
        isinstance(padding, (tuple, list))
        and len(padding) == 2
        and all(isinstance(p, (tuple, list)) for p in padding)
    ):
        (top, bottom), (left, right) = (pair(padding[0], "padding"), pair(padding[1], "padding"))
        pads = (top, bottom, left, right)
    else:
        ph, pw = pair(padding, "padding")
        pads = (ph, ph, pw, pw)
    if any(p < 0 for p in pads):
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return pads


def conv_output_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int) -> int:
    """``floor((size + pad_total - dilation*(kernel-1) - 1) / stride) + 1``."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def pool_output_size(
    size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool
) -> int:
    """PyTorch's pooling output size.

    ``out = floor_or_ceil((size + 2*pad - dilation*(kernel-1) - 1) / stride) + 1``; with
    ``ceil_mode`` the last window must start inside the input or its left padding, otherwise it
    is dropped.
    """
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + pad:
            out -= 1
    else:
        out = span // stride + 1
    return out


@dataclass(frozen=True)
class ConvParams:
    """A normalised 2-D convolution: input (n, c_in, h, w), weight (c_out, c_in/g, kh, kw)."""

    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    kh: int
    kw: int
    sh: int = 1
    sw: int = 1
    pt: int = 0
    pb: int = 0
    pl: int = 0
    pr: int = 0
    dh: int = 1
    dw: int = 1
    g: int = 1

    # cached: the per-call paths of plans and compiled graphs read these several times per
    # call (cached_property writes the instance __dict__, which a frozen dataclass allows)
    @cached_property
    def oh(self) -> int:
        return conv_output_size(self.h, self.kh, self.sh, self.pt + self.pb, self.dh)

    @cached_property
    def ow(self) -> int:
        return conv_output_size(self.w, self.kw, self.sw, self.pl + self.pr, self.dw)

    @cached_property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c_out, self.oh, self.ow)

    @property
    def flops(self) -> int:
        """``2 * n * c_out * (c_in/g) * kh * kw * oh * ow`` multiply-adds counted as two flops."""
        return (
            2 * self.n * self.c_out * (self.c_in // self.g) * self.kh * self.kw * self.oh * self.ow
        )

    @property
    def padded(self) -> bool:
        return (self.pt, self.pb, self.pl, self.pr) != (0, 0, 0, 0)

    def prepadded(self) -> ConvParams:
        """The same convolution seen from its zero-padded input: (h + pt + pb, w + pl + pr),
        no padding, the same output."""
        return replace(
            self, h=self.h + self.pt + self.pb, w=self.w + self.pl + self.pr, pt=0, pb=0, pl=0, pr=0
        )

    @property
    def is_depthwise(self) -> bool:
        return self.g == self.c_in and self.g > 1

    @property
    def is_pointwise(self) -> bool:
        """1x1, stride 1, no padding: the convolution is a plain GEMM."""
        return self.kh == 1 and self.kw == 1 and self.sh == 1 and self.sw == 1 and not self.padded


@dataclass(frozen=True)
class PoolParams:
    """A 2-D pooling window, normalised: input (n, c, h, w), symmetric padding (ph, pw)."""

    n: int
    c: int
    h: int
    w: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int = 0
    pw: int = 0
    dh: int = 1
    dw: int = 1
    ceil_mode: bool = False

    @property
    def oh(self) -> int:
        return pool_output_size(self.h, self.kh, self.sh, self.ph, self.dh, self.ceil_mode)

    @property
    def ow(self) -> int:
        return pool_output_size(self.w, self.kw, self.sw, self.pw, self.dw, self.ceil_mode)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c, self.oh, self.ow)


def adaptive_bounds(in_size: int, out_size: int, index: int) -> tuple[int, int]:
    """PyTorch's adaptive pooling window ``[floor(i*in/out), ceil((i+1)*in/out))``."""
    start = (index * in_size) // out_size
    end = -(-((index + 1) * in_size) // out_size)
    return start, end
