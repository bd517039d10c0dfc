"""FFT convolution (overlap-save tiles, DFTs as GEMMs) for stride-1 layers with large kernels.

The padded input is cut into output tiles of ``th x tw`` (the whole output when that is
cheapest); each tile reads an ``Fh x Fw`` window, ``Fh = th + ekh - 1``, ``Fw = tw + ekw - 1``
(``ek`` the dilated kernel size), so the circular correlation of the window with the kernel is
exact on the tile (overlap-save). Per chunk of tiles:

1. gather the windows (Numba), ``(Fh, T, c_in, Fw)``;
2. real DFT along w, then complex DFT along h: two GEMMs against DFT matrices, giving the
   spectrum as real/imaginary planes ``(Kw*Fh, 2, T, c_in)``, ``Kw = Fw//2 + 1``;
3. per frequency, ``Y[f] = conj(K[f]) @ X[f]`` over the channels of each group (Numba,
   ``kernels/fft.py``) against the weight spectrum prepared once;
4. inverse complex DFT along h (only the ``th`` rows kept), inverse real DFT along w (only
   ``tw`` columns): two GEMMs;
5. scatter the tiles into ``out`` with the bias and activation fused (Numba).

The DFTs are dense matrix products rather than FFTs: at the window sizes used here (up to a few
tens of points) the GEMMs beat ``numpy.fft`` (pocketfft, single-threaded) on the same planes
(measured single-threaded per plane, forward 2-D real transform: 16x16 0.8 us vs 3.2 us, 32x32
4.4 us vs 11-19 us, 64x64 about equal), split across threads like any GEMM, and work for any
window size, so windows are exactly as large as a tile needs instead of 5-smooth.

Numerics: the error grows with the output's global magnitude, not per element. Measured
(max abs error / max |float64 reference|): float32 0.7e-7..3.5e-7 on the test cases and on the
AlexNet, Inception, 7x7 and 11x11 layers (im2col: 1.6e-7..4.7e-7; PyTorch float32 up to 5e-6);
float64 input is computed in float64 throughout (about 1e-15). A NaN or Inf anywhere in a
window would spread over the whole tile, so such inputs (and overflowing results) are
recomputed with im2col (direct for depthwise), which places them exactly as PyTorch does.

Where it wins: stride-1 kernels of 5x5 and larger with at least 32 channels per group on both
sides (see ``CHOICE_NOTE`` for the measurements and :func:`fft_wins` for the rule).

Workspace: at most ``WORKSPACE_BYTES`` per call (the tiles are processed in chunks), plus the
prepared weight spectrum, ``2 * Kw * Fh * c_out * c_in/g`` values.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import config
from ..shapes import ConvParams
from .conv_algos import CONV_ALGOS, ConvAlgorithm, register_conv_algo
from .epilogue import NO_EPILOGUE, Epilogue

__all__ = [
    "FFTConv",
    "FFTPlan",
    "FFTWeight",
    "fft_plan",
    "fft_wins",
    "WORKSPACE_BYTES",
    "CHOICE_NOTE",
]

# Bound on the per-call buffers (gathered tiles, spectra, inverse stages); chunks of tiles are
# processed one after another so that larger batches and images stay within it.
WORKSPACE_BYTES = 32 * 2**20

CHOICE_NOTE = """\
Measured on the 2-core AVX2 development machine (shared; load 0.7-1.7 during the runs), float32,
2 threads for every engine (torch.set_num_threads(2), OMP_WAIT_POLICY=passive), 11 rounds in
shuffled order after warm-up; figures are medians of the per-round time ratios (fft time with
the weight prepared once / peer time), so > 1 means fft is faster.

layer (n, c_in->c_out, hxw, k, pad)        vs im2col  vs torch  eager (prepare per call) vs im2col
AlexNet conv2   1, 64->192, 27, 5x5, 2       1.33x      1.49x     0.71x
AlexNet conv2   8, 64->192, 27, 5x5, 2       1.67x      2.14x     0.89x
Inception 5x5   1, 32->64, 28, 5x5, 2        1.19x      0.91x     0.80x
Inception 5x5   8, 32->64, 28, 5x5, 2        1.46x      1.34x     1.15x
Inception 5x5   1, 48->64, 35, 5x5, 2        1.54x      1.29x     0.97x
Inception 5x5   8, 48->64, 35, 5x5, 2        1.54x      1.43x     0.96x
7x7             1, 64->64, 56, 7x7, 3        2.78x      2.87x     1.48x
7x7             8, 64->64, 56, 7x7, 3        2.57x      2.30x     2.02x
11x11           1, 64->64, 32, 11x11, 5      4.04x      6.07x     1.42x
11x11           8, 64->64, 32, 11x11, 5      5.78x      7.16x     3.13x
AlexNet conv2 groups=2, 8, 96->256, 27       1.46x      1.67x     1.14x
5x5 dilation 2  8, 64->64, 28                1.57x      2.48x     0.99x
5x5             8, 64->64, 7                 2.78x      1.03x     1.56x
5x5             8, 256->256, 14              1.86x      2.10x     0.80x
Losses: 5x5 with 16 channels at 28x28 n=1 0.79x (1.60x at n=8); 5x5 64->64 at 7x7 n=1 0.76x;
5x5 256->256 at 14x14 n=1 0.97x (the 24 MB weight spectrum is streamed per call); c_in=3 first
layers (11x11 on 32x32 n=8 0.68x, 7x7 on 224x224 n=1 0.25x); 3x3 64->64 at 56x56 0.97x (n=1)
and 0.73x (n=8); 5x5 depthwise 0.35x against the direct kernel.

Eager 5x5 calls (weight spectrum computed per call) against eager im2col, re-measured with the
padding-free im2col (min of 2 x 10 rounds, 2 threads): 64->192 at 27x27 n=8 1.27x, 48->64 at
35x35 n=8 1.10x and n=2 1.24x; losses at n=1 (0.72-0.99x). 32->96 at 28x28 n=8 measured 0.94x
in that script but 1.47x and 1.89x in two full `cnnperf bench` runs (interleaved, medians),
which decide: eager 5x5 goes to FFT from 2048 output positions per call.
"""

# Cost model used to choose the tile size. Per-core rates measured single-threaded on the 2-core
# development machine (float32): transform GEMMs ~60 GFLOP/s, the Numba contraction ~45
# GFLOP/s, gather/scatter ~4 GB/s; these scale with the thread count. The weight spectrum,
# streamed once per chunk, is read at ~12 GB/s whatever the threads. float64 halves the rates.
# Checked against measured times of the 5-7 best-ranked tilings of AlexNet conv2 and Inception
# 5x5 at batch 1 and 8: modelled within 15% (single-threaded), and the chosen tiling within 10%
# of the fastest measured.
_GEMM_RATE = 60e9
_CONTRACT_RATE = 45e9
_STREAM_BW = 12e9
_GLUE_BW = 4e9
_CALL_OVERHEAD = 4e-6  # seconds per GEMM call (one per frequency column in the h-transforms)
_MAX_WINDOW = 96  # longest DFT side considered: a DFT as a GEMM costs O(F) per point


@dataclass(frozen=True)
class FFTPlan:
    """Tiling of one convolution: ``nth x ntw`` tiles of ``th x tw`` outputs per image, each
    read through an ``fh x fw`` window; ``chunk`` tiles are transformed together."""

    th: int
    tw: int
    fh: int
    fw: int
    nth: int
    ntw: int
    chunk: int

    @property
    def kw(self) -> int:
        return self.fw // 2 + 1

    @property
    def nf(self) -> int:
        return self.kw * self.fh


class FFTWeight:
    """A weight prepared for :class:`FFTConv`: its spectrum for one plan, and the weight itself
    (kept for the direct fallback on NaN/Inf, and to re-prepare for another shape)."""

    __slots__ = ("spectrum", "plan", "weight")

    def __init__(self, spectrum: np.ndarray, plan: FFTPlan, weight: np.ndarray):
        self.spectrum = spectrum  # (nf, 2, c_out, c_in/g)
        self.plan = plan
        self.weight = weight  # (c_out, c_in/g, kh, kw)

    @property
    def nbytes(self) -> int:
        return self.spectrum.nbytes + self.weight.nbytes

    def __repr__(self) -> str:
        return f"FFTWeight(spectrum {self.spectrum.shape} {self.spectrum.dtype}, {self.plan})"


def _tile_sizes(out: int) -> list[int]:
    """Tile lengths worth trying for an output side: ``ceil(out/k)`` for every tile count k."""
    return sorted({-(-out // k) for k in range(1, out + 1)}, reverse=True)


def _per_tile_bytes(p: ConvParams, th: int, tw: int, fh: int, fw: int, itemsize: int) -> int:
    """Workspace one tile needs: gathered window then input spectrum, the w-transform, the
    output spectrum then output tile, and the h-inverse (see ``_run_tiles``)."""
    kw = fw // 2 + 1
    inp = (max(fh * fw, 2 * kw * fh) + 2 * kw * fh) * p.c_in
    outp = (max(2 * kw * fh, th * tw) + 2 * kw * th) * p.c_out
    return (inp + outp) * itemsize


def _plan_cost(
    p: ConvParams, th: int, tw: int, itemsize: int, threads: int = 1
) -> tuple[float, FFTPlan]:
    """Modelled seconds for output tiles of ``th x tw`` (rates above), and the plan."""
    ekh = p.dh * (p.kh - 1) + 1
    ekw = p.dw * (p.kw - 1) + 1
    fh, fw = th + ekh - 1, tw + ekw - 1
    kw = fw // 2 + 1
    nth, ntw = -(-p.oh // th), -(-p.ow // tw)
    tiles = p.n * nth * ntw
    per_tile = _per_tile_bytes(p, th, tw, fh, fw, itemsize)
    chunk = max(1, min(tiles, WORKSPACE_BYTES // per_tile))
    chunks = -(-tiles // chunk)
    cg = p.c_in // p.g
    nf = kw * fh
    pin, pout = tiles * p.c_in, tiles * p.c_out  # planes transformed forward / inverse
    transform_flops = (4 * kw * fw * fh + 8 * fh * fh * kw) * pin + (
        8 * th * fh * kw + 4 * kw * tw * th
    ) * pout
    contract_flops = 8 * nf * p.c_out * cg * tiles
    stream_bytes = nf * p.c_out * cg * 2 * itemsize * chunks
    glue_bytes = (fh * fw * pin + th * tw * pout) * itemsize * 2
    per_core = threads * 4 / itemsize  # float64 runs at about half the rate
    cost = (
        transform_flops / (_GEMM_RATE * per_core)
        + max(contract_flops / (_CONTRACT_RATE * per_core), stream_bytes / _STREAM_BW)
        + glue_bytes / (_GLUE_BW * threads)
        + chunks * (2 * kw + 4) * _CALL_OVERHEAD
    )
    if per_tile > WORKSPACE_BYTES:
        cost *= 2  # one tile overflows the workspace: only when nothing smaller fits
    return cost, FFTPlan(th, tw, fh, fw, nth, ntw, chunk)


def fft_plan(p: ConvParams, itemsize: int = 4) -> FFTPlan:
    """The cheapest tiling for ``p`` under the cost model, at the current thread count.

    Every tile count per side is tried (tiles of ``ceil(oh/k)`` rows, windows of at most
    ``_MAX_WINDOW``); the whole output as one tile is the ``k = 1`` case.

    Example:
        >>> from cnnperf.shapes import ConvParams
        >>> plan = fft_plan(ConvParams(8, 64, 27, 27, 192, 5, 5, pt=2, pb=2, pl=2, pr=2))
        >>> plan.fh == plan.th + 4 and plan.nth * plan.th >= 27
        True
    """
    return _best_plan(p, itemsize, config.get_num_threads())


@lru_cache(maxsize=256)
def _best_plan(p: ConvParams, itemsize: int, threads: int) -> FFTPlan:
    ekh = p.dh * (p.kh - 1) + 1
    ekw = p.dw * (p.kw - 1) + 1
    ths = [t for t in _tile_sizes(p.oh) if t + ekh - 1 <= _MAX_WINDOW] or [1]
    tws = [t for t in _tile_sizes(p.ow) if t + ekw - 1 <= _MAX_WINDOW] or [1]
    costs = [_plan_cost(p, th, tw, itemsize, threads) for th in ths for tw in tws]
    return min(costs, key=lambda cp: cp[0])[1]


def fft_wins(p: ConvParams, weight_prepared: bool = True) -> bool:
    """Whether FFT convolution beat im2col on this kind of layer (``CHOICE_NOTE``).

    Stride 1, at least 5x5 taps (any dilation), at least 32 channels per group on the input
    and the output side, and at least 256 output positions per call (n*oh*ow). When the weight
    spectrum is computed on every call (eager ``conv2d`` without a cache) it paid off for
    kernels of 7x7 and larger, and for 5x5 only with at least 2048 output positions per call
    (``CHOICE_NOTE``, last paragraph).

    Example:
        >>> from cnnperf.shapes import ConvParams
        >>> fft_wins(ConvParams(8, 64, 27, 27, 192, 5, 5, pt=2, pb=2, pl=2, pr=2))
        True
        >>> fft_wins(ConvParams(8, 64, 56, 56, 64, 3, 3, pt=1, pb=1, pl=1, pr=1))
        False
    """
    if (p.sh, p.sw) != (1, 1) or min(p.kh, p.kw) < 5:
        return False
    if p.c_in // p.g < 32 or p.c_out // p.g < 32 or p.n * p.oh * p.ow < 256:
        return False
    if weight_prepared or min(p.kh, p.kw) >= 7:
        return True
    return p.n * p.oh * p.ow >= 2048


@lru_cache(maxsize=64)
def _dft_matrices(fh: int, fw: int, th: int, tw: int, dtype_str: str):
    """The four real matrices of the transforms (read-only), computed in float64.

    - ``dw`` (2*Kw, fw): rows (kw, part), real DFT along w: ``Z = sum_w x e^{-2 pi i kw w/fw}``.
    - ``mh`` (2*fh, 2*fh): rows (kh, part), columns (part, h): complex DFT along h.
    - ``mi`` (2*th, 2*fh): rows (part, r), columns (kh, part): inverse complex DFT along h,
      only the th rows of the tile.
    - ``ciw_t`` (2*Kw, tw): rows (kw, part), inverse real DFT along w (Hermitian weights
      1/2/1, and the 1/(fh*fw) scale), only the tw columns of the tile.
    """
    kw = fw // 2 + 1
    beta = 2 * np.pi * np.outer(np.arange(kw), np.arange(fw)) / fw  # (kw, w)
    dw = np.stack([np.cos(beta), -np.sin(beta)], axis=1).reshape(2 * kw, fw)
    alpha = 2 * np.pi * np.outer(np.arange(fh), np.arange(fh)) / fh  # (kh, h)
    c, s = np.cos(alpha), np.sin(alpha)
    mh = np.empty((fh, 2, 2, fh))  # (kh, xpart, zpart, h)
    mh[:, 0, 0], mh[:, 0, 1], mh[:, 1, 0], mh[:, 1, 1] = c, s, -s, c
    a = 2 * np.pi * np.outer(np.arange(th), np.arange(fh)) / fh  # (r, kh)
    ca, sa = np.cos(a), np.sin(a)
    mi = np.empty((2, th, fh, 2))  # (upart, r, kh, ypart)
    mi[0, :, :, 0], mi[0, :, :, 1], mi[1, :, :, 0], mi[1, :, :, 1] = ca, -sa, sa, ca
    b = 2 * np.pi * np.outer(np.arange(kw), np.arange(tw)) / fw  # (kw, s)
    herm = np.full(kw, 2.0)
    herm[0] = 1.0
    if fw % 2 == 0:
        herm[-1] = 1.0  # the Nyquist column has no mirror image
    herm /= fh * fw
    ciw = np.stack([herm[:, None] * np.cos(b), -herm[:, None] * np.sin(b)], axis=1)
    mats = (
        dw,
        mh.reshape(2 * fh, 2 * fh),
        mi.reshape(2 * th, 2 * fh),
        ciw.reshape(2 * kw, tw),
    )
    out = []
    for m in mats:
        m = np.ascontiguousarray(m, dtype=np.dtype(dtype_str))
        m.flags.writeable = False
        out.append(m)
    return tuple(out)


def _weight_spectrum(w: np.ndarray, p: ConvParams, plan: FFTPlan) -> np.ndarray:
    """conj(DFT) of the zero-padded (and dilated) kernel as (nf, 2, c_out, c_in/g), w's dtype.

    Correlating with the kernel is multiplying by its conjugate spectrum. Only the kernel's
    taps enter the DFT sums (at their dilated positions), as two small GEMMs: along w, then,
    per frequency column, along h, whose rows (kh, part) give the layout directly.
    """
    c_out, cg, kh, kwid = w.shape
    fh, fw, kw = plan.fh, plan.fw, plan.kw
    beta = 2 * np.pi * np.outer(np.arange(kw), np.arange(kwid) * p.dw) / fw  # (kw, v)
    ew = np.stack([np.cos(beta), np.sin(beta)], axis=1).reshape(2 * kw, kwid)  # e^{+i beta}
    wt = np.ascontiguousarray(w.transpose(3, 2, 0, 1)).reshape(kwid, -1)  # (kwid, kh*c_out*cg)
    t = ew.astype(w.dtype) @ wt  # (kw*2, kh*c_out*cg)
    alpha = 2 * np.pi * np.outer(np.arange(fh), np.arange(kh) * p.dh) / fh  # (kh_f, u)
    c, s = np.cos(alpha), np.sin(alpha)
    eh = np.empty((fh, 2, 2, kh))  # (kh_f, out part, in part, u): multiply by e^{+i alpha}
    eh[:, 0, 0], eh[:, 0, 1], eh[:, 1, 0], eh[:, 1, 1] = c, -s, s, c
    eh = eh.reshape(2 * fh, 2 * kh).astype(w.dtype)
    spec = np.empty((kw, 2 * fh, c_out * cg), w.dtype)
    par = _Parallel(config.get_num_threads())
    with par.blas_single_threaded():
        par.matmul(eh, t.reshape(kw, 2 * kh, c_out * cg), spec, split=0)  # (kw, fh*2, c_out*cg)
    return spec.reshape(plan.nf, 2, c_out, cg)


class FFTConv(ConvAlgorithm):
    """FFT convolution with overlap-save tiles, for stride 1 (any kernel size, dilation and
    groups are correct; it is fast for kernels of 5x5 and larger, see ``CHOICE_NOTE``).

    Dilation is handled by dilating the kernel (zeros between taps): it costs what a dense
    kernel of the dilated size costs. ``prepare_weight`` returns an :class:`FFTWeight` holding
    the weight spectrum for the plan of ``p``; ``run`` re-prepares if given another.

    Example:
        >>> import numpy as np
        >>> from cnnperf import ops
        >>> x = np.ones((1, 2, 9, 9), np.float32); w = np.ones((3, 2, 5, 5), np.float32)
        >>> float(ops.conv2d(x, w, padding=2, algo="fft")[0, 0, 4, 4].round(3))
        50.0
    """

    name = "fft"

    def why_not(self, p: ConvParams) -> str | None:
        if (p.sh, p.sw) != (1, 1):
            return (
                f"FFT convolution computes every output position, so it needs stride 1 "
                f"(got stride {(p.sh, p.sw)})"
            )
        return None

    def prepare_weight(self, w: np.ndarray, p: ConvParams) -> FFTWeight:
        w = np.ascontiguousarray(w)
        plan = fft_plan(p, w.dtype.itemsize)
        with np.errstate(all="ignore"):  # a non-finite weight is handled by run's fallback
            return FFTWeight(_weight_spectrum(w, p, plan), plan, w)

    def run(self, xp, w_prep, bias, p, out, epi: Epilogue = NO_EPILOGUE):
        if not isinstance(w_prep, FFTWeight):
            w_prep = self.prepare_weight(w_prep, p)
        plan = fft_plan(p, xp.dtype.itemsize)
        if w_prep.plan != plan or w_prep.spectrum.dtype != xp.dtype:
            w_prep = self.prepare_weight(w_prep.weight.astype(xp.dtype, copy=False), p)
        with np.errstate(all="ignore"):  # NaN/Inf are detected below and recomputed
            finite = _run_tiles(xp, w_prep.spectrum, bias, p, plan, out, epi)
        if not finite:
            # NaN/Inf in the input or weight, or an overflow, spread over whole tiles:
            # recompute directly so that they land only where a direct convolution puts them.
            CONV_ALGOS["direct" if p.is_depthwise else "im2col"].run_padded(
                xp, w_prep.weight, bias, p, out, epi
            )


def _run_tiles(xp, spectrum, bias, p: ConvParams, plan: FFTPlan, out, epi: Epilogue) -> bool:
    """All tiles, chunk by chunk (module docstring, steps 1-5); False if an output was not
    finite before the activation."""
    from ..kernels import sync_threads
    from ..kernels.fft import gather_tiles, scatter_tiles, spectral_contract

    sync_threads()
    par = _Parallel(config.get_num_threads())
    dt = xp.dtype
    th, tw, fh, fw, kw, nf = plan.th, plan.tw, plan.fh, plan.fw, plan.kw, plan.nf
    c, co = p.c_in, p.c_out
    dw, mh, mi, ciw_t = _dft_matrices(fh, fw, th, tw, dt.str)
    b = np.zeros(co, dt) if bias is None else np.ascontiguousarray(bias, dtype=dt)
    tiles = p.n * plan.nth * plan.ntw
    cap = min(plan.chunk, tiles)
    buf_in = np.empty(cap * c * max(fh * fw, 2 * kw * fh), dt)  # gathered tiles, then X
    buf_z = np.empty(cap * c * 2 * kw * fh, dt)
    buf_out = np.empty(cap * co * max(2 * nf, th * tw), dt)  # Y, then the output tiles
    buf_u = np.empty(cap * co * 2 * kw * th, dt)
    zero = dt.type(0)
    with par.blas_single_threaded():
        for t0 in range(0, tiles, cap):
            nt = min(cap, tiles - t0)
            a = buf_in[: fh * nt * c * fw].reshape(fh, nt, c, fw)
            gather_tiles(xp, t0, th, tw, plan.nth, plan.ntw, a)
            z = buf_z[: 2 * kw * fh * nt * c].reshape(2 * kw, fh * nt * c)
            par.matmul(dw, a.reshape(fh * nt * c, fw).T, z, split=1)  # (kw*2, fh*nt*c)
            x = buf_in[: nf * 2 * nt * c].reshape(kw, 2 * fh, nt * c)
            par.matmul(mh, z.reshape(kw, 2 * fh, nt * c), x, split=0)  # (kw, fh*2, nt*c)
            y = buf_out[: nf * 2 * nt * co].reshape(nf, 2, nt, co)
            spectral_contract(spectrum, x.reshape(nf, 2, nt, c), p.g, zero, y)
            u = buf_u[: kw * 2 * th * nt * co].reshape(kw, 2 * th, nt * co)
            par.matmul(mi, y.reshape(kw, 2 * fh, nt * co), u, split=0)  # (kw, 2*th, nt*co)
            v = buf_out[: th * nt * co * tw].reshape(th * nt * co, tw)
            par.matmul(u.reshape(2 * kw, th * nt * co).T, ciw_t, v, split=0)  # (th*nt*co, tw)
            v4 = v.reshape(th, nt, co, tw)
            if not scatter_tiles(v4, t0, plan.nth, plan.ntw, b, epi.code, epi.alpha, out):
                return False
    return True


class _Parallel:
    """Run the transform GEMMs on ``threads`` Python threads, BLAS single-threaded in each.

    The transforms are many small GEMMs (one per frequency column) that a 2-thread BLAS does
    no faster than one thread, and a multi-threaded BLAS call leaves its threads spinning for
    a while afterwards, which halved the speed of the Numba contraction that follows (measured
    on the 2-core machine: 4.3 ms alone, 9-13 ms right after a 2-thread sgemm, 4.9 ms after a
    1-thread one). So BLAS runs single-threaded for the whole call and each GEMM is split
    into ``threads`` independent pieces run concurrently (NumPy releases the GIL in matmul).
    """

    _pool = None
    _controller = None

    def __init__(self, threads: int):
        self.threads = threads

    def blas_single_threaded(self):
        if self.threads == 1:
            return contextlib.nullcontext()
        if _Parallel._controller is None:
            from threadpoolctl import ThreadpoolController

            _Parallel._controller = ThreadpoolController()
        return _Parallel._controller.limit(limits=1, user_api="blas")

    def matmul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray, split: int) -> None:
        """``out = a @ b``, cut along ``split``: 0 = rows of ``a`` (or the stack axis of ``b``
        when ``a`` is a single matrix), 1 = columns of ``b``."""
        n = out.shape[0] if split == 0 else out.shape[-1]
        parts = min(self.threads, n)
        if parts <= 1:
            np.matmul(a, b, out=out)
            return
        bounds = [n * i // parts for i in range(parts + 1)]
        jobs = []
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            if split == 1:
                jobs.append((a, b[..., lo:hi], out[..., lo:hi]))
            elif a.ndim == 2 and b.ndim == 3:
                jobs.append((a, b[lo:hi], out[lo:hi]))
            else:
                jobs.append((a[lo:hi], b, out[lo:hi]))
        if _Parallel._pool is None or _Parallel._pool._max_workers < parts - 1:
            _Parallel._pool = ThreadPoolExecutor(max_workers=max(parts - 1, 1))
        futures = [_Parallel._pool.submit(_matmul_into, *job) for job in jobs[1:]]
        _matmul_into(*jobs[0])
        for fut in futures:
            fut.result()


def _matmul_into(a, b, out) -> None:
    # np.errstate is per thread: the caller's does not reach the pool's threads. NaN/Inf are
    # detected after the transforms and recomputed directly.
    with np.errstate(all="ignore"):
        np.matmul(a, b, out=out)


register_conv_algo(FFTConv())
