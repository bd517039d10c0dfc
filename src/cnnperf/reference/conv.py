"""Reference 2-D convolution and transposed convolution, forward and backward (float64 loops).

Every output element is accumulated tap by tap with explicit bounds checks: a tap that lands in
the padding contributes zero, so no window ever wraps around through a negative index.
"""

from __future__ import annotations

import numpy as np

from ._args import as_f64, batched4d, conv_padding, count_conv_positions, pair

__all__ = [
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
]


def _positive(v: tuple[int, int], name: str) -> tuple[int, int]:
    if min(v) < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")
    return v


def _conv_setup(x, weight, stride, padding, dilation, groups):
    """Validate conv2d arguments; return everything the forward/backward loops need."""
    x4, unbatched = batched4d(x)
    if weight.ndim != 4:
        raise ValueError(f"weight must be 4-D (c_out, c_in/groups, kh, kw), got {weight.shape}")
    n, c_in, h, w = x4.shape
    c_out, c_in_g, kh, kw = weight.shape
    g = int(groups)
    if g < 1 or c_out % g != 0 or c_in_g * g != c_in:
        raise ValueError(
            f"Given groups={g}, weight of shape {weight.shape}, expected input {x.shape} "
            f"to have {c_in_g * g} channels and c_out divisible by groups"
        )
    s = _positive(pair(stride, "stride"), "stride")
    d = _positive(pair(dilation, "dilation"), "dilation")
    (pt, pb), (pl, pr) = conv_padding(padding, (kh, kw), s, d)
    oh = count_conv_positions(h, pt, pb, kh, s[0], d[0])
    ow = count_conv_positions(w, pl, pr, kw, s[1], d[1])
    if oh < 1 or ow < 1:
        raise ValueError(
            f"kernel {(kh, kw)} with dilation {d} is larger than the padded input {x.shape}"
        )
    return x4, unbatched, (n, c_in, h, w, c_out, c_in_g, kh, kw, oh, ow, s, d, pt, pl, g)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """Cross-correlation like F.conv2d; oh = floor((h + pt + pb - d*(kh-1) - 1) / sh) + 1."""
    x = as_f64(x)
    weight = as_f64(weight)
    x4, unbatched, dims = _conv_setup(x, weight, stride, padding, dilation, groups)
    n, c_in, h, w, c_out, c_in_g, kh, kw, oh, ow, s, d, pt, pl, g = dims
    c_out_g = c_out // g
    if bias is not None:
        bias = as_f64(bias)
        if bias.shape != (c_out,):
            raise ValueError(f"bias must have shape ({c_out},), got {bias.shape}")
    out = np.zeros((n, c_out, oh, ow), dtype=np.float64)
    for b in range(n):
        for oc in range(c_out):
            grp = oc // c_out_g
            for y in range(oh):
                for z in range(ow):
                    acc = 0.0
                    for icl in range(c_in_g):
                        ic = grp * c_in_g + icl
                        for i in range(kh):
                            ih = y * s[0] - pt + i * d[0]
                            if ih < 0 or ih >= h:
                                continue
                            for j in range(kw):
                                iw = z * s[1] - pl + j * d[1]
                                if iw < 0 or iw >= w:
                                    continue
                                acc += x4[b, ic, ih, iw] * weight[oc, icl, i, j]
                    if bias is not None:
                        acc += bias[oc]
                    out[b, oc, y, z] = acc
    return out[0] if unbatched else out


def conv2d_backward(
    grad_out, x, weight, *, bias=True, stride=1, padding=0, dilation=1, groups=1
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(grad_x, grad_weight, grad_bias or None) of conv2d, scattering over the forward taps."""
    x = as_f64(x)
    weight = as_f64(weight)
    grad_out = as_f64(grad_out)
    x4, unbatched, dims = _conv_setup(x, weight, stride, padding, dilation, groups)
    n, c_in, h, w, c_out, c_in_g, kh, kw, oh, ow, s, d, pt, pl, g = dims
    g4 = grad_out[None] if unbatched else grad_out
    if g4.shape != (n, c_out, oh, ow):
        raise ValueError(f"grad_out must have shape {(n, c_out, oh, ow)}, got {g4.shape}")
    c_out_g = c_out // g
    grad_x = np.zeros_like(x4)
    grad_w = np.zeros_like(weight)
    for b in range(n):
        for oc in range(c_out):
            grp = oc // c_out_g
            for y in range(oh):
                for z in range(ow):
                    go = g4[b, oc, y, z]
                    for icl in range(c_in_g):
                        ic = grp * c_in_g + icl
                        for i in range(kh):
                            ih = y * s[0] - pt + i * d[0]
                            if ih < 0 or ih >= h:
                                continue
                            for j in range(kw):
                                iw = z * s[1] - pl + j * d[1]
                                if iw < 0 or iw >= w:
                                    continue
                                grad_x[b, ic, ih, iw] += go * weight[oc, icl, i, j]
                                grad_w[oc, icl, i, j] += go * x4[b, ic, ih, iw]
    grad_b = None
    if bias:
        grad_b = np.zeros(c_out, dtype=np.float64)
        for oc in range(c_out):
            for b in range(n):
                for y in range(oh):
                    for z in range(ow):
                        grad_b[oc] += g4[b, oc, y, z]
    return (grad_x[0] if unbatched else grad_x), grad_w, grad_b


def _conv_transpose_setup(x, weight, stride, padding, output_padding, groups, dilation):
    """Validate conv_transpose2d arguments; return the loop dimensions."""
    x4, unbatched = batched4d(x)
    if weight.ndim != 4:
        raise ValueError(f"weight must be 4-D (c_in, c_out/groups, kh, kw), got {weight.shape}")
    n, c_in, h, w = x4.shape
    w_c_in, c_out_g, kh, kw = weight.shape
    g = int(groups)
    if g < 1 or w_c_in != c_in or c_in % g != 0:
        raise ValueError(
            f"Given groups={g}, weight of shape {weight.shape}, expected input {x.shape} "
            f"to have {w_c_in} channels, divisible by groups"
        )
    s = _positive(pair(stride, "stride"), "stride")
    d = _positive(pair(dilation, "dilation"), "dilation")
    p = pair(padding, "padding")
    op = pair(output_padding, "output_padding")
    if min(p) < 0 or min(op) < 0:
        raise ValueError(f"padding and output_padding must be >= 0, got {p}, {op}")
    for a in range(2):
        if op[a] >= s[a] and op[a] >= d[a]:
            raise ValueError(f"output_padding {op} must be smaller than stride {s} or dilation {d}")
    # The full scatter of input positions 0..h-1 spans (h-1)*s + d*(k-1) + 1 rows; `padding`
    # crops that many from each side and output_padding adds rows at the end.
    oh = (h - 1) * s[0] + d[0] * (kh - 1) + 1 - 2 * p[0] + op[0]
    ow = (w - 1) * s[1] + d[1] * (kw - 1) + 1 - 2 * p[1] + op[1]
    if oh < 1 or ow < 1:
        raise ValueError(f"conv_transpose2d output size ({oh}, {ow}) is too small")
    c_out = c_out_g * g
    return x4, unbatched, (n, c_in, h, w, c_out, c_out_g, kh, kw, oh, ow, s, d, p, g)


def conv_transpose2d(
    x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
) -> np.ndarray:
    """Transposed conv like torch's; oh = (h-1)*s - 2p + d*(kh-1) + output_padding + 1."""
    x = as_f64(x)
    weight = as_f64(weight)
    x4, unbatched, dims = _conv_transpose_setup(
        x, weight, stride, padding, output_padding, groups, dilation
    )
    n, c_in, h, w, c_out, c_out_g, kh, kw, oh, ow, s, d, p, g = dims
    c_in_g = c_in // g
    out = np.zeros((n, c_out, oh, ow), dtype=np.float64)
    for b in range(n):
        for ic in range(c_in):
            grp = ic // c_in_g
            for ih in range(h):
                for iw in range(w):
                    v = x4[b, ic, ih, iw]
                    for ocl in range(c_out_g):
                        oc = grp * c_out_g + ocl
                        for i in range(kh):
                            y = ih * s[0] - p[0] + i * d[0]
                            if y < 0 or y >= oh:
                                continue
                            for j in range(kw):
                                z = iw * s[1] - p[1] + j * d[1]
                                if z < 0 or z >= ow:
                                    continue
                                out[b, oc, y, z] += v * weight[ic, ocl, i, j]
    if bias is not None:
        bias = as_f64(bias)
        if bias.shape != (c_out,):
            raise ValueError(f"bias must have shape ({c_out},), got {bias.shape}")
        for b in range(n):
            for oc in range(c_out):
                for y in range(oh):
                    for z in range(ow):
                        out[b, oc, y, z] += bias[oc]
    return out[0] if unbatched else out


def conv_transpose2d_backward(
    grad_out,
    x,
    weight,
    *,
    bias=True,
    stride=1,
    padding=0,
    output_padding=0,
    groups=1,
    dilation=1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients (grad_x, grad_weight, grad_bias or None) of conv_transpose2d over the same taps."""
    x = as_f64(x)
    weight = as_f64(weight)
    grad_out = as_f64(grad_out)
    x4, unbatched, dims = _conv_transpose_setup(
        x, weight, stride, padding, output_padding, groups, dilation
    )
    n, c_in, h, w, c_out, c_out_g, kh, kw, oh, ow, s, d, p, g = dims
    g4 = grad_out[None] if unbatched else grad_out
    if g4.shape != (n, c_out, oh, ow):
        raise ValueError(f"grad_out must have shape {(n, c_out, oh, ow)}, got {g4.shape}")
    c_in_g = c_in // g
    grad_x = np.zeros_like(x4)
    grad_w = np.zeros_like(weight)
    for b in range(n):
        for ic in range(c_in):
            grp = ic // c_in_g
            for ih in range(h):
                for iw in range(w):
                    v = x4[b, ic, ih, iw]
                    acc = 0.0
                    for ocl in range(c_out_g):
                        oc = grp * c_out_g + ocl
                        for i in range(kh):
                            y = ih * s[0] - p[0] + i * d[0]
                            if y < 0 or y >= oh:
                                continue
                            for j in range(kw):
                                z = iw * s[1] - p[1] + j * d[1]
                                if z < 0 or z >= ow:
                                    continue
                                go = g4[b, oc, y, z]
                                acc += go * weight[ic, ocl, i, j]
                                grad_w[ic, ocl, i, j] += go * v
                    grad_x[b, ic, ih, iw] = acc
    grad_b = None
    if bias:
        grad_b = np.zeros(c_out, dtype=np.float64)
        for oc in range(c_out):
            for b in range(n):
                for y in range(oh):
                    for z in range(ow):
                        grad_b[oc] += g4[b, oc, y, z]
    return (grad_x[0] if unbatched else grad_x), grad_w, grad_b
