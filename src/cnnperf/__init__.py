"""cnnperf: fast convolutional neural networks on the CPU, from plain NumPy arrays.

>>> import numpy as np, cnnperf
>>> x = np.ones((1, 3, 8, 8), np.float32); w = np.ones((4, 3, 3, 3), np.float32)
>>> cnnperf.ops.conv2d(x, w, padding=1).shape
(1, 4, 8, 8)
"""

from __future__ import annotations

import os as _os

from . import autograd, nn, ops, optim, reference
from ._version import __version__
from .autograd import Tensor, no_grad, tensor
from .config import get_num_threads, set_num_threads
from .ops.autotune import tune

__all__ = ["__version__", "ops", "reference", "get_num_threads", "set_num_threads", "tune"]
__all__ += ["autograd", "Tensor", "tensor", "no_grad", "nn", "optim", "compile", "onnx"]


def __getattr__(name: str):
    """Import the heavier subpackages ``compile`` and ``onnx`` on first access."""
    if name in ("compile", "onnx"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if _os.environ.get("CNNPERF_NUM_THREADS"):
    set_num_threads(get_num_threads())
