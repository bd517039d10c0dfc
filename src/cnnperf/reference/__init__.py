"""Slow, obviously-correct float64 loop implementations: the test oracle and the naive baseline.

Every function converts its array inputs to float64, never modifies them, and returns float64
(max-pool indices are int64). Loops run over output positions and window taps with explicit
bounds checks; output sizes are counted here independently of ``cnnperf.shapes``. Semantics are
PyTorch's (``torch.nn.functional``), including its conventions at kinks, for NaN in max pooling,
and for cross_entropy's weight / ignore_index / label_smoothing. Backward functions are named
``<op>_backward`` and return the gradients in the order of the differentiable inputs.

Example:
    >>> import numpy as np
    >>> from cnnperf import reference as ref
    >>> ref.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))).tolist()
    [[[[4.0, 4.0], [4.0, 4.0]]]]
"""

from __future__ import annotations

from .activation import (
    clip,
    clip_backward,
    elu,
    elu_backward,
    gelu,
    gelu_backward,
    hardsigmoid,
    hardsigmoid_backward,
    hardswish,
    hardswish_backward,
    leaky_relu,
    leaky_relu_backward,
    prelu,
    prelu_backward,
    relu,
    relu6,
    relu6_backward,
    relu_backward,
    selu,
    selu_backward,
    sigmoid,
    sigmoid_backward,
    silu,
    silu_backward,
    tanh,
    tanh_backward,
)
from .adaptive import (
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    adaptive_max_pool2d,
    adaptive_max_pool2d_backward,
)
from .conv import conv2d, conv2d_backward, conv_transpose2d, conv_transpose2d_backward
from .loss import cross_entropy, cross_entropy_backward, mse_loss, mse_loss_backward
from .misc import dropout, dropout_backward, linear, linear_backward, pad, pad_backward
from .norm import (
    batch_norm,
    batch_norm_backward,
    local_response_norm,
    local_response_norm_backward,
)
from .pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward
from .softmax import log_softmax, log_softmax_backward, softmax, softmax_backward

__all__ = [
    # conv
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    # pooling
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
    # activations
    "relu",
    "relu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "elu",
    "elu_backward",
    "selu",
    "selu_backward",
    "prelu",
    "prelu_backward",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "gelu",
    "gelu_backward",
    "silu",
    "silu_backward",
    "hardswish",
    "hardswish_backward",
    "hardsigmoid",
    "hardsigmoid_backward",
    "relu6",
    "relu6_backward",
    "clip",
    "clip_backward",
    "softmax",
    "softmax_backward",
    "log_softmax",
    "log_softmax_backward",
    # linear, normalisation, dropout, padding
    "linear",
    "linear_backward",
    "batch_norm",
    "batch_norm_backward",
    "dropout",
    "dropout_backward",
    "local_response_norm",
    "local_response_norm_backward",
    "pad",
    "pad_backward",
    # losses
    "cross_entropy",
    "cross_entropy_backward",
    "mse_loss",
    "mse_loss_backward",
]
