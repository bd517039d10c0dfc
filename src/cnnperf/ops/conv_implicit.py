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
from .epilogue import NO_EPILOGUE, Epilogue, apply_epilogue, apply_residual_epilogue

__all__ = ["ImplicitGemmConv", "ImplicitGemmWeight", "implicit_geometry"]

# Activations the micro-kernel applies as it stores (kernels.epilogue codes: relu, relu6).
FUSED_ACTS = (0, 1, 2)
_EMPTY = np.zeros(1, dtype=np.float32)  # no bias / no residual


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
    offs: np.ndarray  # (c_in/g * kh * kw,) int64 (cached: never written)
    used: np.ndarray  # (sh * sw,) bool: the stride phases some tap reads
    rows: int
    cols: int
    pitch: int
    flat: bool  # rows run on at the source's pitch wq: outputs (n, c_out, cols), then compacted


def implicit_geometry(p: ConvParams) -> _Geometry:
    """The source layout and term offsets for ``p`` (cached per shape)."""
    return _geometry(p.c_in, p.g, p.h, p.w, p.kh, p.kw, p.sh, p.sw, p.pt, p.pb, p.pl, p.pr,
                     p.dh, p.dw, p.oh, p.ow)  # fmt: skip


_ONE = np.ones(1, dtype=np.bool_)

# Output rows at most this wide are computed as one run at the source's pitch (wq = ow + the
# padding's columns), the columns past ow included, and then compacted: a row of 7 or 14
# pixels would otherwise fill one or two vectors of 8 with a micro-kernel of 1-2 vectors,
# which the loads bound. Measured with the kernel alone (ms, min of interleaved rounds, 2
# threads; rows / flat / im2col plan): 512x7x7 3x3 at batch 1 5.19 / 2.82 / 3.58, 256x14x14
# 3x3 2.23 / 1.83 / 2.32, 256->512 3x3/2 on 14x14 1.93 / 1.30 / 1.34, 128->256 3x3/2 on 28x28
# 1.26 / 1.11 / 1.02; at 56x56 outputs (64->128 3x3/2) 1.16 / 1.15 / 1.06.
FLAT_MAX_WIDTH = 28


@lru_cache(maxsize=256)
def _geometry(c_in, g, h, w, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, oh, ow) -> _Geometry:
    cg = c_in // g
    if (kh, kw, sh, sw, pt, pb, pl, pr) == (1, 1, 1, 1, 0, 0, 0, 0):
        offs = np.arange(cg, dtype=np.int64) * (h * w)
        return _Geometry(True, h, w, c_in * h * w, cg * h * w, offs, _ONE, 1, h * w, 0, False)
    hq = -(-(h + pt + pb) // sh)
    wq = -(-(w + pl + pr) // sw)
    ci, ky, kx = np.meshgrid(np.arange(cg), np.arange(kh), np.arange(kw), indexing="ij")
    ry, rx = ky * dh, kx * dw  # tap offsets in the padded input
    phase = (ci * sh + ry % sh) * sw + rx % sw
    offs = (phase * (hq * wq) + (ry // sh) * wq + rx // sw).reshape(-1).astype(np.int64)
    used = np.zeros(sh * sw, dtype=np.bool_)
    used[((ry % sh) * sw + rx % sw).reshape(-1)] = True
    plane = sh * sw * hq * wq
    geo = (False, hq, wq, c_in * plane, cg * plane, offs, used)
    if wq == ow:  # no columns past the output's: the rows run on as one
        return _Geometry(*geo, 1, oh * ow, 0, False)
    if ow <= FLAT_MAX_WIDTH and oh > 1:
        # one run of (oh - 1) * wq + ow outputs: the last row's extra columns are not formed
        # (their reads could pass the source's end)
        return _Geometry(*geo, 1, (oh - 1) * wq + ow, 0, True)
    return _Geometry(*geo, oh, ow, wq, False)


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
            act = epi.code if residual is None else 0
            CONV_ALGOS["im2col"].run(x, w_prep.weight, bias, p, out, Epilogue(act, epi.alpha))
            _finish_epilogue(out, residual, False, act, epi)
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
        # flat runs: the residual (which has no columns past ow) is added after compacting
        fused_res = residual is not None and not geo.flat
        act = epi.code if epi.code in FUSED_ACTS and (residual is None or fused_res) else 0
        has_bias = bias is not None
        b = np.ascontiguousarray(bias, dtype=np.float32) if has_bias else _EMPTY
        res = residual.reshape(-1) if fused_res else _EMPTY
        if geo.flat:
            runs = np.empty((p.n, p.c_out, geo.cols), dtype=np.float32)  # (n, c_out, run)
            out_flat = runs.reshape(-1)
        else:
            out_flat = out.reshape(-1)
        cog = p.c_out // p.g
        tasks = 8 * config.get_num_threads()
        for gi in range(p.g):
            offs = geo.offs if gi == 0 else geo.offs + gi * geo.group_stride
            implicit_gemm_conv(
                src, geo.img_stride, offs, w_prep.packed[gi], cog, geo.rows, geo.cols,
                geo.pitch, b[gi * cog : (gi + 1) * cog] if has_bias else b, has_bias, res,
                fused_res, act, tasks, p.c_out, gi * cog, out_flat,
            )  # fmt: skip
        if geo.flat:  # row y of a plane starts at y * wq of its run
            item = runs.itemsize
            rows = np.lib.stride_tricks.as_strided(
                runs, shape=out.shape, strides=(p.c_out * geo.cols * item, geo.cols * item,
                                               geo.wq * item, item), writeable=False,
            )  # fmt: skip
            np.copyto(out, rows)
        _finish_epilogue(out, residual, fused_res, act, epi)


def _finish_epilogue(out, residual, fused_res: bool, act: int, epi: Epilogue) -> None:
    """What the kernel left of ``epi`` (and the residual, unless it ``fused_res``): the
    bias is in ``out`` already, the activation ``act`` applied."""
    if residual is not None and not fused_res:
        apply_residual_epilogue(out, residual, epi)
    elif act != epi.code:
        apply_epilogue(out, None, epi)


register_conv_algo(ImplicitGemmConv())
