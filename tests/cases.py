"""The shared case tables: every conv / pool algorithm runs on each of these shapes.

They cover odd sizes, batch 1, an empty batch, groups, depthwise, dilation, asymmetric and
"same" padding, ceil_mode, count_include_pad, 1x1, kernels larger than the stride and strides
larger than the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ConvCase:
    id: str
    x: tuple  # (n, c_in, h, w)
    w: tuple  # (c_out, c_in/g, kh, kw)
    kwargs: dict = field(default_factory=dict)  # stride, padding, dilation, groups
    bias: bool = True


CONV_CASES = [
    ConvCase("basic_3x3_p1", (2, 3, 7, 9), (4, 3, 3, 3), dict(padding=1)),
    ConvCase("batch1_odd_k3x5_s2", (1, 5, 11, 13), (6, 5, 3, 5), dict(stride=2, padding=(1, 2))),
    ConvCase("groups2", (2, 4, 8, 8), (6, 2, 3, 3), dict(padding=1, groups=2)),
    ConvCase("depthwise", (2, 6, 9, 9), (6, 1, 3, 3), dict(padding=1, groups=6)),
    ConvCase("depthwise_mult2_s2", (1, 4, 10, 9), (8, 1, 3, 3), dict(stride=2, groups=4)),
    # stride-1 "same" padding: the flat-run depthwise kernel, whose row-end columns would read
    # the neighbouring rows but for per-tap-column masked copies: a 5x5 kernel on a plane 4
    # wide (every column a row-end one), planes 1 wide, a 7x7 kernel, a 3x5 kernel
    ConvCase("depthwise_same_k5_w4", (1, 3, 6, 4), (3, 1, 5, 5), dict(padding=2, groups=3)),
    ConvCase("depthwise_same_w1_batch3", (3, 2, 5, 1), (2, 1, 3, 3), dict(padding=1, groups=2)),
    ConvCase("depthwise_same_k7", (2, 4, 8, 9), (4, 1, 7, 7), dict(padding=3, groups=4)),
    ConvCase("depthwise_same_k3x5", (2, 3, 7, 6), (3, 1, 3, 5), dict(padding=(1, 2), groups=3)),
    # 3x3 stride 2, padding 1: the flat-run kernels, for even widths (any size; odd heights,
    # a plane of 1x2) and for odd widths with outputs > 64 px (rows up to
    # S2K3_INDEXED_MAX_WIDTH wide split element by element, wider ones by slices)
    ConvCase(
        "depthwise_s2k3_even_odd_h",
        (3, 4, 7, 10),
        (4, 1, 3, 3),
        dict(stride=2, padding=1, groups=4),
    ),
    ConvCase(
        "depthwise_s2k3_even_1x2", (2, 3, 1, 2), (3, 1, 3, 3), dict(stride=2, padding=1, groups=3)
    ),
    ConvCase(
        "depthwise_s2k3_odd", (2, 3, 19, 17), (3, 1, 3, 3), dict(stride=2, padding=1, groups=3)
    ),
    ConvCase(
        "depthwise_s2k3_even", (1, 5, 18, 16), (5, 1, 3, 3), dict(stride=2, padding=1, groups=5)
    ),
    ConvCase(
        "depthwise_s2k3_wide_odd", (2, 3, 5, 45), (3, 1, 3, 3), dict(stride=2, padding=1, groups=3)
    ),
    ConvCase(
        "depthwise_s2k3_wide_even", (1, 2, 6, 40), (2, 1, 3, 3), dict(stride=2, padding=1, groups=2)
    ),
    # 70 channels: one full 64-channel block of the channels-last depthwise kernel and a
    # narrower one; stride 2 with odd padding splits columns into phases starting at phase 1
    ConvCase(
        "depthwise_70ch_s2", (2, 70, 9, 8), (70, 1, 3, 3), dict(stride=2, padding=1, groups=70)
    ),
    # a batch of output planes above the channels-last limit: one task per channel for all
    # images, planes laid end to end
    ConvCase(
        "depthwise_batch3_large_plane",
        (3, 5, 30, 29),
        (5, 1, 3, 3),
        dict(stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=5),
    ),
    # an output plane above the channels-last limit (stride-phase kernel), asymmetric padding
    ConvCase(
        "depthwise_s2_large_plane",
        (1, 3, 31, 34),
        (3, 1, 3, 3),
        dict(stride=2, padding=((1, 0), (1, 2)), groups=3),
    ),
    ConvCase("dilation2", (1, 3, 12, 10), (4, 3, 3, 3), dict(padding=2, dilation=2)),
    # row stride 2, column stride 1, column dilation 2 on 2 channels (the direct weight gradient)
    ConvCase(
        "rows_s2_dil_cols2",
        (2, 2, 9, 8),
        (3, 2, 3, 3),
        dict(stride=(2, 1), padding=1, dilation=(1, 2)),
    ),
    ConvCase("dilation_2x3", (2, 2, 11, 12), (3, 2, 2, 3), dict(dilation=(2, 3), padding=(1, 0))),
    ConvCase("asym_padding", (2, 3, 6, 7), (2, 3, 3, 3), dict(padding=((1, 2), (0, 3)))),
    ConvCase("same_even_kernel", (1, 3, 8, 7), (4, 3, 4, 4), dict(padding="same")),
    ConvCase("same_dilated", (1, 2, 9, 9), (3, 2, 3, 3), dict(padding="same", dilation=2)),
    ConvCase("valid", (2, 3, 6, 6), (5, 3, 3, 3), dict(padding="valid"), bias=False),
    ConvCase("pointwise", (2, 8, 5, 5), (4, 8, 1, 1), {}),
    ConvCase("pointwise_s2", (1, 8, 7, 7), (3, 8, 1, 1), dict(stride=2)),
    ConvCase("k7_s2_p3", (1, 3, 15, 15), (4, 3, 7, 7), dict(stride=2, padding=3)),
    ConvCase("kernel_gt_stride", (2, 2, 13, 11), (3, 2, 5, 5), dict(stride=3, padding=1)),
    ConvCase("stride_gt_kernel", (1, 3, 10, 11), (2, 3, 2, 2), dict(stride=3)),
    ConvCase("kernel_eq_padded_input", (2, 3, 3, 4), (2, 3, 5, 6), dict(padding=1)),
    ConvCase("k1x7_k7x1", (1, 4, 9, 10), (4, 4, 1, 7), dict(padding=(0, 3))),
    ConvCase("k7x1", (1, 4, 9, 10), (2, 4, 7, 1), dict(padding=(3, 0), stride=(2, 1))),
    # stride 2 with a wide kernel and more right padding than the kernel reaches: the stride-2
    # lowering splits rows into even/odd columns and must size its phase rows for both
    ConvCase(
        "s2_k4_dilated_wide_right_pad",
        (1, 2, 7, 9),
        (3, 2, 3, 4),
        dict(stride=2, dilation=(1, 2), padding=((1, 0), (3, 7))),
    ),
    ConvCase("empty_batch", (0, 3, 7, 7), (4, 3, 3, 3), dict(padding=1)),
    ConvCase(
        "groups3_s2_d2",
        (2, 6, 13, 13),
        (9, 2, 3, 3),
        dict(stride=2, dilation=2, groups=3, padding=2),
    ),
]


@dataclass(frozen=True)
class ConvTransposeCase:
    id: str
    x: tuple  # (n, c_in, h, w)
    w: tuple  # (c_in, c_out/g, kh, kw)
    kwargs: dict = field(default_factory=dict)  # stride, padding, output_padding, groups, dilation
    bias: bool = True


CONV_TRANSPOSE_CASES = [
    ConvTransposeCase("basic", (2, 3, 5, 6), (3, 4, 3, 3), dict(padding=1)),
    ConvTransposeCase(
        "s2_outpad1", (1, 4, 5, 5), (4, 2, 3, 3), dict(stride=2, padding=1, output_padding=1)
    ),
    ConvTransposeCase("k4_s2_p1", (2, 3, 4, 7), (3, 3, 4, 4), dict(stride=2, padding=1)),
    ConvTransposeCase("groups2", (1, 4, 5, 5), (4, 3, 3, 3), dict(groups=2, stride=2)),
    ConvTransposeCase("dilation2", (1, 2, 6, 5), (2, 3, 3, 3), dict(dilation=2, padding=1)),
    ConvTransposeCase(
        "asym_stride_pad",
        (2, 2, 4, 5),
        (2, 2, 3, 2),
        dict(stride=(3, 2), padding=(1, 0), output_padding=(2, 1)),
    ),
    ConvTransposeCase("pointwise", (2, 5, 4, 4), (5, 3, 1, 1), {}, bias=False),
    ConvTransposeCase("empty_batch", (0, 2, 4, 4), (2, 3, 3, 3), dict(stride=2)),
]


@dataclass(frozen=True)
class PoolCase:
    id: str
    x: tuple  # (n, c, h, w)
    kwargs: dict  # kernel_size, stride, padding, dilation (max only), ceil_mode, ...


MAX_POOL_CASES = [
    PoolCase("k2s2", (2, 3, 8, 8), dict(kernel_size=2, stride=2)),
    PoolCase("k3s2p1", (1, 4, 9, 11), dict(kernel_size=3, stride=2, padding=1)),
    PoolCase("ceil_mode", (2, 2, 8, 9), dict(kernel_size=3, stride=2, ceil_mode=True)),
    PoolCase(
        "ceil_mode_pad", (1, 2, 7, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    ),
    PoolCase(
        "ceil_mode_drop_last",
        (1, 1, 5, 5),
        dict(kernel_size=2, stride=2, padding=1, ceil_mode=True),
    ),
    PoolCase("dilation2", (1, 3, 11, 10), dict(kernel_size=3, stride=1, padding=1, dilation=2)),
    PoolCase("asym_kernel", (2, 2, 9, 12), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1))),
    PoolCase("default_stride", (1, 3, 10, 10), dict(kernel_size=3)),
    PoolCase("stride_gt_kernel", (1, 2, 11, 11), dict(kernel_size=2, stride=3)),
    PoolCase("global", (2, 3, 5, 6), dict(kernel_size=(5, 6))),
    PoolCase("empty_batch", (0, 3, 6, 6), dict(kernel_size=2)),
]

AVG_POOL_CASES = [
    PoolCase("k2s2", (2, 3, 8, 8), dict(kernel_size=2, stride=2)),
    PoolCase("k3s2p1_include_pad", (1, 4, 9, 11), dict(kernel_size=3, stride=2, padding=1)),
    PoolCase(
        "k3s2p1_exclude_pad",
        (1, 4, 9, 11),
        dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    ),
    PoolCase("ceil_mode", (2, 2, 8, 9), dict(kernel_size=3, stride=2, ceil_mode=True)),
    PoolCase(
        "ceil_mode_pad_include",
        (1, 2, 7, 8),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    ),
    PoolCase(
        "ceil_mode_pad_exclude",
        (1, 2, 7, 8),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    ),
    PoolCase(
        "divisor_override",
        (1, 3, 6, 7),
        dict(kernel_size=3, stride=2, padding=1, divisor_override=5),
    ),
    PoolCase("asym_kernel", (2, 2, 9, 12), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1))),
    PoolCase("default_stride", (1, 3, 10, 10), dict(kernel_size=3)),
    PoolCase("empty_batch", (0, 3, 6, 6), dict(kernel_size=2)),
]

# (input shape, output_size) for the adaptive pools; output sizes that do and do not divide.
ADAPTIVE_CASES = [
    ((2, 3, 7, 7), (1, 1)),
    ((1, 4, 10, 9), (3, 4)),
    ((2, 2, 5, 5), (7, 6)),  # output larger than input: windows overlap
    ((1, 3, 8, 8), (4, None)),  # None keeps the input size
    ((0, 2, 4, 4), 2),
]
