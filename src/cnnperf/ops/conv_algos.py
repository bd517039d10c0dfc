"""Convolution algorithms behind one interface, and the registry ``select_conv_algo`` reads.

Each algorithm answers ``why_not(p)`` (None when it covers the case), prepares its weight once
(``prepare_weight``) and runs into a caller-allocated ``out`` from an already padded input.
"""

from __future__ import annotations

import numpy as np

from .. import config
from ..shapes import ConvParams
from .epilogue import NO_EPILOGUE, Epilogue, apply_epilogue

__all__ = [
    "ConvAlgorithm",
    "DirectConv",
    "Im2colConv",
    "CONV_ALGOS",
    "register_conv_algo",
    "gemm_into",
]


class ConvAlgorithm:
    """Interface every convolution algorithm implements."""

    name = ""
    # True: run() takes the unpadded input (n, c_in, h, w) and pads as it reads; False: the
    # caller pads it first (run_padded adapts either to an already padded input).
    pads_input = False
    # True: run() also takes ``residual=`` (an array shaped as ``out``), added after the bias
    # and before the activation as the outputs are written.
    fuses_residual = False

    def why_not(self, p: ConvParams) -> str | None:
        """None when this algorithm covers ``p``; otherwise the reason it does not."""
        return None

    def supports(self, p: ConvParams) -> bool:
        return self.why_not(p) is None

    def prepare_weight(self, w: np.ndarray, p: ConvParams) -> np.ndarray:
        """Transform the weight (c_out, c_in/g, kh, kw) once into this algorithm's layout."""
        return np.ascontiguousarray(w)

    def run(
        self,
        xp: np.ndarray,
        w_prep: np.ndarray,
        bias: np.ndarray | None,
        p: ConvParams,
        out: np.ndarray,
        epi: Epilogue = NO_EPILOGUE,
    ) -> None:
        """Write ``epi(conv(xp) + bias)`` into ``out`` (n, c_out, oh, ow).

        ``xp`` is the contiguous input: zero-padded to (n, c_in, h + pt + pb, w + pl + pr), or
        as given (n, c_in, h, w) when :attr:`pads_input` is set; ``w_prep`` is what
        :meth:`prepare_weight` returned; ``bias`` is (c_out,) or None.
        """
        raise NotImplementedError

    # Optional: ``bind(x, w_prep, bias, p, epi, out, residual=None)`` -> a call without
    # arguments running ``epi(conv(x) + bias [+ residual])`` into ``out`` for these very
    # (contiguous, unpadded) arrays, or None where it does not apply (``Conv2dPlan.bind``).

    def run_padded(self, xp, w_prep, bias, p: ConvParams, out, epi: Epilogue = NO_EPILOGUE):
        """:meth:`run` on an input that is already zero-padded as ``p`` says."""
        self.run(xp, w_prep, bias, p.prepadded() if self.pads_input else p, out, epi)

    def __repr__(self) -> str:
        return f"<conv algorithm {self.name!r}>"


class DirectConv(ConvAlgorithm):
    """Numba direct loops that pad as they read: on stride phases (``kernels/direct.py``), or
    channels-last for depthwise layers with small output planes (``kernels/depthwise.py``)."""

    name = "direct"
    pads_input = True

    def prepare_weight(self, w, p):
        w = np.ascontiguousarray(w)
        if not use_channels_last_depthwise(p):
            return w
        from ..kernels.depthwise import CL_BLOCK, tile_weight

        return DepthwiseWeight(w, tile_weight(w, p.ow, CL_BLOCK), p.ow)

    def run(self, x, w_prep, bias, p, out, epi=NO_EPILOGUE):
        from ..kernels import sync_threads

        sync_threads()
        b = np.zeros(p.c_out, dtype=out.dtype) if bias is None else np.ascontiguousarray(bias)
        hp, wp = p.h + p.pt + p.pb, p.w + p.pl + p.pr
        threads = config.get_num_threads()
        if use_channels_last_depthwise(p):
            from ..kernels.depthwise import CL_BLOCK, depthwise_conv2d_cl, tile_bias, tile_weight

            if isinstance(w_prep, DepthwiseWeight) and w_prep.ow == p.ow:
                w_t = w_prep.tiled
            else:
                w_t = tile_weight(getattr(w_prep, "weight", w_prep), p.ow, CL_BLOCK)
            depthwise_conv2d_cl(
                x, w_t, tile_bias(b, p.ow, CL_BLOCK), p.kh, p.kw, p.sh, p.sw, p.pt, p.pl, hp,
                wp, p.dh, p.dw, CL_BLOCK, 8 * threads, epi.code, epi.alpha, out,
            )  # fmt: skip
            return
        w_prep = getattr(w_prep, "weight", w_prep)
        if use_same_depthwise(p):
            from ..kernels.depthwise import depthwise_conv2d_same

            depthwise_conv2d_same(x, w_prep, b, 8 * threads, epi.code, epi.alpha, out)
            return
        if use_s2k3_depthwise(p):
            from ..kernels import depthwise as dw

            kernel = dw.depthwise_conv2d_s2k3_even if p.w % 2 == 0 else dw.depthwise_conv2d_s2k3
            kernel(x, w_prep, b, 8 * threads, epi.code, epi.alpha, out)
            return
        if _depthwise_one_per_channel(p) and p.n >= 2:
            # one task per channel for the whole batch. Measured at batch 8 (2 threads, ms,
            # against one task per image and channel): 192x28x28 0.85 vs 1.08, 144x56x56 2.24
            # vs 2.52, 32x112x112 1.80 vs 1.99.
            from ..kernels.direct import depthwise_conv2d_batched

            depthwise_conv2d_batched(
                x, w_prep, b, p.sh, p.sw, p.pt, p.pl, hp, wp, p.dh, p.dw, 8 * threads,
                epi.code, epi.alpha, out,
            )  # fmt: skip
            return
        from ..kernels.direct import conv2d_direct

        ocb = direct_channel_block(p, threads)
        conv2d_direct(
            x, w_prep, b, p.sh, p.sw, p.pt, p.pl, hp, wp, p.dh, p.dw, p.g, ocb, 8 * threads,
            epi.code, epi.alpha, out,
        )  # fmt: skip


class DepthwiseWeight:
    """A depthwise weight prepared for the channels-last kernel: the weight itself and its
    tiling for output rows ``ow`` wide (``kernels.depthwise.tile_weight``)."""

    __slots__ = ("weight", "tiled", "ow")

    def __init__(self, weight: np.ndarray, tiled: np.ndarray, ow: int):
        self.weight = weight
        self.tiled = tiled
        self.ow = ow


# Output planes up to this many pixels go channels-last. Measured single-threaded against the
# stride-phase kernel on MobileNetV2's depthwise layers at batch 8 (ms, phases vs
# channels-last): 960x7x7 3.6 vs 1.07, 576x14x14 3.1 vs 2.4, 576x14x14 stride 2 4.0 vs 1.4,
# 192x28x28 stride 2 2.2 vs 1.9 (all with outputs <= 14x14); but 192x28x28 1.8 vs 3.2 and
# 144x56x56 4.5 vs 13.1. The channels-last kernel pays a transpose per element, which only the
# per-plane overheads of many small planes outweigh.
CL_MAX_OUTPUT_PIXELS = 196


def use_channels_last_depthwise(p: ConvParams) -> bool:
    """Whether the direct algorithm runs ``p`` channels-last (see CL_MAX_OUTPUT_PIXELS)."""
    return (
        _depthwise_one_per_channel(p)
        and p.oh * p.ow <= CL_MAX_OUTPUT_PIXELS
        and not use_same_depthwise(p)
        and not use_s2k3_depthwise(p)
    )


# Stride-1 "same" depthwise planes up to this many pixels run kernels.depthwise's flat-run
# kernel. Measured with 2 threads, relu6 (ms; flat runs / channels-last / stride phases; PyTorch
# 2.13 in the same run): batch 8: 960x7x7 0.40 / 0.84 / 1.17 (0.39), 576x14x14 0.79 / 1.71 /
# 1.35 (0.71), but 144x56x56 3.4 / 7.5 / 2.9 (4.2); batch 1: 960x7x7 0.104 / 0.221 / 0.367
# (0.187), 144x56x56 0.35 / 1.18 / 0.33 (0.40).
SAME_MAX_OUTPUT_PIXELS = 784


# 3x3 stride-2 depthwise layers of even input width run kernels.depthwise's flat-run kernel
# for even widths; of odd width, the per-row phase kernel when their outputs have at least this
# many pixels (on 7x7 outputs the channels-last kernel stays faster). Measured with 2 threads,
# relu6 (ms; flat runs / channels-last / stride phases; PyTorch 2.13 in the same run): batch 8:
# 576x14x14 0.51 / 1.03 / 1.60 (0.57), 192x28x28 0.72 / 1.30 / 1.14 (0.74), 160x14x14 0.18 /
# 0.35 / 0.49 (0.26), 144x56x56 2.1 / 4.8 / 2.2 (2.2), 96x112x112 5.6 / 11.6 / 5.5 (12.7),
# 64x4x4 0.068 / 0.120 / 0.095; batch 1: 576x14x14 0.120 / 0.242 / 0.357 (0.221), 144x56x56
# 0.26 / 0.86 / 0.30 (0.29); odd width, batch 8, per-row kernel: 576x7x7 0.77 / 0.35 / 0.65
# (0.25). Single-threaded (per-row kernel): 576x14x14 batch 1 0.22 / 0.19 / 0.56 (0.15), 192x28x28
# 0.16 / 0.22 / 0.30 (0.15).
S2K3_MIN_OUTPUT_PIXELS = 65


def use_s2k3_depthwise(p: ConvParams) -> bool:
    """Whether the direct algorithm runs ``p`` with a 3x3 stride-2 depthwise kernel: one output
    channel per input channel, 3x3, stride 2, padding 1 on every side, no dilation, and an even
    input width or outputs of at least S2K3_MIN_OUTPUT_PIXELS."""
    return (
        _depthwise_one_per_channel(p)
        and (p.kh, p.kw, p.sh, p.sw, p.dh, p.dw) == (3, 3, 2, 2, 1, 1)
        and (p.pt, p.pb, p.pl, p.pr) == (1, 1, 1, 1)
        and (p.w % 2 == 0 or p.oh * p.ow >= S2K3_MIN_OUTPUT_PIXELS)
    )


def use_same_depthwise(p: ConvParams) -> bool:
    """Whether the direct algorithm runs ``p`` with the "same"-padding depthwise kernel: one
    output channel per input channel, stride 1, no dilation, odd kernel, ``k // 2`` padding on
    every side, planes up to SAME_MAX_OUTPUT_PIXELS."""
    return (
        _depthwise_one_per_channel(p)
        and (p.sh, p.sw, p.dh, p.dw) == (1, 1, 1, 1)
        and p.kh % 2 == 1
        and p.kw % 2 == 1
        and (p.pt, p.pb) == (p.kh // 2, p.kh // 2)
        and (p.pl, p.pr) == (p.kw // 2, p.kw // 2)
        and p.oh * p.ow <= SAME_MAX_OUTPUT_PIXELS
    )


def _depthwise_one_per_channel(p: ConvParams) -> bool:
    """Depthwise with one output channel per input channel (the depthwise kernels' case)."""
    return p.is_depthwise and p.c_out == p.c_in


def direct_channel_block(p: ConvParams, threads: int) -> int:
    """Output channels per direct-kernel task: a whole group's when images x groups give every
    thread 4+ tasks (depthwise layers), else fewer, so that the work still spreads evenly (each
    task re-reads its group's input, cheap next to the c_out/g x cg*kh*kw taps it computes)."""
    co_g = p.c_out // p.g
    tasks = p.n * p.g
    want = 4 * max(1, threads)
    if tasks >= want:
        return co_g
    split = min(co_g, -(-want // tasks))
    return -(-co_g // split)


class Im2colConv(ConvAlgorithm):
    """im2col lowering (Numba) + one BLAS GEMM per image and group.

    1x1 stride-1 unpadded convolutions skip the lowering: the image already is the column matrix.
    The workspace is one image's columns, (c_in*kh*kw, oh*ow).
    """

    name = "im2col"
    pads_input = True

    def run(self, xp, w_prep, bias, p, out, epi=NO_EPILOGUE):
        run_im2col_gemm(xp, w_prep, p, out, bias, epi)


def gemm_into(a: np.ndarray, b: np.ndarray, g: int, out: np.ndarray) -> None:
    """``out[gi] = a[gi] @ b[gi]`` per group; a (g*M, K), b (g*K, L), out (g*M, L)."""
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf propagate, as in PyTorch
        _gemm_into(a, b, g, out)


def _gemm_into(a: np.ndarray, b: np.ndarray, g: int, out: np.ndarray) -> None:
    if g == 1:
        np.matmul(a, b, out=out)
        return
    m = a.shape[0] // g
    k = b.shape[0] // g
    if out.flags.c_contiguous and b.flags.c_contiguous:
        np.matmul(a.reshape(g, m, -1), b.reshape(g, k, -1), out=out.reshape(g, m, -1))
        return
    for gi in range(g):  # a band of a larger output: 2-D slices stay views, reshapes might not
        np.matmul(
            a[gi * m : (gi + 1) * m], b[gi * k : (gi + 1) * k], out=out[gi * m : (gi + 1) * m]
        )


def run_im2col_gemm(
    xp: np.ndarray,
    w_prep: np.ndarray,
    p: ConvParams,
    out: np.ndarray,
    bias: np.ndarray | None = None,
    epi: Epilogue = NO_EPILOGUE,
) -> None:
    """im2col + GEMM per image; the bias and activation are applied to each image right after
    its GEMM, while it is still in cache."""
    from ..kernels import sync_threads
    from ..kernels.im2col import im2col

    sync_threads()
    oh, ow = p.oh, p.ow
    wmat = w_prep.reshape(p.c_out, -1)  # (c_out, c_in/g*kh*kw)
    if p.n > 1 and oh * ow <= GEMM_BATCH_MAX_PIXELS and out.flags.c_contiguous:
        _im2col_gemm_images(xp, wmat, p, out, bias, epi)
        return
    if p.is_pointwise:
        for b in range(p.n):
            gemm_into(wmat, xp[b].reshape(p.c_in, oh * ow), p.g, out[b].reshape(p.c_out, oh * ow))
            apply_epilogue(out[b : b + 1], bias, epi)
        return
    k = p.c_in * p.kh * p.kw
    rows = band_rows(k, oh, ow, xp.dtype.itemsize)
    cols = np.empty((k, rows * ow), dtype=xp.dtype)
    whole = rows >= oh and p.sw != 2  # one band, lowered by im2col_batch: LOWER_WHOLE_NOTE
    if whole:
        from ..kernels.conv_backward import im2col_batch
    for b in range(p.n):
        out_b = out[b].reshape(p.c_out, oh * ow)  # (c_out, oh*ow)
        for y0 in range(0, oh, rows):
            r = min(rows, oh - y0)
            if whole:
                im2col_batch(
                    xp[b : b + 1], p.kh, p.kw, p.sh, p.sw, p.pt, p.pl, p.dh, p.dw, oh, ow,
                    cols.reshape(k, 1, oh * ow),
                )  # fmt: skip
            else:
                im2col(xp[b], p.kh, p.kw, p.sh, p.sw, p.pt, p.pl, p.dh, p.dw, y0, r, ow, cols)
            gemm_into(wmat, cols[:, : r * ow], p.g, out_b[:, y0 * ow : (y0 + r) * ow])
        apply_epilogue(out[b : b + 1], bias, epi)


# Bound on the im2col workspace. A band of output rows is lowered and multiplied at a time.
IM2COL_WORKSPACE_BYTES = 8 << 20

LOWER_WHOLE_NOTE = """An image lowered in one band, at a column stride other than 2, goes through
kernels.conv_backward.im2col_batch (flat indices, no per-row slices) instead of kernels.im2col
(per-row slices; at column stride 2 its phase split is faster). Measured single image, lowering
only, 2 threads (ms, min of 30 interleaved calls; im2col / im2col_batch): 3x3 stride 1 on
256x14x14 0.31 / 0.22, 128x28x28 0.32 / 0.18, 64x56x56 0.35 / 0.27, 64x112x112 1.75 / 1.52,
512x7x7 0.33 / 0.32; 5x5 on 48x35x35 0.36 / 0.24, 192x27x27 1.38 / 0.94; AlexNet's 11x11/4
stem 0.49 / 0.26; 1x1 stride 2 on 1024x14x14 0.091 / 0.069. At stride 2 the other way round:
3x3 on 256x14x14 0.127 / 0.155, 64x112x112 0.34 / 0.44, ResNet's 7x7 stem 0.22 / 0.52."""

# Output planes up to this many pixels are lowered several images at a time, side by side, for
# one GEMM: a GEMM per image is (c_out, k) @ (k, oh*ow), and BLAS is slow on so few columns.
# Measured with plans (im2col, relu), ms per image / side by side, 1 and 2 threads: a digits
# ResNet's 32->64 3x3/2 on 8x8 at batch 256: 16.9 / 14.4 and 16.8 / 9.0; its 1x1/2: 10.3 / 2.0
# and 11.1 / 3.4; ResNet-18 layer4 3x3/2 at batch 8 (7x7 out): 27.3 / 21.9 and 31.5 / 16.5;
# 512x7x7 3x3 at batch 8: 43.6 / 46.4 and 78.1 / 43.9. On 14x14 outputs the per-image GEMMs
# were faster (256x14x14 3x3 at batch 8: 32.0 / 53.0 single-threaded: the side-by-side
# columns no longer stay in cache).
GEMM_BATCH_MAX_PIXELS = 64


def _im2col_gemm_images(xp, wmat, p: ConvParams, out, bias, epi: Epilogue) -> None:
    """:func:`run_im2col_gemm` for small output planes: as many images as fit the workspace
    are lowered side by side into ``cols`` (k, images*oh*ow) and multiplied by one GEMM into
    ``tmp`` (c_out, images*oh*ow); the epilogue runs on ``tmp``'s long rows, then each image's
    block is copied to its place in ``out``."""
    from ..kernels.conv_backward import im2col_batch

    ohw = p.oh * p.ow
    k = p.c_in * p.kh * p.kw  # rows of cols, every group's (gemm_into splits them)
    per_image = (k + p.c_out) * ohw * xp.dtype.itemsize
    imgs = max(1, min(p.n, IM2COL_WORKSPACE_BYTES // max(1, per_image)))
    cols = np.empty((k, imgs * ohw), dtype=xp.dtype)
    for b0 in range(0, p.n, imgs):
        nb = min(imgs, p.n - b0)
        m = nb * ohw
        if p.is_pointwise:  # no lowering: the images' (c_in, oh*ow) planes side by side
            lowered = cols[:, :m] if nb == imgs else np.empty((k, m), dtype=xp.dtype)
            src = xp[b0 : b0 + nb].reshape(nb, k, ohw).transpose(1, 0, 2)
            np.copyto(lowered.reshape(k, nb, ohw), src)
        else:  # one kernel call for the chunk (a call per image cost ~10 us each)
            lowered = cols[:, :m] if nb == imgs else np.empty((k, m), dtype=xp.dtype)
            im2col_batch(
                np.ascontiguousarray(xp[b0 : b0 + nb]), p.kh, p.kw, p.sh, p.sw, p.pt, p.pl,
                p.dh, p.dw, p.oh, p.ow, lowered.reshape(k, nb, ohw),
            )  # fmt: skip
        tmp = np.empty((p.c_out, m), dtype=out.dtype)
        gemm_into(wmat, lowered, p.g, tmp)
        apply_epilogue(tmp.reshape(1, p.c_out, m), bias, epi)
        dst = out[b0 : b0 + nb].reshape(nb, p.c_out, ohw)
        np.copyto(dst, tmp.reshape(p.c_out, nb, ohw).transpose(1, 0, 2))


def band_rows(k: int, oh: int, ow: int, itemsize: int) -> int:
    """Output rows per im2col band so that the (k, rows*ow) columns fit the workspace bound."""
    return max(1, min(oh, IM2COL_WORKSPACE_BYTES // max(1, k * ow * itemsize)))


CONV_ALGOS: dict[str, ConvAlgorithm] = {}


def register_conv_algo(algo: ConvAlgorithm) -> ConvAlgorithm:
    """Add ``algo`` to ``CONV_ALGOS`` under ``algo.name`` (each name once)."""
    if not algo.name or algo.name in CONV_ALGOS or algo.name == "auto":
        raise ValueError(f"conv algorithm name {algo.name!r} is empty, reserved or taken")
    CONV_ALGOS[algo.name] = algo
    return algo


register_conv_algo(DirectConv())
register_conv_algo(Im2colConv())
