"""Direct convolution: one output plane per parallel task, the input read in place.

The textbook definition (e.g. Goodfellow, Bengio & Courville, *Deep Learning*, eq. 9.4) made
correct at the edges by padding the input once up front, so the inner loop never bounds-checks
and never wraps through negative indices. The innermost loop runs along an output row, which
Numba vectorises when the stride is 1.
"""

from __future__ import annotations

from numba import njit, prange

from . import FASTMATH
from .epilogue import act_scalar

__all__ = ["conv2d_direct"]


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def conv2d_direct(xp, w, bias, sh, sw, dh, dw, g, act, alpha, out):  # pragma: no cover - compiled
    """``out[b, oc, y, x] = bias[oc] + sum w[oc, ic, i, j] * xp[b, cin, y*sh + i*dh, x*sw + j*dw]``.

    Args:
        xp: padded input (n, c_in, hp, wp), contiguous.
        w: weight (c_out, c_in/g, kh, kw), contiguous.
        bias: (c_out,) (zeros when the convolution has none).
        act, alpha: the fused activation (``kernels.epilogue`` codes), applied per plane.
        out: (n, c_out, oh, ow), written completely.
    """
    n = xp.shape[0]
    c_out, cg, kh, kw = w.shape
    oh = out.shape[2]
    ow = out.shape[3]
    co_g = c_out // g
    for t in prange(n * c_out):
        b = t // c_out
        oc = t - b * c_out
        c0 = (oc // co_g) * cg
        o = out[b, oc]
        o[:, :] = bias[oc]
        for ic in range(cg):
            plane = xp[b, c0 + ic]
            for i in range(kh):
                for j in range(kw):
                    wv = w[oc, ic, i, j]
                    for y in range(oh):
                        row = plane[y * sh + i * dh]
                        orow = o[y]
                        off = j * dw
                        for x in range(ow):
                            orow[x] += wv * row[x * sw + off]
        if act != 0:
            for y in range(oh):
                for x in range(ow):
                    o[y, x] = act_scalar(float(o[y, x]), act, alpha)
