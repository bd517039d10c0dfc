"""Winograd convolution F(m x m, 3x3) for 3x3 stride-1 layers (Lavin & Gray, CVPR 2016).

Per chunk of tile rows: the input transform (Numba, parallel over channels) writes
``V (a*a, c_in, tiles)``, the a*a GEMMs ``M[p] = U[p] @ V[p]`` follow, and the output
transform (Numba) writes ``act(A^T M A + bias)`` straight into the output. Chunks are sized
so that V and M together stay within :data:`CHUNK_BYTES` whatever the image size.

The GEMMs run on the blocked micro-kernel of ``kernels/blocked.py`` (``gemm_conv_blocked``,
the a*a points as its images) where it applies: float32, ungrouped, c_out a multiple of 8,
F(2x2) or F(4x4); M comes out channel-blocked and a vectorised output transform
(:func:`winograd_output_blocked <cnnperf.kernels.winograd.winograd_output_blocked>`) reads it
and adds the bias, a residual and relu or relu6 (other activations follow in a pass).
Elsewhere BLAS does them (one batched ``np.matmul``; per group when groups > 1). On
ResNet-18's layers the blocked path took 0.72-0.92 of the time of the BLAS path at batch 1
and 0.75-0.91 at batch 8 (medians of 40 interleaved calls, 2 threads, relu fused): the
per-point GEMMs are small (64x64 by 64x196 at 64x56x56), where OpenBLAS reached 85 GFLOP/s on
2 threads and the micro-kernel 158, and there is no hand-over between Numba's and OpenBLAS's
threads. With the residual and the finiteness check fused, compiled ResNet-18 took 0.79-0.80
of the time of the BLAS path at batch 1 (medians of 60 interleaved runs). The table below
predates it (BLAS GEMMs).

Registered algorithms: ``winograd_f23``, ``winograd_f43`` and ``winograd`` (F(4x4,3x3), or
F(2x2,3x3) for layers with few tiles, see :func:`default_tile`). F(6x6,3x3) has kernels
(``conv2d_winograd(..., m=6)``) but is not registered: its float32 error reached 2.3e-5 of
max |y| on ResNet-like layers (over the 2e-5 budget; F(4x4) stays under 1.5e-5), and it was
slower than F(4x4) on all eight ResNet layers measured below.

Measured on the 2-core development machine (AMD EPYC, AVX2), 2 threads, median of 7
interleaved rounds, prepared weights, ms; ResNet 3x3 stride-1 layers (c_in = c_out):

====================  ======  =====  ======  ======  ======
layer (n, c, h=w)     im2col  torch  F(2x2)  F(4x4)  F(6x6)
====================  ======  =====  ======  ======  ======
1, 64, 56             2.77    1.53   1.38    1.01    1.18
1, 128, 28            2.65    1.58   1.28    1.07    1.54
1, 256, 14            2.37    1.71   1.31    1.54    2.44
1, 512, 7             2.80    2.55   2.24    3.38    6.01
8, 64, 56             15.9    10.3   10.1    7.31    8.13
8, 128, 28            14.1    10.1   8.17    5.96    6.64
8, 256, 14            13.6    10.3   7.07    6.63    8.90
8, 512, 7             16.5    16.8   8.46    6.83    11.7
====================  ======  =====  ======  ======  ======

(torch: ``F.conv2d`` with ``torch.set_num_threads(2)``; run with ``OMP_WAIT_POLICY=PASSIVE``
and ``OPENBLAS_THREAD_TIMEOUT=4`` so that neither library's idle threads spin while the other
runs: interleaving them otherwise slows both by up to 10x on two cores.)
"""

from __future__ import annotations

import numpy as np

from ..shapes import ConvParams
from .conv_algos import CONV_ALGOS, ConvAlgorithm, register_conv_algo
from .epilogue import NO_EPILOGUE, apply_epilogue, apply_residual_epilogue

__all__ = [
    "WinogradConv",
    "conv2d_winograd",
    "default_tile",
    "winograd_weight_transform",
    "CHUNK_BYTES",
]

# V + M bytes per chunk. n=8 64x56x56 with F(4x4) (interleaved medians, ms): 1 MiB 11.8,
# 2 MiB 10.2, 4 MiB 9.4, 8 MiB 8.7, 16 MiB 9.3, 32 MiB 10.0 (L3 is 16 MiB); 128 and 256
# channels gain another 3-7% at 16 MiB, not worth doubling the workspace.
CHUNK_BYTES = 8 << 20
# Fewest tiles per chunk (only binds for c_in + c_out > 900): thinner per-point GEMMs waste
# BLAS, and U (a*a/9 times the weight) is re-read from memory for every chunk.
MIN_CHUNK_TILES = 64
# "winograd" uses F(2x2) below this many F(4x4) tiles (n * ceil(oh/4) * ceil(ow/4)): with few
# tiles the GEMMs are too thin to hide reading U, which F(2x2) keeps 16/36 as big. Measured
# (table above): 4 and 16 tiles (512x7x7 and 256x14x14 at n=1) F(2x2) wins by 1.5x and 1.2x;
# from 32 tiles (512x7x7 at n=8) F(4x4) wins.
F2_BELOW_TILES = 32


def default_tile(p: ConvParams) -> int:
    """The output tile size m that ``"winograd"`` uses for ``p``: 4, or 2 when F(4x4,3x3)
    would have fewer than :data:`F2_BELOW_TILES` tiles in all.

    Example:
        >>> default_tile(ConvParams(1, 512, 7, 7, 512, 3, 3, pt=1, pb=1, pl=1, pr=1))
        2
    """
    tiles = p.n * -(-p.oh // 4) * -(-p.ow // 4)
    return 2 if tiles < F2_BELOW_TILES else 4


def winograd_weight_transform(w: np.ndarray, m: int) -> np.ndarray:
    """``U = G g G^T`` per (c_out, c_in/g) filter, laid out as the left-hand operand of the
    per-point GEMMs.

    Computed as one GEMM ``kron(G, G) @ g`` (K = 9) in w's dtype: for float32 its error is
    at most 1e-7 of max |U| (measured against float64 for 256 and 512 channels), and it runs
    2.7-6x faster than float64 math plus a cast (512x512 weight, F(4x4): 7.8 ms against
    20.7 ms), which matters because eager calls and the backward pass transform every time.

    Args:
        w: (c_out, c_in/groups, 3, 3).
        m: output tile size (2, 4 or 6).

    Shape:
        (a*a, c_out, c_in/groups) with a = m + 2; point ``p = r*a + c``.

    Example:
        >>> winograd_weight_transform(np.ones((8, 4, 3, 3), np.float32), 4).shape
        (36, 8, 4)
    """
    from ..kernels.winograd import winograd_matrices

    _, g, _ = winograd_matrices(m)
    a = m + 2
    c_out, cg = w.shape[:2]
    # U[r*a + c] = sum_kl G[r, k] g[k, l] G[c, l]: one GEMM with kron(G, G).
    gg = np.kron(g, g).astype(w.dtype)  # (a*a, 9)
    return (gg @ w.reshape(c_out * cg, 9).T).reshape(a * a, c_out, cg)  # (a*a, c_out*cg)


def _chunk_rows(p: ConvParams, m: int, tw: int, itemsize: int) -> int:
    """Tile rows per chunk: V + M within CHUNK_BYTES but at least MIN_CHUNK_TILES tiles,
    then evened out so the last chunk is not a sliver."""
    a = m + 2
    rows_total = p.n * -(-p.oh // m)
    per_row = a * a * (p.c_in + p.c_out) * tw * itemsize
    nr = max(CHUNK_BYTES // per_row, -(-MIN_CHUNK_TILES // tw), 1)
    nr = min(nr, rows_total)
    chunks = -(-rows_total // nr)
    return -(-rows_total // chunks)


def conv2d_winograd(
    xp: np.ndarray,
    u: np.ndarray,
    bias: np.ndarray | None,
    p: ConvParams,
    out: np.ndarray,
    m: int,
    epi=NO_EPILOGUE,
    packed: np.ndarray | None = None,
    residual: np.ndarray | None = None,
) -> bool:
    """Write ``epi(conv2d(x, w) + bias [+ residual])`` into ``out`` with Winograd F(m x m,
    3x3); returns False when the convolution had a non-finite value before the activation
    (then wrong: see :meth:`WinogradConv.run`), True otherwise.

    Args:
        xp: the zero-padded input (n, c_in, oh + 2, ow + 2), contiguous.
        u: ``winograd_weight_transform(w, m)``, (a*a, c_out, c_in/g); unused (may be None)
            when ``packed`` is given.
        bias: (c_out,) or None.
        p: the convolution (3x3, stride 1, dilation 1).
        out: (n, c_out, oh, ow), written completely.
        m: output tile size, 2, 4 or 6 (as u was prepared for).
        epi: fused activation.
        packed: :func:`pack_winograd_weight` of the weight (float32, ungrouped, c_out a
            multiple of 8, m 2 or 4) to run the per-point GEMMs on the blocked micro-kernel of
            ``kernels/blocked.py`` instead of BLAS; its output transform applies none, relu
            and relu6 (and a residual before them), other activations follow in a pass.
        residual: None, or an array like ``out`` added before the activation (fused into
            the blocked path's output transform; a second pass after the BLAS path).

    Shape:
        out (n, c_out, oh, ow) with ``oh = h + pt + pb - 2``; the workspace is at most
        max(CHUNK_BYTES, MIN_CHUNK_TILES tiles) whatever n, h and w.

    Example:
        >>> p = ConvParams(1, 2, 5, 5, 3, 3, 3, pt=1, pb=1, pl=1, pr=1)
        >>> out = np.empty((1, 3, 5, 5), np.float32)
        >>> w = np.ones((3, 2, 3, 3), np.float32)
        >>> xp = np.pad(np.ones((1, 2, 5, 5), np.float32), ((0, 0), (0, 0), (1, 1), (1, 1)))
        >>> conv2d_winograd(xp, winograd_weight_transform(w, 2), None, p, out, 2)
        True
        >>> float(out[0, 0, 2, 2]), float(out[0, 0, 0, 0])
        (18.0, 8.0)
    """
    from ..kernels import sync_threads
    from ..kernels.winograd import winograd_input_transform, winograd_output_transform

    sync_threads()
    a = m + 2
    a2 = a * a
    th, tw = -(-p.oh // m), -(-p.ow // m)
    rows_total = p.n * th
    if rows_total == 0:
        return True
    nr = _chunk_rows(p, m, tw, xp.dtype.itemsize)
    if packed is not None:
        if epi.code in _CLAMPS:
            return _winograd_blocked(xp, packed, bias, p, out, m, _CLAMPS[epi.code], th, tw, nr,
                                     residual)  # fmt: skip
        # another activation: the same convolution, then a pass (as the BLAS path's residual)
        finite = _winograd_blocked(xp, packed, bias, p, out, m, _CLAMPS[0], th, tw, nr, None)
        if residual is None:
            apply_epilogue(out, None, epi)
        else:
            apply_residual_epilogue(out, residual, epi)
        return finite
    conv_epi = epi if residual is None else NO_EPILOGUE
    g = p.g
    cg, cog = p.c_in // g, p.c_out // g
    vbuf = np.empty(a2 * p.c_in * nr * tw, dtype=xp.dtype)
    mbuf = np.empty(a2 * p.c_out * nr * tw, dtype=xp.dtype)
    b = np.zeros(p.c_out, out.dtype) if bias is None else np.ascontiguousarray(bias, out.dtype)
    for r0 in range(0, rows_total, nr):
        k = min(nr, rows_total - r0)
        tc = k * tw
        v = vbuf[: a2 * p.c_in * tc].reshape(a2, p.c_in, tc)
        mm = mbuf[: a2 * p.c_out * tc].reshape(a2, p.c_out, tc)
        winograd_input_transform(m, xp, th, tw, r0, k, v)
        if g == 1:
            np.matmul(u, v, out=mm)  # (a2, c_out, c_in) @ (a2, c_in, tc)
        else:
            vg = v.reshape(a2, g, cg, tc)
            np.matmul(u.reshape(a2, g, cog, cg), vg, out=mm.reshape(a2, g, cog, tc))
        winograd_output_transform(m, mm, b, conv_epi.code, conv_epi.alpha, r0, th, tw, out)
    # every activation keeps NaN, so a check after it sees a tile's spread NaN or Inf
    finite = bool(np.isfinite(out).all())
    if residual is not None:
        apply_residual_epilogue(out, residual, epi)
    return finite


# epilogue codes the blocked path applies as a clamp: none, relu, relu6
_CLAMPS = {0: (-np.inf, np.inf), 1: (0.0, np.inf), 2: (0.0, 6.0)}


def pack_winograd_weight(w: np.ndarray, m: int, p: ConvParams) -> np.ndarray | None:
    """``U = G g G^T`` of ``w`` laid out for the blocked path: one packed GEMM weight per
    transform point (``kernels.blocked.pack_gemm_weight``'s layout, point after point), or
    None where the blocked path does not apply (float64, groups, c_out not a multiple of 8,
    F(6x6)).

    The same GEMM as :func:`winograd_weight_transform` (K = 9) on the weight's channels
    reordered first, so that it writes the packed layout itself rather than reordering U
    (a*a/9 times the weight) afterwards. It still takes about 2.5x the plain transform's time
    (512x512 weight, F(2x2): 6.0 ms against 2.3), which eager calls pay every time: the
    heuristic gives them Winograd only with enough outputs per weight (``ops.conv``).

    Shape:
        (a*a, blocks, c_in, 8), blocks = c_out/8 rounded up to a multiple of PW_BLOCKS.
    """
    from ..kernels.blocked import BLOCK, PW_BLOCKS
    from ..kernels.winograd import winograd_matrices

    c_out, c_in = w.shape[:2]
    if w.dtype != np.float32 or p.g != 1 or c_out % BLOCK or m not in (2, 4):
        return None
    _, g, _ = winograd_matrices(m)
    gg = np.kron(g, g).astype(np.float32)  # (a*a, 9)
    blocks = -(-(c_out // BLOCK) // PW_BLOCKS) * PW_BLOCKS
    wt = np.zeros((blocks, c_in, BLOCK, 9), np.float32)  # [ob, c, j] = w[ob*8 + j, c]
    wt[: c_out // BLOCK] = w.reshape(c_out // BLOCK, BLOCK, c_in, 9).transpose(0, 2, 1, 3)
    return (gg @ wt.reshape(-1, 9).T).reshape(len(gg), blocks, c_in, BLOCK)


def _winograd_blocked(xp, packed, bias, p, out, m, clamp, th, tw, nr, residual) -> bool:
    """conv2d_winograd's per-chunk steps with the GEMMs on ``gemm_conv_blocked``: the a*a
    points are its images (each with its own weight, ``w_img_stride`` apart), a point's
    ``(c_in, tc)`` slice of V its NCHW input (term c at ``c*tc``, pixel t at ``t``), and the
    blocked results go to :func:`winograd_output_blocked
    <cnnperf.kernels.winograd.winograd_output_blocked>`. No BLAS call, so no hand-over
    between Numba's and OpenBLAS's threads; on the per-point GEMMs of ResNet-18's layers at
    batch 1 it ran at 157-183 GFLOP/s against np.matmul's 85-130 (2 threads)."""
    return _blocked_program(packed, bias, p, m, clamp, th, tw, nr)(xp, out, residual)


def _blocked_program(packed, bias, p, m, clamp, th, tw, nr):
    """:func:`_winograd_blocked`'s steps prepared (each chunk's sizes and work split at the
    current thread count, the bias): a ``run(xp, out, residual) -> finite`` that allocates
    its workspace and calls the kernels. (The workspace is allocated per run, not kept: a
    compiled model binds one program per layer.)"""
    from .. import config
    from ..kernels.blocked import BLOCK
    from ..kernels.blocked import gemm_conv_blocked as gemm
    from ..kernels.winograd import winograd_input_transform, winograd_output_blocked
    from .conv_blocked import gemm_work_split

    a2 = (m + 2) ** 2
    rows_total = p.n * th
    c_in, cob = p.c_in, p.c_out // BLOCK
    w_stride = packed[0].size
    zero = np.full(packed.shape[1] * BLOCK, -0.0, np.float32)  # no bias in the GEMMs
    b = np.zeros(p.c_out, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    flat_w = packed.reshape(-1)
    threads = config.get_num_threads()
    lo, hi = clamp
    steps = []
    for r0 in range(0, rows_total, nr):
        k = min(nr, rows_total - r0)
        tc = k * tw
        chunk, splits = gemm_work_split(tc, c_in, cob, a2, threads)
        steps.append((r0, k, tc, np.arange(c_in, dtype=np.int64) * tc, chunk, splits))
    v_size, m_size = a2 * c_in * nr * tw, a2 * cob * nr * tw * BLOCK

    def run(xp, out, residual) -> bool:
        vbuf = np.empty(v_size, np.float32)
        mbuf = np.empty(m_size, np.float32)
        finite = True
        for r0, k, tc, offs, chunk, splits in steps:
            v = vbuf[: a2 * c_in * tc]
            mb = mbuf[: a2 * cob * tc * BLOCK]
            winograd_input_transform(m, xp, th, tw, r0, k, v.reshape(a2, c_in, tc))
            gemm(v, c_in * tc, offs, tc, 1, tc, flat_w, zero, mb, False, a2, cob, tc, chunk,
                 splits, -np.inf, np.inf, mb, w_stride)  # fmt: skip
            finite &= winograd_output_blocked(m, mb, b, lo, hi, r0, k, th, tw, out, residual)
        return finite

    return run


class WinogradConv(ConvAlgorithm):
    """F(m x m, 3x3) Winograd convolution: 3x3 kernels, stride 1, dilation 1, groups (one GEMM
    per group and point) but not depthwise. ``m=None``: the tile of :func:`default_tile`.
    A residual is added as the blocked path writes (a second pass after the BLAS path)."""

    fuses_residual = True

    def __init__(self, m: int | None, name: str):
        self.m = m
        self.name = name

    def why_not(self, p: ConvParams) -> str | None:
        if (p.kh, p.kw) != (3, 3):
            return f"Winograd F(mxm,3x3) needs a 3x3 kernel, got {p.kh}x{p.kw}"
        if (p.sh, p.sw) != (1, 1):
            return f"Winograd needs stride 1, got stride {(p.sh, p.sw)}"
        if (p.dh, p.dw) != (1, 1):
            return f"Winograd needs dilation 1, got dilation {(p.dh, p.dw)}"
        if p.is_depthwise:
            return (
                "depthwise (groups == c_in): each group's GEMMs would be (c_out/g x 1) @ "
                "(1 x tiles), too thin for BLAS; the direct loop is faster"
            )
        return None

    def tile(self, p: ConvParams) -> int:
        return default_tile(p) if self.m is None else self.m

    def prepare_weight(self, w: np.ndarray, p: ConvParams) -> WinogradWeight:
        w = np.ascontiguousarray(w)
        m = self.tile(p)
        with np.errstate(all="ignore"):  # a non-finite weight is handled by run's fallback
            packed = pack_winograd_weight(w, m, p)
            u = winograd_weight_transform(w, m) if packed is None else None
        return WinogradWeight(u, w, packed, m)

    def run(self, xp, w_prep, bias, p, out, epi=NO_EPILOGUE, residual=None):
        if not isinstance(w_prep, WinogradWeight):
            w_prep = self.prepare_weight(w_prep, p)
        u, m = w_prep.u, w_prep.m
        with np.errstate(all="ignore"):  # NaN/Inf are detected and recomputed
            finite = conv2d_winograd(xp, u, bias, p, out, m, epi, w_prep.packed, residual)
        if not finite:
            _recompute_directly(xp, w_prep, bias, p, out, epi, residual)

    def bind(self, x, w_prep, bias, p, epi, out, residual=None):
        """:meth:`run` of the unpadded ``x`` into ``out`` prepared for these very arrays (see
        ``Conv2dPlan.bind``): a call without arguments, or None where the blocked path does
        not apply."""
        from ..kernels import sync_threads
        from .conv import _pad_input

        if w_prep.packed is None or epi.code not in _CLAMPS or p.n < 1:
            return None
        m = w_prep.m
        th, tw = -(-p.oh // m), -(-p.ow // m)
        program = _blocked_program(w_prep.packed, bias, p, m, _CLAMPS[epi.code], th, tw,
                                   _chunk_rows(p, m, tw, 4))  # fmt: skip

        def run() -> None:
            sync_threads()
            xp = _pad_input(x, p)  # as run_conv_into pads for run()
            with np.errstate(all="ignore"):
                finite = program(xp, out, residual)
            if not finite:
                _recompute_directly(xp, w_prep, bias, p, out, epi, residual)

        return run


def _recompute_directly(xp, w_prep, bias, p, out, epi, residual) -> None:
    """A NaN or Inf in a tile's input (or an overflow) spreads over the whole tile in the
    transforms. Recompute directly so non-finite values land only where a direct convolution
    puts them (as PyTorch does)."""
    if residual is None:
        CONV_ALGOS["im2col"].run_padded(xp, w_prep.weight, bias, p, out, epi)
    else:
        CONV_ALGOS["im2col"].run_padded(xp, w_prep.weight, bias, p, out, NO_EPILOGUE)
        apply_residual_epilogue(out, residual, epi)


class WinogradWeight:
    """A weight prepared for :class:`WinogradConv` and tile size ``m``: G g G^T either packed
    for the blocked path (``packed``, :func:`pack_winograd_weight`) or for BLAS (``u``,
    :func:`winograd_weight_transform`; None when packed), and the weight itself (kept for the
    direct fallback on NaN/Inf)."""

    __slots__ = ("u", "weight", "packed", "m")

    def __init__(self, u: np.ndarray | None, weight: np.ndarray, packed: np.ndarray | None,
                 m: int) -> None:  # fmt: skip
        self.u = u
        self.weight = weight
        self.packed = packed
        self.m = m


WINOGRAD_F23 = register_conv_algo(WinogradConv(2, "winograd_f23"))
WINOGRAD_F43 = register_conv_algo(WinogradConv(4, "winograd_f43"))
WINOGRAD = register_conv_algo(WinogradConv(None, "winograd"))
