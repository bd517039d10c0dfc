"""Activation names accepted by fused convolution epilogues, and the unfused fallback."""

from __future__ import annotations

import numpy as np

__all__ = [
    "Epilogue",
    "NO_EPILOGUE",
    "parse_activation",
    "apply_epilogue",
    "apply_residual_epilogue",
    "FUSABLE_ACTIVATIONS",
]

# name -> (code in kernels.epilogue, default alpha)
FUSABLE_ACTIVATIONS: dict[str, tuple[int, float]] = {
    "relu": (1, 0.0),
    "relu6": (2, 0.0),
    "leaky_relu": (3, 0.01),
    "sigmoid": (4, 0.0),
    "tanh": (5, 0.0),
    "silu": (6, 0.0),
    "hardswish": (7, 0.0),
    "hardsigmoid": (8, 0.0),
    "gelu": (9, 0.0),
    "gelu_tanh": (10, 0.0),
    "elu": (11, 1.0),
}


class Epilogue(tuple):
    """``(code, alpha)``: the activation applied, after the bias, as outputs are written."""

    __slots__ = ()

    def __new__(cls, code: int = 0, alpha: float = 0.0):
        return super().__new__(cls, (int(code), float(alpha)))

    @property
    def code(self) -> int:
        return self[0]

    @property
    def alpha(self) -> float:
        return self[1]


NO_EPILOGUE = Epilogue()


def parse_activation(activation, op: str = "conv2d") -> Epilogue:
    """``None``, a name, or ``(name, alpha)`` (leaky_relu's slope, elu's alpha) -> Epilogue.

    Example:
        >>> parse_activation(("leaky_relu", 0.2))
        (3, 0.2)
    """
    if activation is None:
        return NO_EPILOGUE
    alpha = None
    if isinstance(activation, tuple) and len(activation) == 2:
        activation, alpha = activation
    if not isinstance(activation, str) or activation not in FUSABLE_ACTIVATIONS:
        raise ValueError(
            f"{op}: activation must be None, one of {sorted(FUSABLE_ACTIVATIONS)} or "
            f"(name, alpha), got {activation!r}"
        )
    code, default = FUSABLE_ACTIVATIONS[activation]
    if alpha is None:
        alpha = default
    if not isinstance(alpha, (int, float, np.floating)) or not np.isfinite(alpha):
        raise ValueError(f"{op}: activation parameter must be a finite number, got {alpha!r}")
    return Epilogue(code, float(alpha))


# Outputs up to this many elements get their epilogue on the calling thread: waking the
# thread pool for one pass over a few hundred KiB costs more than it saves. Measured (bias +
# relu6 in place, 2 threads vs 1, min of 200 interleaved calls, us): 12,544 elements 14 vs 3,
# 112,896 27 vs 20, 301,056 28 vs 25, 401,408 32 vs 32, 451,584 35 vs 36.
SERIAL_EPILOGUE_MAX_ELEMENTS = 1 << 18


def apply_epilogue(out: np.ndarray, bias: np.ndarray | None, epi: Epilogue) -> None:
    """Add ``bias`` per channel and apply ``epi`` to ``out`` (n, c, oh, ow) in place."""
    if bias is None and epi.code == 0:
        return
    from ..kernels import epilogue as k

    n, c = out.shape[:2]
    b = np.zeros(c, out.dtype) if bias is None else np.ascontiguousarray(bias, dtype=out.dtype)
    if out.size <= SERIAL_EPILOGUE_MAX_ELEMENTS:
        k.bias_act_inplace_serial(out.reshape(n, c, -1), b, epi.code, epi.alpha)
        return
    from ..kernels import sync_threads

    sync_threads()
    k.bias_act_inplace(out.reshape(n, c, -1), b, epi.code, epi.alpha)  # (n, c, oh*ow)


def apply_residual_epilogue(out: np.ndarray, residual: np.ndarray, epi: Epilogue) -> None:
    """``out = epi(out + residual)`` in place, one vectorised pass (the bias already added).

    ``out`` and ``residual`` are contiguous arrays of the same shape and dtype, the first two
    dims (n, c); the sum is rounded to their dtype before the activation, as an unfused add
    followed by the activation op.
    """
    from ..kernels import epilogue as k
    from ..kernels import sync_threads

    if out.size == 0:
        return
    rows = out.shape[0] * out.shape[1]
    args = (out.reshape(rows, -1), residual.reshape(rows, -1), epi.code, epi.alpha)
    if out.size <= SERIAL_EPILOGUE_MAX_ELEMENTS:
        k.residual_act_inplace_serial(*args)
        return
    sync_threads()
    k.residual_act_inplace(*args)  # (n*c, oh*ow)
