"""Backward pass of ``conv2d``: gradients with respect to input, weight and bias.

The whole batch is lowered at once (in blocks bounded by ``BACKWARD_WORKSPACE_BYTES``):
grad_weight is one GEMM per group over every image's columns (first layers: a kernel without
lowering), grad_x a transposed convolution (Winograd for 3x3 stride-1 layers, else col2im of
``weight^T @ grad_out``). ``conv_transpose2d``'s backward reuses the weight-gradient half.
"""

from __future__ import annotations

import numpy as np

from ..shapes import ConvParams
from ._validate import as_float_array, check_same_dtype
from .conv import _pad_input, _prepare_conv_inputs, conv_params
from .conv_algos import CONV_ALGOS

__all__ = ["conv2d_backward", "BACKWARD_WORKSPACE_BYTES"]


# Bound on the lowered columns the backward pass keeps at once (bytes): images are processed in
# blocks of as many as fit (at least one), each block one sgemm per GEMM and group. LeNet at
# batch 64, 1 thread, median ms (1->6 5x5 on 28x28 without grad_x; 6->16 5x5 on 12x12):
# 128 KiB 1.44 / 2.24, 512 KiB 1.15 / 1.95, 1 MiB 1.10 / 1.89, 2 MiB 1.06 / 1.88,
# 8 MiB (whole batch) 1.06 / 1.97.
BACKWARD_WORKSPACE_BYTES = 2 << 20


def _backward_block(p: ConvParams, itemsize: int) -> int:
    """Images per block of the batched backward: their columns fit the workspace bound."""
    per_image = p.c_in * p.kh * p.kw * p.oh * p.ow * itemsize
    return max(1, min(p.n, BACKWARD_WORKSPACE_BYTES // max(1, per_image)))


def _grad_input_winograd(gy, weight, p: ConvParams):
    """grad_x (n, c_in, h, w) of a 3x3 stride-1 dilation-1 convolution as the full convolution
    ``conv2d(gy, flip(w)^T, padding=2, groups=g)`` with Winograd, cropped to the unpadded input;
    None where Winograd does not cover the case."""
    algo = CONV_ALGOS.get("winograd")
    if algo is None or (p.kh, p.kw, p.sh, p.sw, p.dh, p.dw) != (3, 3, 1, 1, 1, 1):
        return None
    n, c_out, oh, ow = gy.shape
    g = p.g
    cg = weight.shape[1]
    hp, wp = p.h + p.pt + p.pb, p.w + p.pl + p.pr
    q = ConvParams(n, c_out, oh, ow, cg * g, 3, 3, 1, 1, 2, 2, 2, 2, 1, 1, g)
    if algo.why_not(q) is not None or (q.oh, q.ow) != (hp, wp):
        return None
    wt = weight.reshape(g, c_out // g, cg, 3, 3).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    wt = np.ascontiguousarray(wt).reshape(g * cg, c_out // g, 3, 3)  # (c_in, c_out/g, 3, 3)
    dxp = np.empty(q.output_shape, dtype=gy.dtype)  # (n, c_in, hp, wp)
    algo.run_padded(_pad_input(gy, q), algo.prepare_weight(wt, q), None, q, dxp)
    if not p.padded:
        return dxp
    return np.ascontiguousarray(dxp[:, :, p.pt : p.pt + p.h, p.pl : p.pl + p.w])


def _backward_gemm(
    x: np.ndarray | None,
    gy: np.ndarray,
    weight: np.ndarray | None,
    p: ConvParams,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The two GEMMs of the backward pass over blocks of images: ``(grad_x, grad_w)``.

    ``grad_w = sum_b gy[b] @ cols(x[b])^T`` per group, (c_out, c_in/g, kh, kw), computed when
    ``x`` (n, c_in, h, w), the unpadded input, is given; ``grad_x`` (n, c_in, h, w) = col2im of
    ``weight^T @ gy`` (a transposed convolution), computed when ``weight`` is given. Each block
    is lowered once (all its images side by side) and multiplied by one sgemm per group; the
    input gradient's columns reuse the same buffer after the weight gradient has read it.
    """
    from ..kernels import sync_threads
    from ..kernels.conv_backward import col2im_batch, im2col_batch

    sync_threads()
    n, c_out, oh, ow = gy.shape
    g, cog = p.g, c_out // p.g
    k = (p.c_in // g) * p.kh * p.kw
    npos = oh * ow
    nb = _backward_block(p, gy.dtype.itemsize)
    buf = np.empty(g * k * nb * npos, dtype=gy.dtype)
    gw = step = None
    if x is not None:
        gw = np.zeros((g, cog, k), dtype=gy.dtype)
        step = np.empty_like(gw)
    gx = wt = None
    if weight is not None:
        gx = np.empty((n, p.c_in, p.h, p.w), dtype=gy.dtype)
        wt = weight.reshape(g, cog, k).transpose(0, 2, 1)  # (g, k, c_out/g)
    geo = (p.kh, p.kw, p.sh, p.sw, p.pt, p.pl, p.dh, p.dw, oh, ow)
    for b0 in range(0, n, nb):
        m = min(nb, n - b0)
        cols = buf[: g * k * m * npos].reshape(g * k, m, npos)  # (c_in*kh*kw, m, oh*ow)
        cols_g = cols.reshape(g, k, m * npos)
        gy_t = np.ascontiguousarray(gy[b0 : b0 + m].reshape(m, c_out, npos).transpose(1, 0, 2))
        gy_t = gy_t.reshape(g, cog, m * npos)  # (g, c_out/g, m*oh*ow)
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf propagate, as in PyTorch
            if x is not None:
                im2col_batch(x[b0 : b0 + m], *geo, cols)
                np.matmul(gy_t, cols_g.transpose(0, 2, 1), out=step)  # (g, c_out/g, k)
                gw += step
            if gx is not None:
                np.matmul(wt, gy_t, out=cols_g)  # (g, k, m*oh*ow)
                col2im_batch(cols, *geo, gx[b0 : b0 + m])
    if gw is not None:
        gw = gw.reshape(c_out, p.c_in // g, p.kh, p.kw)
    return gx, gw


def _grad_input(gy: np.ndarray, weight: np.ndarray, p: ConvParams) -> np.ndarray:
    """grad_x (n, c_in, h, w) of the convolution ``p`` (gy (n, c_out, oh, ow)): a transposed
    convolution, by Winograd where it covers the case, else col2im of ``weight^T @ gy``."""
    gx = _grad_input_winograd(gy, weight, p)
    if gx is None:
        gx, _ = _backward_gemm(None, gy, weight, p)
    return gx


def _direct_grad_weight_pays(p: ConvParams) -> bool:
    """First layers (<= 3 input channels per group), column stride 1: the weight gradient
    without lowering (kernels.conv_backward.grad_weight_direct). Measured at 2 threads with
    passive waits (ms, direct vs lowering + GEMM): 64x1x28x28 -> 6 5x5 0.47 vs 0.83, 64x1x8x8
    -> 16 3x3 0.11 vs 0.13, 8x3x32x32 -> 16 3x3 0.22 vs 0.28; but 64x6x12x12 -> 16 5x5 1.85
    vs 0.46 (more input channels: the GEMM wins)."""
    return p.c_in // p.g <= 3 and p.sw == 1


def _grad_weight_direct(x: np.ndarray, gy: np.ndarray, p: ConvParams) -> np.ndarray:
    """:func:`_grad_weight` by ``grad_weight_direct``: per-run partial sums, added in order."""
    from ..kernels import sync_threads
    from ..kernels.conv_backward import grad_weight_direct

    sync_threads()
    xp = _pad_input(x, p)
    runs = max(1, min(p.n, 8))  # fixed: the sum's order does not depend on the threads
    part = np.zeros((runs, p.c_out, p.c_in // p.g, p.kh, p.kw), dtype=gy.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        grad_weight_direct(xp, gy, p.kh, p.kw, p.sh, p.dh, p.dw, p.g, part)
    return part.sum(axis=0)


def _grad_weight(x: np.ndarray, gy: np.ndarray, p: ConvParams) -> np.ndarray:
    """``sum_b gy[b] @ cols(x[b])^T`` per group: (c_out, c_in/g, kh, kw); ``x`` (n, c_in, h, w)
    is the unpadded input (the lowering pads as it reads)."""
    return _backward_gemm(x, gy, None, p)[1]


def _check_grad_out(grad_out, expected_shape, dtype, op: str) -> np.ndarray:
    grad_out = as_float_array(grad_out, "grad_out", op)
    if grad_out.shape != tuple(expected_shape):
        raise ValueError(
            f"{op}: grad_out has shape {tuple(grad_out.shape)}, but the forward output has "
            f"shape {tuple(expected_shape)}"
        )
    check_same_dtype(op, input=np.empty(0, dtype), grad_out=grad_out)
    return np.ascontiguousarray(grad_out)


def conv2d_backward(
    grad_out: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    *,
    bias: bool = True,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    need_input_grad: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients of :func:`conv2d` with respect to input, weight and bias.

    The whole batch is lowered at once (in blocks bounded by ``BACKWARD_WORKSPACE_BYTES``):
    grad_weight is one GEMM per group over every image's columns, grad_x a transposed
    convolution (Winograd for 3x3 stride-1 layers, else col2im of ``weight^T @ grad_out``).

    Args:
        grad_out: gradient of the loss w.r.t. the output, (n, c_out, oh, ow) (3-D if x is).
        x, weight, stride, padding, dilation, groups: as given to :func:`conv2d`.
        bias: whether the forward pass had a bias (then its gradient is returned).
        need_input_grad: compute grad_x; False (the input is data, e.g. a first layer) skips
            that half of the work and returns None in its place.

    Returns:
        ``(grad_x or None, grad_weight, grad_bias or None)`` shaped like x, weight and (c_out,).

    Example:
        >>> x = np.ones((1, 1, 3, 3), np.float32); w = np.ones((1, 1, 2, 2), np.float32)
        >>> gx, gw, gb = conv2d_backward(np.ones((1, 1, 2, 2), np.float32), x, w)
        >>> gb
        array([4.], dtype=float32)
    """
    op = "conv2d_backward"
    x4, unbatched, weight = _prepare_conv_inputs(op, x, weight, None)
    p = conv_params(x4.shape, weight.shape, stride, padding, dilation, groups, op)
    expected = p.output_shape[1:] if unbatched else p.output_shape
    gy = _check_grad_out(grad_out, expected, x4.dtype, op)
    gy = gy.reshape(p.output_shape)
    weight = np.ascontiguousarray(weight)
    gx = None
    if p.n == 0:
        gw = np.zeros(weight.shape, dtype=x4.dtype)
        if need_input_grad:
            gx = np.zeros(x4.shape, dtype=x4.dtype)
    else:
        if need_input_grad:
            gx = _grad_input_winograd(gy, weight, p)
        gemm_weight = weight if need_input_grad and gx is None else None
        if _direct_grad_weight_pays(p):
            gw = _grad_weight_direct(np.ascontiguousarray(x4), gy, p)
            if gemm_weight is not None:
                gx, _ = _backward_gemm(None, gy, gemm_weight, p)
        else:
            gx_gemm, gw = _backward_gemm(np.ascontiguousarray(x4), gy, gemm_weight, p)
            if gx_gemm is not None:
                gx = gx_gemm
    gb = gy.sum(axis=(0, 2, 3), dtype=np.float64).astype(x4.dtype) if bias else None
    if gx is not None and unbatched:
        gx = gx[0]
    return gx, gw, gb
