"""Reverse-mode automatic differentiation over the ``ops`` layer: ``Tensor``, the tape, ``no_grad``.

Operations on Tensors run the array-level ``cnnperf.ops`` forward functions and record, when
an input requires grad, a node whose backward calls the matching ``*_backward``. The functions
live in :mod:`cnnperf.autograd.functional` (PyTorch's ``torch.nn.functional`` names).

>>> import numpy as np
>>> from cnnperf.autograd import tensor, functional as F
>>> x = tensor(np.array([[1.0, -2.0]], np.float32), requires_grad=True)
>>> y = F.relu(x) * 3 + x
>>> y.sum().backward(); x.grad.tolist()
[[4.0, 1.0]]
"""

from __future__ import annotations

from . import functional
from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .random_state import default_generator, manual_seed
from .tensor import Node, Tensor, tensor

__all__ = [
    "Tensor",
    "Node",
    "tensor",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "set_grad_enabled",
    "manual_seed",
    "default_generator",
    "functional",
]
