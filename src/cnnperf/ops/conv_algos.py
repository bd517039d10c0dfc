"""Convolution algorithms behind one interface, and the registry ``select_conv_algo`` reads.

Each algorithm answers ``why_not(p)`` (None when it covers the case), prepares its weight once
(``prepare_weight``) and runs into a caller-allocated ``out`` from an already padded input.
"""

from __future__ import annotations

import numpy as np

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

        ``xp`` is the zero-padded input (n, c_in, h + pt + pb, w + pl + pr), contiguous;
        ``w_prep`` is what :meth:`prepare_weight` returned; ``bias`` is (c_out,) or None.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<conv algorithm {self.name!r}>"


class DirectConv(ConvAlgorithm):
    """A Numba direct loop: one output plane per parallel task, no workspace."""

    name = "direct"

    def run(self, xp, w_prep, bias, p, out, epi=NO_EPILOGUE):
        from ..kernels import sync_threads
        from ..kernels.direct import conv2d_direct

        sync_threads()
        b = np.zeros(p.c_out, dtype=out.dtype) if bias is None else np.ascontiguousarray(bias)
        conv2d_direct(xp, w_prep, b, p.sh, p.sw, p.dh, p.dw, p.g, epi.code, epi.alpha, out)


class Im2colConv(ConvAlgorithm):
    """im2col lowering (Numba) + one BLAS GEMM per image and group.

    1x1 stride-1 unpadded convolutions skip the lowering: the image already is the column matrix.
    The workspace is one image's columns, (c_in*kh*kw, oh*ow).
    """

    name = "im2col"

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
    if p.is_pointwise:
        for b in range(p.n):
            gemm_into(wmat, xp[b].reshape(p.c_in, oh * ow), p.g, out[b].reshape(p.c_out, oh * ow))
            apply_epilogue(out[b : b + 1], bias, epi)
        return
    k = p.c_in * p.kh * p.kw
    rows = band_rows(k, oh, ow, xp.dtype.itemsize)
    cols = np.empty((k, rows * ow), dtype=xp.dtype)
    for b in range(p.n):
        out_b = out[b].reshape(p.c_out, oh * ow)  # (c_out, oh*ow)
        for y0 in range(0, oh, rows):
            r = min(rows, oh - y0)
            im2col(xp[b], p.kh, p.kw, p.sh, p.sw, p.dh, p.dw, y0, r, ow, cols)
            gemm_into(wmat, cols[:, : r * ow], p.g, out_b[:, y0 * ow : (y0 + r) * ow])
        apply_epilogue(out[b : b + 1], bias, epi)


# Bound on the im2col workspace. A band of output rows is lowered and multiplied at a time.
IM2COL_WORKSPACE_BYTES = 8 << 20


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
