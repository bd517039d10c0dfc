"""2-D convolution and transposed convolution, forward and backward, with PyTorch's semantics.

The forward pass dispatches to one of several algorithms (see :mod:`cnnperf.ops.conv_algos`);
the backward pass reuses the lowering: grad_x is col2im of ``weight^T @ grad_out`` (a
transposed convolution) and grad_weight is ``grad_out @ cols^T`` (a GEMM).
"""

from __future__ import annotations

import numpy as np

from .. import config
from ..shapes import ConvParams, normalize_padding
from . import autotune
from ._validate import (
    as_batched_4d,
    as_float_array,
    check_same_dtype,
    nonnegative_pair,
    positive_pair,
)
from .conv_algos import CONV_ALGOS, GEMM_BATCH_MAX_PIXELS, ConvAlgorithm
from .epilogue import parse_activation

# isort: split
# Algorithm modules register themselves in CONV_ALGOS on import (one line each).
from . import conv_blocked, conv_fft, conv_implicit, conv_winograd  # noqa: E402, F401

__all__ = [
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "select_conv_algo",
    "conv_params",
    "CONV_ALGOS",
]


def _check_groups(groups, op: str) -> int:
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    return int(groups)


def _check_bias(bias, channels: int, dtype, op: str) -> np.ndarray | None:
    if bias is None:
        return None
    bias = as_float_array(bias, "bias", op)
    if bias.shape != (channels,):
        raise ValueError(
            f"{op}: bias must have shape ({channels},) (one value per output channel), "
            f"got shape {tuple(bias.shape)}"
        )
    check_same_dtype(op, input=np.empty(0, dtype), bias=bias)
    return bias


def conv_params(
    x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1, op: str = "conv2d"
) -> ConvParams:
    """Check conv2d arguments against the shapes and return the normalised :class:`ConvParams`.

    Args:
        x_shape: (n, c_in, h, w).
        w_shape: (c_out, c_in/groups, kh, kw).
    """
    groups = _check_groups(groups, op)
    sh, sw = positive_pair(stride, "stride", op)
    dh, dw = positive_pair(dilation, "dilation", op)
    if len(w_shape) != 4:
        raise ValueError(
            f"{op}: weight must be 4-D (c_out, c_in/groups, kh, kw), got shape {tuple(w_shape)}"
        )
    n, c_in, h, w = x_shape
    c_out, cg, kh, kw = w_shape
    if min(c_out, cg, kh, kw) < 1:
        raise ValueError(f"{op}: weight of shape {tuple(w_shape)} has a zero-size dimension")
    if c_in % groups != 0:
        raise ValueError(
            f"{op}: groups={groups} must divide the input channels, "
            f"but input of shape {tuple(x_shape)} has {c_in} channels"
        )
    if c_out % groups != 0:
        raise ValueError(
            f"{op}: groups={groups} must divide the output channels, "
            f"but weight of shape {tuple(w_shape)} has {c_out} output channels"
        )
    if cg * groups != c_in:
        raise ValueError(
            f"{op}: Given groups={groups}, weight of shape {tuple(w_shape)}, expected input "
            f"{tuple(x_shape)} to have {cg * groups} channels, but got {c_in} channels instead"
        )
    try:
        pt, pb, pl, pr = normalize_padding(padding, (kh, kw), (dh, dw), (sh, sw))
    except ValueError as e:
        raise ValueError(f"{op}: {e}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{op}: input of shape {tuple(x_shape)} has an empty spatial dimension")
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if h + pt + pb < ekh or w + pl + pr < ekw:
        raise ValueError(
            f"{op}: kernel size (dilated) ({ekh}, {ekw}) is larger than the padded input size "
            f"({h + pt + pb}, {w + pl + pr}) (input {tuple(x_shape)}, weight {tuple(w_shape)}, "
            f"padding {(pt, pb, pl, pr)}, dilation {(dh, dw)})"
        )
    return ConvParams(n, c_in, h, w, c_out, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, groups)


def select_conv_algo(
    p: ConvParams, algo: str = "auto", dtype="float32", *, weight_prepared: bool = False
) -> ConvAlgorithm:
    """Pick the algorithm for ``p``: explicit ``algo``, then ``CNNPERF_ALGO``, then the tuned
    choice cached for ``p`` and ``dtype`` (tuning it first on a miss when tuning is on, see
    :mod:`cnnperf.ops.autotune`), then a heuristic. ``weight_prepared`` says the weight is
    transformed once for many calls (a plan), which favours the transform-based algorithms.

    An explicitly requested algorithm that does not cover ``p`` raises NotImplementedError
    saying why; ``"auto"`` only ever picks an algorithm that covers ``p``.
    """
    if algo == "auto":
        forced = config.forced_algo()
        if forced is not None and forced != "auto":
            algo = forced
            source = "CNNPERF_ALGO"
        else:
            tuned = autotune.tuned_conv_algo(p, dtype)
            return tuned if tuned is not None else _heuristic(p, weight_prepared)
    else:
        source = "algo"
    if algo not in CONV_ALGOS:
        raise ValueError(
            f"conv2d: unknown {source}={algo!r}; choose 'auto' or one of {sorted(CONV_ALGOS)}"
        )
    chosen = CONV_ALGOS[algo]
    reason = chosen.why_not(p)
    if reason is not None:
        raise NotImplementedError(f"conv2d: algorithm {algo!r} does not support {p}: {reason}")
    return chosen


def _heuristic(p: ConvParams, weight_prepared: bool = False) -> ConvAlgorithm:
    # Depthwise layers: each group's GEMM is (multiplier x kh*kw) @ (kh*kw x oh*ow), too thin for
    # BLAS. Measured on the 2-core development machine (median of 9 interleaved rounds): the
    # direct kernel is 5-6x faster than im2col on MobileNetV2's stride-1 3x3 depthwise layers
    # (144x56x56 at batch 1 and 8, 32x112x112), 1.9x on 960x7x7 and 1.3x at stride 2.
    if p.is_depthwise:
        return CONV_ALGOS["direct"]
    # First layers on RGB input (<= 4 channels per group, kernels up to 3x3) at batch >= 4, or
    # on planes of up to 64 pixels (the digits models): the direct kernel shares each input
    # load among four output channels. Measured (min of interleaved rounds, 2 threads): 3->32
    # 3x3/2 on 224x224 at batch 8 3.1 ms vs im2col 3.6 (plans: implicit_gemm 3.7), 3->64 3x3/1
    # 20.4 vs implicit_gemm 21.0, im2col 28.7.
    small = p.oh * p.ow <= GEMM_BATCH_MAX_PIXELS
    if p.c_in // p.g <= 4 and p.kh * p.kw <= 9 and (p.n >= 4 or small):
        return CONV_ALGOS["direct"]
    # Few channels in and out, many images (LeNet-size layers): im2col pays a lowering, an sgemm
    # and an epilogue per image for little work each. At batch 64 (min of interleaved rounds,
    # 2 threads): 1->6 5x5 on 28x28 direct 0.45 ms vs im2col 3.0, 6->16 5x5 on 12x12 0.95 vs
    # 3.4.
    if p.c_in // p.g <= 8 and p.c_out // p.g <= 16 and p.n >= 4:
        return CONV_ALGOS["direct"]
    # Other first layers (<= 4 channels per group): implicit GEMM, which reads the input in
    # place instead of lowering a (c_in*kh*kw, oh*ow) matrix that BLAS then packs again.
    # Measured with plans (medians of interleaved rounds, 2 threads, relu fused; im2col or
    # direct / implicit_gemm / PyTorch, ms): ResNet's 7x7/2 stem at batch 1 1.93 / 1.54 / 1.59,
    # batch 8 17.2 (eager) / 13.2 / 21.3; AlexNet's 11x11/4 1.31 / 1.21 / 1.56 and 11.1 / 8.8 /
    # 11.9; VGG's 3->64 3x3 at batch 1 2.81 (direct) / 1.77 / 3.24; MobileNetV2's 3->32 3x3/2
    # at batch 1 0.40 / 0.35 / 0.43; 3->64 5x5 on 32x32 at batch 8 (eager) 1.40 / 1.14.
    # Plans of such layers with kernels larger than 3x3 (ResNet's 7x7/2, AlexNet's 11x11/4),
    # ungrouped: the blocked GEMM (ops.conv_blocked), whose 4 x 24 tile reads the 147 or 363
    # terms of each output in place. Medians of 30 interleaved calls, 2 threads, relu fused
    # (blocked_gemm / implicit_gemm): 7x7/2 0.86 at batch 1, 0.92 at batch 8; 11x11/4 0.78 and
    # 0.81. It lost on 3x3 stems (3->64 3x3/1 on 224x224 at batch 1 1.31, 3->32 3x3/2 1.14),
    # where the conversion of a large blocked output to NCHW weighs more against 27 terms.
    # Inside compiled ResNet-18 (medians of 60 interleaved runs against the model compiled
    # before): 0.974-0.979 at batch 1, 0.94-0.98 at batch 8.
    if p.c_in // p.g <= 4 and not small:
        big_kernel = weight_prepared and p.g == 1 and p.kh * p.kw > 9
        return CONV_ALGOS["blocked_gemm" if big_kernel else "implicit_gemm"]
    # A plan at batch 1 on a plane of at most 64 outputs (ResNet's 512x7x7): Winograd's weight,
    # 16/9 or 36/9 times the size, streams from memory for a handful of tiles, while the GEMM
    # kernels read the weight as it is. ResNet-18 at batch 1, compiled, min of 20 interleaved
    # runs: 32.7 ms with Winograd on layer4's three 3x3 convolutions, 30.0 with implicit GEMM
    # (kernel alone: 3.6 vs 2.8 ms each). The blocked GEMM (ops.conv_blocked: 4 pixels x 24
    # channels per micro-kernel, then one conversion to NCHW) beat implicit GEMM on such plans
    # (ungrouped; medians of 40 interleaved calls, relu fused, batch 1, blocked / implicit):
    # ResNet's 512x7x7 0.78, ResNet-50's 512->512 3x3/2 on 14x14 0.83, 32->64 and 16->32 3x3
    # on 8x8 0.85 and 0.94, 64->64 on 4x4 0.78.
    # Since Winograd's per-point GEMMs run on the same blocked micro-kernel (conv_winograd's
    # blocked path), it wins back the 3x3 stride-1 layers of at least 512 channels in and out
    # (ResNet-18's 512x7x7: medians of 30 interleaved calls, 2 threads, 1.83 ms vs 2.16;
    # inside compiled ResNet-18 0.964 and 0.984 of the time, against 1.006 for two identical
    # models) but not smaller ones (256x7x7 0.59 vs 0.52, 32->64 on 8x8 0.15 vs 0.09).
    winograd_small = (
        (p.kh, p.kw, p.sh, p.sw, p.dh, p.dw) == (3, 3, 1, 1, 1, 1)
        and p.g == 1
        and min(p.c_in, p.c_out) >= 512
    )
    if (
        weight_prepared
        and p.n * p.oh * p.ow <= GEMM_BATCH_MAX_PIXELS
        and p.kh * p.kw > 1
        and not winograd_small
    ):
        return CONV_ALGOS["blocked_gemm" if p.g == 1 else "implicit_gemm"]
    # Plans of strided layers with at least 64 input channels, ungrouped: the blocked GEMM reads
    # each tap of the zero-padded input in place, where im2col first copies the strided
    # windows. Medians of 40 interleaved calls, relu fused (blocked_gemm / the algorithm chosen
    # before): 3x3/2 on 56x56 and 28x28 inputs (ResNet-18's 64->128 and 128->256, ResNet-50's
    # 128->128 and 256->256) 0.68-0.75 at batch 1 and 0.61-0.66 at batch 8; 1x1/2 with 128 and
    # 256 inputs 0.68 and 0.72 at batch 1 (with 64 inputs 0.94: left to the rules below). A
    # full `cnnperf bench` run (plan against the eager im2col of the same run) gave 0.77-1.01
    # for those 3x3/2 layers at batch 1 and 8, 0.76-0.78 for the 1x1/2 on 28x28 and 14x14 at
    # batch 1 but 1.05 and 1.11 (two runs) for ResNet-50's 256->512 1x1/2 on 56x56 at batch 1
    # and 1.21 at batch 8, and on 14x14 inputs at batch 8 the blocked GEMM lost (512->512
    # 3x3/2: 1.17). Eager calls pack the weight every time, which
    # made them up to 2x slower than im2col at batch 1 in that run: plans only.
    # Inside compiled ResNet-18 (medians of 40 interleaved runs against the choices before; two
    # identical models compared the same way: 0.99-1.005 at batch 1, 1.022-1.023 at batch 8),
    # the network took 0.966-0.967x the time at batch 1 and 1.017-1.041x at batch 8, so these
    # rules were for batch 1 only. Since the blocked GEMM stores its tiles straight into NCHW
    # (and Winograd's output transform stores rows of 4 pixels), they hold at any batch: plans
    # alone, medians of 8 interleaved calls, blocked_gemm / the choice before, ResNet-18's
    # 3x3/2 on 56x56 and 28x28 0.89 and 0.80 at batch 8, 0.87 and 0.82 at batch 32, its 1x1/2
    # 0.91 / 0.77 / 0.85 at batch 8 and 0.90 / 0.70 / 0.82 at batch 32; compiled ResNet-18 at
    # batch 8 0.96-0.98x the time (two models of each kind in one process, rotating order,
    # medians of 15).
    strided = weight_prepared and p.sh * p.sw > 1 and p.g == 1
    if strided and p.kh * p.kw > 1 and p.c_in >= 64 and p.h * p.w >= 784:
        return CONV_ALGOS["blocked_gemm"]
    # Since it writes NCHW directly and compiled models bind it (Conv2dPlan.bind), the 1x1/2
    # of 64 inputs on 56x56 (ResNet-18's first downsampling) went its way too: 0.190 ms
    # against implicit GEMM's 0.266 and im2col's 0.243 (bound plans, medians of 60 interleaved
    # calls); ResNet-50's 256->512 on 56x56 stays off it (3.5 ms against im2col's 2.3).
    if (
        strided
        and p.kh * p.kw == 1
        and p.c_in >= 64
        and 196 <= p.h * p.w <= (784 if p.c_in >= 128 else 3136)
    ):
        return CONV_ALGOS["blocked_gemm"]
    # 3x3 stride-1 layers with at least 16 channels per group: Winograd. Measured with the weight
    # prepared once (conv_winograd's module docstring): 1.24-2.5x faster than im2col on the
    # ResNet 3x3 layers (64x56x56 .. 512x7x7, batch 1 and 8); it loses on the 3-channel stem
    # (0.54x). Eager calls transform the weight each time, which only paid off with at least
    # 128 output positions per call: 512x7x7 at batch 1 (49) was 1.6x slower than im2col,
    # 256x14x14 (196) and 512x7x7 at batch 8 (392) faster. Since the transformed weight is
    # packed for the blocked GEMMs (conv_winograd: 2.5x the transform's time for 512x512),
    # eager calls need an output position per 256 weights (c_in/g * c_out) as well; without,
    # im2col won (one bench run, eager, ms, Winograd / im2col): 256x14x14 at batch 1 2.80 /
    # 1.88, 512x14x14 at batch 1 10.9 / 6.3, 512x7x7 at batch 8 15.7 / 11.9; with, Winograd
    # won: 256x14x14 at batch 8 8.4 / 13.3, 512x14x14 at batch 8 30.3 / 48.6, 128x28x28 at
    # batch 1 1.31 / 1.80.
    eager_pays = p.n * p.oh * p.ow >= max(128, (p.c_in // p.g) * p.c_out // 256)
    if (
        CONV_ALGOS["winograd"].why_not(p) is None
        and min(p.c_in, p.c_out) // p.g >= 16
        and (weight_prepared or eager_pays)
    ):
        # Eager calls transform the weight each time, and F(4x4)'s transform is 36/16 the size
        # of F(2x2)'s. Four full bench runs (medians, eager, 512x512 weights): 512x7x7 n=8 (32
        # F(4x4) tiles) F(2x2) won every time, 10.7-14.0 ms vs 12.7-15.4; 512x14x14 n=8 (128
        # tiles) F(4x4) won 3 of 4 (by 4-10%); 512x28x28 n=1 (49 tiles) was a tie.
        tiles43 = p.n * -(-p.oh // 4) * -(-p.ow // 4)
        if not weight_prepared and tiles43 * 4096 < (p.c_in // p.g) * p.c_out:
            return CONV_ALGOS["winograd_f23"]
        return CONV_ALGOS["winograd"]
    # Strided 1x1 layers (ResNet downsampling) with a short reduction (c_in/g <= 144), at any
    # batch: im2col first copies the strided pixels, implicit GEMM reads them from their
    # stride phase in place. Three full `cnnperf bench` runs at batch 8 (eager medians,
    # implicit_gemm / im2col): 64->128 on 56x56 0.96, 0.97, 0.79; 128->256 on 28x28 1.00, 0.99,
    # 0.81; at batch 1, 64->128 0.95 and 0.95. Not on planes of up to 64 pixels, which im2col
    # lowers several images side by side (a digits ResNet's 32->64 1x1/2 on 16x16 at batch 128,
    # eager, min of interleaved rounds: 1.44 ms vs im2col 1.24).
    short = (p.c_in // p.g) * p.kh * p.kw <= 144
    strided_1x1 = (p.kh, p.kw) == (1, 1) and p.sh * p.sw > 1
    if short and strided_1x1 and not small and p.n * p.oh * p.ow >= 784:
        return CONV_ALGOS["implicit_gemm"]
    # Other short reductions (c_in/g*kh*kw <= 144) into at most 128 channels, one image of at
    # least 196 (plans) or 784 (eager) pixels: implicit GEMM (its 4x24 micro-kernel keeps a
    # weight panel and a tile of the input in L1, and writes the epilogue as it goes). Two full
    # runs (as above): MobileNetV2's 32->16 1x1 on 112x112 0.88 and 0.81, 144->24 on 56x56
    # 1.02 and 0.93, 16->96 on 112x112 1.07 and 1.01. Wider outputs and batch 8 lost: 64->256
    # on 56x56 1.41 and 1.30 (batch 8: 1.35, 1.32), 64->384 on 14x14 1.42 and 1.28, 24->144 on
    # 56x56 1.00 and 1.05; at batch 8 32->16 1.12 and 1.10, 144->24 1.14 and 1.16.
    if (
        short
        and p.n == 1
        and p.c_out // p.g <= 128
        and p.oh * p.ow >= (196 if weight_prepared else 784)
    ):
        return CONV_ALGOS["implicit_gemm"]
    # Large stride-1 kernels with enough channels: FFT (measurements in conv_fft.CHOICE_NOTE).
    if conv_fft.fft_wins(p, weight_prepared) and CONV_ALGOS["fft"].why_not(p) is None:
        return CONV_ALGOS["fft"]
    return CONV_ALGOS["im2col"]


def _pad_input(x: np.ndarray, p: ConvParams) -> np.ndarray:
    """Zero-pad (n, c, h, w) to (n, c, h+pt+pb, w+pl+pr), contiguous (x itself if unpadded)."""
    if not p.padded:
        return np.ascontiguousarray(x)
    xp = np.zeros((p.n, p.c_in, p.h + p.pt + p.pb, p.w + p.pl + p.pr), dtype=x.dtype)
    xp[:, :, p.pt : p.pt + p.h, p.pl : p.pl + p.w] = x
    return xp


def _prepare_conv_inputs(op, x, weight, bias):
    x = as_float_array(x, "input", op)
    weight = as_float_array(weight, "weight", op)
    x4, unbatched = as_batched_4d(x, "input", op)
    check_same_dtype(op, input=x4, weight=weight)
    return x4, unbatched, weight


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    *,
    algo: str = "auto",
    activation=None,
) -> np.ndarray:
    """2-D cross-correlation, exactly ``torch.nn.functional.conv2d``, with an optional fused
    activation.

    Args:
        x: input (n, c_in, h, w), or unbatched (c_in, h, w).
        weight: (c_out, c_in/groups, kh, kw).
        bias: (c_out,) or None.
        stride, dilation: int or (h, w) pair, positive.
        padding: int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same" (stride 1).
        groups: split channels into this many independent convolutions (c_in for depthwise).
        algo: "auto" or one of ``CONV_ALGOS`` ("direct", "im2col", ...).
        activation: None, an activation name ("relu", "relu6", "leaky_relu", "sigmoid", "tanh",
            "silu", "hardswish", "hardsigmoid", "gelu", "gelu_tanh", "elu") or ``(name, alpha)``
            for leaky_relu's slope / elu's alpha: applied after the bias as outputs are written,
            equal to calling the activation op on the result.

    Shape:
        output (n, c_out, oh, ow) with ``oh = floor((h + top + bottom - dh*(kh-1) - 1)/sh) + 1``
        (likewise ow).

    Example:
        >>> x = np.ones((1, 3, 5, 5), np.float32); w = np.ones((2, 3, 3, 3), np.float32)
        >>> float(conv2d(x, w, padding=1)[0, 0, 2, 2])
        27.0
    """
    op = "conv2d"
    x4, unbatched, weight = _prepare_conv_inputs(op, x, weight, bias)
    p = conv_params(x4.shape, weight.shape, stride, padding, dilation, groups, op)
    bias = _check_bias(bias, p.c_out, x4.dtype, op)
    epi = parse_activation(activation, op)
    chosen = select_conv_algo(p, algo, dtype=x4.dtype)
    out = run_conv(chosen, x4, chosen.prepare_weight(weight, p), bias, p, epi)
    return out[0] if unbatched else out


def run_conv(
    algo: ConvAlgorithm, x4: np.ndarray, w_prep, bias, p: ConvParams, epi, residual=None
) -> np.ndarray:
    """Run ``algo`` into a new (n, c_out, oh, ow) array (shared by conv2d and Conv2dPlan); see
    :func:`run_conv_into`."""
    out = np.empty(p.output_shape, dtype=x4.dtype)
    run_conv_into(algo, x4, w_prep, bias, p, epi, out, residual)
    return out


def run_conv_into(
    algo: ConvAlgorithm,
    x4: np.ndarray,
    w_prep,
    bias,
    p: ConvParams,
    epi,
    out: np.ndarray,
    residual: np.ndarray | None = None,
) -> None:
    """Run ``algo`` into the caller's contiguous ``out`` (n, c_out, oh, ow), padding ``x4``
    first unless the algorithm pads as it reads; nothing to do for an empty batch.
    ``residual`` (added before the activation) only for an algorithm that ``fuses_residual``."""
    if p.n > 0:
        x = np.ascontiguousarray(x4) if algo.pads_input else _pad_input(x4, p)
        if residual is None:
            algo.run(x, w_prep, bias, p, out, epi)
        else:
            algo.run(x, w_prep, bias, p, out, epi, residual=residual)


def _transpose_params(op, x_shape, w_shape, stride, padding, output_padding, groups, dilation):
    """Validate conv_transpose2d arguments; return (ConvParams of the adjoint conv, (H, W))."""
    groups = _check_groups(groups, op)
    sh, sw = positive_pair(stride, "stride", op)
    dh, dw = positive_pair(dilation, "dilation", op)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a pair of ints, got {padding!r}")
    ph, pw = nonnegative_pair(padding, "padding", op)
    oph, opw = nonnegative_pair(output_padding, "output_padding", op)
    if len(w_shape) != 4:
        raise ValueError(
            f"{op}: weight must be 4-D (c_in, c_out/groups, kh, kw), got shape {tuple(w_shape)}"
        )
    n, c_in, h, w = x_shape
    wc_in, cog, kh, kw = w_shape
    if min(cog, kh, kw) < 1:
        raise ValueError(f"{op}: weight of shape {tuple(w_shape)} has a zero-size dimension")
    if wc_in != c_in:
        raise ValueError(
            f"{op}: weight of shape {tuple(w_shape)} expects {wc_in} input channels, "
            f"but input {tuple(x_shape)} has {c_in}"
        )
    if c_in % groups != 0:
        raise ValueError(
            f"{op}: groups={groups} must divide the input channels, "
            f"but input of shape {tuple(x_shape)} has {c_in} channels"
        )
    if (oph >= sh and oph >= dh) or (opw >= sw and opw >= dw):
        raise ValueError(
            f"{op}: output_padding {(oph, opw)} must be smaller than either stride {(sh, sw)} "
            f"or dilation {(dh, dw)}"
        )
    if h < 1 or w < 1:
        raise ValueError(f"{op}: input of shape {tuple(x_shape)} has an empty spatial dimension")
    out_h = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    out_w = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"{op}: input {tuple(x_shape)} with weight {tuple(w_shape)}, stride {(sh, sw)}, "
            f"padding {(ph, pw)}, dilation {(dh, dw)} gives a non-positive output size "
            f"({out_h}, {out_w})"
        )
    # The adjoint convolution: input (n, c_out, out_h, out_w), weight (c_in, c_out/g, kh, kw).
    p = ConvParams(
        n, cog * groups, out_h, out_w, c_in, kh, kw, sh, sw, ph, ph, pw, pw, dh, dw, groups
    )
    return p, (out_h, out_w)


def conv_transpose2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
) -> np.ndarray:
    """2-D transposed convolution, exactly ``torch.nn.functional.conv_transpose2d``.

    Computed as the input-gradient of the matching convolution (im2col's adjoint, col2im).

    Args:
        x: input (n, c_in, h, w), or unbatched (c_in, h, w).
        weight: (c_in, c_out/groups, kh, kw).
        bias: (c_out,) or None.
        stride, padding, output_padding, dilation: int or (h, w) pair; padding is symmetric;
            output_padding must be smaller than the stride or the dilation.

    Shape:
        output (n, c_out, H, W), ``H = (h-1)*sh - 2*ph + dh*(kh-1) + output_padding_h + 1``.

    Example:
        >>> x = np.ones((1, 1, 2, 2), np.float32); w = np.ones((1, 1, 2, 2), np.float32)
        >>> conv_transpose2d(x, w, stride=2).shape
        (1, 1, 4, 4)
    """
    op = "conv_transpose2d"
    x4, unbatched, weight = _prepare_conv_inputs(op, x, weight, bias)
    p, (out_h, out_w) = _transpose_params(
        op, x4.shape, weight.shape, stride, padding, output_padding, groups, dilation
    )
    bias = _check_bias(bias, p.c_in, x4.dtype, op)
    if p.n == 0:
        y = np.zeros((0, p.c_in, out_h, out_w), dtype=x4.dtype)
    else:
        y = _grad_input(np.ascontiguousarray(x4), np.ascontiguousarray(weight), p)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y[0] if unbatched else y


def conv_transpose2d_backward(
    grad_out: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    *,
    bias: bool = True,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of :func:`conv_transpose2d` w.r.t. input, weight and bias.

    grad_x is the forward convolution of grad_out with the same weight; grad_weight is the
    convolution weight-gradient with the roles of input and output exchanged.

    Returns:
        ``(grad_x, grad_weight, grad_bias or None)`` shaped like x, weight and (c_out,).

    Example:
        >>> x = np.ones((1, 1, 2, 2), np.float32); w = np.ones((1, 1, 2, 2), np.float32)
        >>> gy = np.ones((1, 1, 4, 4), np.float32)
        >>> gx, gw, gb = conv_transpose2d_backward(gy, x, w, stride=2)
        >>> gx.shape, gw.shape, gb.shape
        ((1, 1, 2, 2), (1, 1, 2, 2), (1,))
    """
    op = "conv_transpose2d_backward"
    x4, unbatched, weight = _prepare_conv_inputs(op, x, weight, None)
    p, (out_h, out_w) = _transpose_params(
        op, x4.shape, weight.shape, stride, padding, output_padding, groups, dilation
    )
    out_shape = (p.n, p.c_in, out_h, out_w)
    gy = _check_grad_out(grad_out, out_shape[1:] if unbatched else out_shape, x4.dtype, op)
    gy = gy.reshape(out_shape)
    weight = np.ascontiguousarray(weight)
    h, w = x4.shape[2], x4.shape[3]
    if p.n == 0:
        gx = np.zeros(x4.shape, dtype=x4.dtype)
        gw = np.zeros(weight.shape, dtype=x4.dtype)
    else:
        gyp = np.ascontiguousarray(gy)  # (n, c_out, out_h, out_w)
        full = np.empty((p.n, p.c_out, p.oh, p.ow), dtype=x4.dtype)
        CONV_ALGOS["im2col"].run(gyp, weight, None, p, full)
        # output_padding >= stride (allowed when smaller than the dilation) makes the adjoint
        # convolution one row longer than x; the extra rows belong to no input pixel.
        gx = np.ascontiguousarray(full[:, :, :h, :w])
        # Weight gradient: the convolution weight-gradient with grad_out (padded as the lowering
        # reads it) as the input and x as the output gradient: windows of size (h, w) over gyp.
        gw = _grad_weight(gyp, np.ascontiguousarray(x4), p)
    gb = gy.sum(axis=(0, 2, 3), dtype=np.float64).astype(x4.dtype) if bias else None
    return (gx[0] if unbatched else gx), gw, gb


# the backward half lives in conv_backward.py (imported last: it reads this module's helpers)
from .conv_backward import (  # noqa: E402
    _check_grad_out,
    _grad_input,
    _grad_weight,
    conv2d_backward,
)
