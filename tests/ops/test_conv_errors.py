"""conv2d / conv_transpose2d: bad input raises ValueError naming values and shapes; algorithm
selection (explicit, CNNPERF_ALGO, heuristic)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnnperf import ops
from cnnperf.shapes import ConvParams

X = np.zeros((1, 4, 9, 9), np.float32)
W = np.zeros((8, 4, 3, 3), np.float32)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(x=np.zeros((4, 9), np.float32)), r"expected input to be 3-D \(c, h, w\) or 4-D"),
        (dict(w=np.zeros((8, 4, 3), np.float32)), r"weight must be 4-D .* got shape \(8, 4, 3\)"),
        (
            dict(w=np.zeros((8, 3, 3, 3), np.float32)),
            r"Given groups=1, weight of shape \(8, 3, 3, 3\), expected input \(1, 4, 9, 9\) "
            r"to have 3 channels, but got 4 channels instead",
        ),
        (dict(groups=3), r"groups=3 must divide the input channels, but input of shape"),
        (
            dict(w=np.zeros((6, 1, 3, 3), np.float32), groups=4),
            r"groups=4 must divide the output channels, but weight of shape \(6, 1, 3, 3\)",
        ),
        (dict(groups=0), r"groups must be a positive int, got 0"),
        (dict(bias=np.zeros(4, np.float32)), r"bias must have shape \(8,\) .* got shape \(4,\)"),
        (dict(stride=0), r"stride must be positive, got 0"),
        (dict(stride=(1, -2)), r"stride must be positive, got \(1, -2\)"),
        (dict(dilation=0), r"dilation must be positive, got 0"),
        (dict(padding=-1), r"padding must be non-negative, got -1"),
        (dict(padding=((0, 1), (-1, 0))), r"padding must be non-negative"),
        (dict(padding="full"), r"padding string must be 'same' or 'valid', got 'full'"),
        (dict(padding="same", stride=2), r"padding='same' is not supported for strided"),
        (dict(padding=(1, 2, 3)), r"padding must be an int or a pair of ints, got \(1, 2, 3\)"),
        (
            dict(x=np.zeros((1, 4, 2, 2), np.float32)),
            r"kernel size \(dilated\) \(3, 3\) is larger than the padded input size \(2, 2\)",
        ),
        (
            dict(x=np.zeros((1, 4, 9, 9), np.int64)),
            r"input must have dtype float32 or float64, "
            r"got int64 with shape \(1, 4, 9, 9\); cast it",
        ),
        (dict(x=np.zeros((1, 4, 9, 9), np.float16)), r"got float16 .*cast it to float32"),
        (
            dict(w=W.astype(np.float64)),
            r"all arrays must have the same dtype, but input is "
            r"float32, weight is float64",
        ),
        (dict(bias=np.zeros(8)), r"all arrays must have the same dtype"),
        (dict(x=[[1.0]]), r"expected input to be 3-D"),
        (dict(x="abc"), r"input must be a NumPy array, got str"),
    ],
)
def test_conv2d_errors(kwargs, message):
    args = dict(x=X, w=W)
    args.update(kwargs)
    x, w = args.pop("x"), args.pop("w")
    with pytest.raises(ValueError, match=message):
        ops.conv2d(x, w, **args)


def test_conv2d_backward_checks_grad_out_shape():
    with pytest.raises(
        ValueError,
        match=r"grad_out has shape \(1, 8, 9, 9\), but the forward "
        r"output has shape \(1, 8, 7, 7\)",
    ):
        ops.conv2d_backward(np.zeros((1, 8, 9, 9), np.float32), X, W)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(output_padding=2, stride=2),
            r"output_padding \(2, 2\) must be smaller than either "
            r"stride \(2, 2\) or dilation \(1, 1\)",
        ),
        (dict(padding="same"), r"padding must be an int or a pair of ints, got 'same'"),
        (
            dict(w=np.zeros((3, 2, 3, 3), np.float32)),
            r"weight of shape \(3, 2, 3, 3\) expects 3 "
            r"input channels, but input \(1, 4, 5, 5\) has 4",
        ),
        (dict(groups=3), r"groups=3 must divide the input channels"),
        (dict(padding=5), r"non-positive output size"),
        (dict(bias=np.zeros(3, np.float32)), r"bias must have shape \(2,\)"),
    ],
)
def test_conv_transpose2d_errors(kwargs, message):
    args = dict(x=np.zeros((1, 4, 5, 5), np.float32), w=np.zeros((4, 2, 3, 3), np.float32))
    args.update(kwargs)
    x, w = args.pop("x"), args.pop("w")
    with pytest.raises(ValueError, match=message):
        ops.conv_transpose2d(x, w, **args)


def test_unknown_algorithm_is_named():
    names = re.escape(str(sorted(ops.CONV_ALGOS)))
    with pytest.raises(ValueError, match=rf"unknown algo='bogus'; choose 'auto' or one of {names}"):
        ops.conv2d(X, W, algo="bogus")


def test_env_override_forces_algorithm(monkeypatch):
    p = ops.conv_params(X.shape, W.shape, padding=1)
    monkeypatch.setenv("CNNPERF_ALGO", "direct")
    assert ops.select_conv_algo(p).name == "direct"
    assert ops.select_conv_algo(p, "im2col").name == "im2col"  # explicit algo= wins
    monkeypatch.setenv("CNNPERF_ALGO", "bogus")
    with pytest.raises(ValueError, match=r"unknown CNNPERF_ALGO='bogus'"):
        ops.conv2d(X, W)


def test_algorithm_that_does_not_cover_a_case_raises_not_implemented(monkeypatch):
    algo = ops.CONV_ALGOS["direct"]
    monkeypatch.setattr(type(algo), "why_not", lambda self, p: "only tested shapes")
    p = ops.conv_params(X.shape, W.shape)
    with pytest.raises(
        NotImplementedError,
        match=r"algorithm 'direct' does not support .*"
        r"only tested shapes",
    ):
        ops.select_conv_algo(p, "direct")


@pytest.mark.parametrize(
    "params, expected",
    [
        (ConvParams(1, 64, 56, 56, 64, 3, 3, pt=1, pb=1, pl=1, pr=1), "winograd"),  # ResNet 3x3
        (ConvParams(1, 256, 56, 56, 64, 1, 1), "im2col"),  # ResNet-50 1x1: a plain GEMM
        (ConvParams(1, 3, 224, 224, 64, 7, 7, 2, 2, 3, 3, 3, 3), "implicit_gemm"),  # ResNet stem
        (ConvParams(8, 3, 224, 224, 64, 7, 7, 2, 2, 3, 3, 3, 3), "implicit_gemm"),
        (ConvParams(1, 3, 224, 224, 64, 11, 11, 4, 4, 2, 2, 2, 2), "implicit_gemm"),  # AlexNet
        (ConvParams(8, 3, 224, 224, 32, 3, 3, 2, 2, 1, 1, 1, 1), "direct"),  # MobileNet stem
        (ConvParams(1, 3, 224, 224, 32, 3, 3, 2, 2, 1, 1, 1, 1), "implicit_gemm"),
        (ConvParams(1, 3, 224, 224, 64, 3, 3, 1, 1, 1, 1, 1, 1), "implicit_gemm"),  # VGG conv1_1
        (ConvParams(8, 3, 224, 224, 64, 3, 3, 1, 1, 1, 1, 1, 1), "direct"),
        (ConvParams(64, 1, 28, 28, 6, 5, 5), "direct"),  # LeNet conv1 at batch 64
        (ConvParams(64, 6, 12, 12, 16, 5, 5), "direct"),  # LeNet conv2
        (ConvParams(8, 3, 32, 32, 64, 5, 5, pt=2, pb=2, pl=2, pr=2), "implicit_gemm"),
        (ConvParams(1, 16, 112, 112, 96, 1, 1), "implicit_gemm"),  # MobileNetV2 expand, 1x1
        (ConvParams(1, 144, 56, 56, 24, 1, 1), "implicit_gemm"),  # its project
        (ConvParams(8, 144, 56, 56, 24, 1, 1), "im2col"),  # batch 8
        (ConvParams(1, 64, 56, 56, 256, 1, 1), "im2col"),  # wide outputs: ResNet-50's expand
        (ConvParams(1, 64, 56, 56, 128, 1, 1, 2, 2), "implicit_gemm"),  # ResNet-18 downsample
        (ConvParams(8, 128, 28, 28, 256, 1, 1, 2, 2), "implicit_gemm"),
        (ConvParams(1, 128, 28, 28, 256, 1, 1, 2, 2), "im2col"),  # 196 px at batch 1
        (ConvParams(1, 160, 7, 7, 960, 1, 1), "im2col"),  # a longer reduction on 7x7
        (ConvParams(64, 16, 8, 8, 32, 3, 3, 2, 2, 1, 1, 1, 1), "im2col"),  # 4x4 out: side by side
        (ConvParams(1, 1, 8, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1), "direct"),  # digits, batch 1
        (ConvParams(1, 144, 56, 56, 144, 3, 3, 1, 1, 1, 1, 1, 1, g=144), "direct"),  # depthwise
        (ConvParams(8, 32, 112, 112, 32, 3, 3, 1, 1, 1, 1, 1, 1, g=32), "direct"),  # depthwise
    ],
)
def test_auto_selection(params, expected, monkeypatch):
    monkeypatch.delenv("CNNPERF_ALGO", raising=False)
    assert ops.select_conv_algo(params).name == expected


RESNET_512_7 = ConvParams(1, 512, 7, 7, 512, 3, 3, 1, 1, 1, 1, 1, 1)
ALEXNET_CONV2 = ConvParams(8, 64, 27, 27, 192, 5, 5, 1, 1, 2, 2, 2, 2)
ALEXNET_CONV2_B1 = ConvParams(1, 64, 27, 27, 192, 5, 5, 1, 1, 2, 2, 2, 2)
RESNET_512_7_B8 = ConvParams(8, 512, 7, 7, 512, 3, 3, 1, 1, 1, 1, 1, 1)
VGG_512_28_B8 = ConvParams(8, 512, 28, 28, 512, 3, 3, 1, 1, 1, 1, 1, 1)


@pytest.mark.parametrize(
    "params, prepared, expected",
    [
        (RESNET_512_7, False, "im2col"),  # eager: the weight transform would not pay off
        (RESNET_512_7, True, "winograd"),  # a plan, 512 channels: Winograd's blocked GEMMs
        (ConvParams(1, 256, 7, 7, 256, 3, 3, 1, 1, 1, 1, 1, 1), True, "blocked_gemm"),  # 49 px
        (RESNET_512_7_B8, False, "im2col"),  # eager: too few outputs for a big weight
        (RESNET_512_7_B8, True, "winograd"),
        (VGG_512_28_B8, False, "winograd"),
        (ALEXNET_CONV2_B1, False, "im2col"),  # eager 5x5, batch 1: the spectrum does not pay
        (ALEXNET_CONV2, False, "fft"),  # eager 5x5, batch 8: it does
        (ALEXNET_CONV2, True, "fft"),
        (ConvParams(1, 64, 56, 56, 64, 7, 7, 1, 1, 3, 3, 3, 3), False, "fft"),  # 7x7 stride 1
        (ConvParams(1, 32, 14, 14, 64, 1, 1), True, "implicit_gemm"),  # packed once: 196 px
        (ConvParams(1, 32, 14, 14, 64, 1, 1), False, "im2col"),  # eager: packed every call
        (ConvParams(1, 64, 14, 14, 384, 1, 1), True, "im2col"),  # wide outputs
        (ConvParams(1, 256, 56, 56, 64, 1, 1), True, "im2col"),
        # strided plans with >= 64 inputs: the blocked GEMM
        (ConvParams(1, 64, 56, 56, 128, 3, 3, 2, 2, 1, 1, 1, 1), True, "blocked_gemm"),
        (ConvParams(1, 128, 56, 56, 128, 3, 3, 2, 2, 1, 1, 1, 1), True, "blocked_gemm"),
        (ConvParams(1, 128, 56, 56, 128, 3, 3, 2, 2, 1, 1, 1, 1), False, "im2col"),  # eager
        (ConvParams(8, 128, 56, 56, 128, 3, 3, 2, 2, 1, 1, 1, 1), True, "blocked_gemm"),  # b8
        (ConvParams(8, 512, 14, 14, 512, 3, 3, 2, 2, 1, 1, 1, 1), True, "im2col"),  # 14x14 in
        (ConvParams(1, 128, 28, 28, 256, 1, 1, 2, 2), True, "blocked_gemm"),  # 1x1/2, batch 1
        (ConvParams(1, 64, 56, 56, 128, 1, 1, 2, 2), True, "blocked_gemm"),  # 64 in: to 56x56
        (ConvParams(1, 32, 56, 56, 64, 1, 1, 2, 2), True, "implicit_gemm"),  # < 64 inputs
        (ConvParams(8, 128, 28, 28, 256, 1, 1, 2, 2), True, "blocked_gemm"),  # batch 8
        (ConvParams(1, 256, 56, 56, 512, 1, 1, 2, 2), True, "im2col"),  # 56x56 in
        (ConvParams(1, 256, 7, 7, 512, 1, 1, 2, 2), True, "im2col"),  # a 4x4 output
        (ConvParams(1, 16, 8, 8, 32, 3, 3, 1, 1, 1, 1, 1, 1, g=2), True, "implicit_gemm"),
        # RGB stems with kernels over 3x3, plans: the blocked GEMM; 3x3 stems stay
        (ConvParams(1, 3, 224, 224, 64, 7, 7, 2, 2, 3, 3, 3, 3), True, "blocked_gemm"),
        (ConvParams(8, 3, 224, 224, 64, 7, 7, 2, 2, 3, 3, 3, 3), True, "blocked_gemm"),
        (ConvParams(1, 3, 224, 224, 64, 11, 11, 4, 4, 2, 2, 2, 2), True, "blocked_gemm"),
        (ConvParams(1, 3, 224, 224, 32, 3, 3, 2, 2, 1, 1, 1, 1), True, "implicit_gemm"),
        (ConvParams(1, 3, 224, 224, 64, 3, 3, 1, 1, 1, 1, 1, 1), True, "implicit_gemm"),
    ],
)
def test_auto_selection_with_prepared_weights(params, prepared, expected, monkeypatch):
    monkeypatch.delenv("CNNPERF_ALGO", raising=False)
    assert ops.select_conv_algo(params, weight_prepared=prepared).name == expected
