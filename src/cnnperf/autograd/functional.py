"""Every differentiable function on Tensors under one roof, with ``torch.nn.functional``'s names.

Layers (:mod:`.layers`), activations (:mod:`.activations`), losses (:mod:`.losses`), and the
functions of :mod:`.arith` and :mod:`.shaping` (``matmul``, ``sum``, ``cat``, ``flatten``, ...).

>>> import numpy as np
>>> from cnnperf.autograd import tensor
>>> from cnnperf.autograd import functional as F
>>> x = tensor(np.ones((2, 1, 4, 4), np.float32), requires_grad=True)
>>> w = tensor(np.full((3, 1, 3, 3), 0.1, np.float32), requires_grad=True)
>>> h = F.relu(F.conv2d(x, w, padding=1))
>>> logits = F.linear(F.flatten(F.adaptive_avg_pool2d(h, 1), 1), np.eye(3, dtype=np.float32))
>>> F.cross_entropy(logits, np.array([0, 2])).backward()
>>> w.grad.shape
(3, 1, 3, 3)
"""

from __future__ import annotations

from .activations import (
    elu,
    gelu,
    hardsigmoid,
    hardswish,
    hardtanh,
    leaky_relu,
    log_softmax,
    prelu,
    relu,
    relu6,
    selu,
    sigmoid,
    silu,
    softmax,
    tanh,
)
from .arith import add, astype, div, matmul, mean, mul, neg, pow, sub, sum
from .layers import (
    adaptive_avg_pool2d,
    avg_pool2d,
    batch_norm,
    conv2d,
    conv_transpose2d,
    dropout,
    linear,
    max_pool2d,
    pad,
)
from .losses import cross_entropy, mse_loss
from .shaping import cat, concatenate, flatten, getitem, permute, reshape, transpose

__all__ = [
    "adaptive_avg_pool2d",
    "add",
    "astype",
    "avg_pool2d",
    "batch_norm",
    "cat",
    "concatenate",
    "conv2d",
    "conv_transpose2d",
    "cross_entropy",
    "div",
    "dropout",
    "elu",
    "flatten",
    "gelu",
    "getitem",
    "hardsigmoid",
    "hardswish",
    "hardtanh",
    "leaky_relu",
    "linear",
    "log_softmax",
    "matmul",
    "max_pool2d",
    "mean",
    "mse_loss",
    "mul",
    "neg",
    "pad",
    "permute",
    "pow",
    "prelu",
    "relu",
    "relu6",
    "reshape",
    "selu",
    "sigmoid",
    "silu",
    "softmax",
    "sub",
    "sum",
    "tanh",
    "transpose",
]
