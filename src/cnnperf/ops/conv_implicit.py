"""The "implicit_gemm" convolution algorithm: ``kernels/implicit_gemm.py`` behind the interface.

The weight is packed once into panels of 4 output channels per group (``prepare_weight``); each
call zero-pads and stride-phase splits the input in one pass (1x1 stride-1 unpadded layers read
the input as it is) and runs the micro-kernel per group, with the bias, a residual and relu or
relu6 applied as the outputs are written. Other activations run as a second pass.

float32 only: float64 inputs run im2col (float64 throughout) with the original weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import config
from ..shapes import ConvParams
from .conv_algos import CONV_ALGOS, ConvAlgorithm, register_conv_algo
from .epilogue import NO_EPILOGUE, Epilogue, apply_epilogue

__all__ = ["ImplicitGemmConv", "ImplicitGemmWeight", "implicit_geometry"]

# Activations the micro-kernel applies as it stores (kernels.epilogue codes: relu, relu6).
FUSED_ACTS = (0, 1, 2)


@dataclass(frozen=True)
class ImplicitGemmWeight:
    """The weight as given (c_out, c_in/g, kh, kw) and packed per group (``pack_weight``)."""

    weight: np.ndarray
    packed: tuple


@dataclass(frozen=True)
class _Geometry:
    """Where the micro-kernel reads: see ``kernels.implicit_gemm.implicit_gemm_conv``."""

    direct: bool  # read the unpadded input itself (1x1, stride 1, no padding)
    hq: int
    wq: int
    img_stride: int
    group_stride: int  # source elements between two groups' first channels
    offs: np.ndarray  # (c_in/g * kh * kw,) int64, read-only
    used: np.ndarray  # (sh * sw,) bool: the stride phases some tap reads
    rows: int
    cols: int
    pitch: int


def implicit_geometry(p: ConvParams) -> _Geometry:
    """The source layout and term offsets for ``p`` (cached per shape)."""
    return _geometry(p.c_in, p.g, p.h, p.w, p.kh, p.kw, p.sh, p.sw, p.pt, p.pb, p.pl, p.pr,
                     p.dh, p.dw, p.oh, p.ow)  # fmt: skip


_ONE = np.ones(1, dtype=np.bool_)
_ONE.flags.writeable = False


@lru_cache(maxsize=256)
def _geometry(c_in, g, h, w, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, oh, ow) -> _Geometry:
    cg = c_in // g
    if (kh, kw, sh, sw, pt, pb, pl, pr) == (1, 1, 1, 1, 0, 0, 0, 0):
        offs = np.arange(cg, dtype=np.int64) * (h * w)
        offs.flags.writeable = False
        return _Geometry(True, h, w, c_in * h * w, cg * h * w, offs, _ONE, 1, h * w, 0)
    hq = -(-(h + pt + pb) // sh)
    wq = -(-(w + pl + pr) // sw)
    ci, ky, kx = np.meshgrid(np.arange(cg), np.arange(kh), np.arange(kw), indexing="ij")
    ry, rx = ky * dh, kx * dw  # tap offsets in the padded input
    phase = (ci * sh + ry % sh) * sw + rx % sw
    offs = (phase * (hq * wq) + (ry // sh) * wq + rx // sw).reshape(-1).astype(np.int64)
    offs.flags.writeable = False
    used = np.zeros(sh * sw, dtype=np.bool_)
    used[((ry % sh) * sw + rx % sw).reshape(-1)] = True
    used.flags.writeable = False
    plane = sh * sw * hq * wq
    if wq == ow:  # no columns past the output's: the rows run on as one
        return _Geometry(False, hq, wq, c_in * plane, cg * plane, offs, used, 1, oh * ow, 0)
    return _Geometry(False, hq, wq, c_in * plane, cg * plane, offs, used, oh, ow, wq)


class ImplicitGemmConv(ConvAlgorithm):
    """Implicit-GEMM convolution with a register-blocked SIMD micro-kernel
    (``kernels/implicit_gemm.py``): any kernel, stride, padding, dilation and groups."""

    name = "implicit_gemm"
    pads_input = True
    fuses_residual = True

    def prepare_weight(self, w, p):
        from ..kernels.implicit_gemm import pack_weight

        w = np.ascontiguousarray(w)
        if w.dtype != np.float32:
            return ImplicitGemmWeight(w, ())
        cog = p.c_out // p.g
        w2 = w.reshape(p.c_out, -1)  # (c_out, c_in/g*kh*kw)
        packed = tuple(pack_weight(w2[gi * cog : (gi + 1) * cog]) for gi in range(p.g))
        return ImplicitGemmWeight(w, packed)

    def run(self, x, w_prep, bias, p, out, epi: Epilogue = NO_EPILOGUE, residual=None):
        if not isinstance(w_prep, ImplicitGemmWeight):
            w_prep = self.prepare_weight(w_prep, p)
        if x.dtype != np.float32 or not w_prep.packed:
            CONV_ALGOS["im2col"].run(x, w_prep.weight, bias, p, out, epi if residual is None
                                     else NO_EPILOGUE)  # fmt: skip
            if residual is not None:
                from .epilogue import apply_residual_epilogue

                apply_residual_epilogue(out, residual, epi)
            return
        from ..kernels import sync_threads
        from ..kernels.implicit_gemm import implicit_gemm_conv, pad_phase_split

        sync_threads()
        geo = implicit_geometry(p)
        if geo.direct:
            src = x.reshape(-1)
        else:
            split = np.empty((p.n, p.c_in, p.sh, p.sw, geo.hq, geo.wq), dtype=np.float32)
            pad_phase_split(x, p.pt, p.pl, p.sh, p.sw, geo.hq, geo.wq, geo.used, split)
            src = split.reshape(-1)  # (n, c_in, sh, sw, hq, wq)
        act = epi.code if epi.code in FUSED_ACTS else 0
        has_bias = bias is not None
        b = np.ascontiguousarray(bias, dtype=np.float32) if has_bias else _EMPTY
        res = residual.reshape(-1) if residual is not None else _EMPTY
        out_flat = out.reshape(-1)
        cog = p.c_out // p.g
        tasks = 8 * config.get_num_threads()
        for gi in range(p.g):
            offs = geo.offs if gi == 0 else geo.offs + gi * geo.group_stride
            implicit_gemm_conv(
                src, geo.img_stride, offs, w_prep.packed[gi], cog, geo.rows, geo.cols,
                geo.pitch, b[gi * cog : (gi + 1) * cog] if has_bias else b, has_bias, res,
                residual is not None, act, tasks, p.c_out, gi * cog, out_flat,
            )  # fmt: skip
        if act != epi.code:
            apply_epilogue(out, None, epi)


_EMPTY = np.zeros(1, dtype=np.float32)

register_conv_algo(ImplicitGemmConv())
