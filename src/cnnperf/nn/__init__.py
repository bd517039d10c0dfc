"""Neural-network modules with ``torch.nn``'s names, arguments, initialisation and state dicts.

Layers are :class:`Module` objects holding :class:`Parameter` tensors; a model is called on a
Tensor or a float ndarray and trained with :mod:`cnnperf.optim`. ``state_dict()`` keys are
PyTorch's, so weights move between the two as ``{key: ndarray}`` dictionaries
(``torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``).
Initial weights follow PyTorch's default distributions, drawn from the generator of
:func:`cnnperf.autograd.manual_seed` (or a ``generator=`` argument).

>>> import numpy as np
>>> from cnnperf import nn
>>> model = nn.Sequential(
...     nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
...     nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
>>> logits = model(np.zeros((2, 3, 8, 8), np.float32))
>>> nn.functional.cross_entropy(logits, np.array([1, 7])).backward()
>>> logits.shape, model[0].weight.grad.shape, list(model.state_dict())[:3]
((2, 10), (8, 3, 3, 3), ['0.weight', '1.weight', '1.bias'])
"""

from __future__ import annotations

from . import functional, init, utils
from ._state import IncompatibleKeys
from .activation import (
    ELU,
    GELU,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
)
from .batchnorm import BatchNorm1d, BatchNorm2d
from .container import ModuleDict, ModuleList, Sequential
from .conv import Conv2d, ConvTranspose2d
from .layers import Dropout, Flatten, Identity, Linear
from .loss import CrossEntropyLoss, MSELoss
from .module import Module
from .parameter import Parameter
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d

__all__ = [
    "Module",
    "Parameter",
    "IncompatibleKeys",
    "Sequential",
    "ModuleList",
    "ModuleDict",
    "Conv2d",
    "ConvTranspose2d",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Linear",
    "Flatten",
    "Dropout",
    "Identity",
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "ELU",
    "Hardtanh",
    "Sigmoid",
    "Hardsigmoid",
    "Tanh",
    "GELU",
    "SiLU",
    "Hardswish",
    "Softmax",
    "LogSoftmax",
    "CrossEntropyLoss",
    "MSELoss",
    "functional",
    "init",
    "utils",
]
