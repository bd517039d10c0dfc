"""Each fusable conv activation as its unfused cnnperf op and its PyTorch function: the oracles
the fused-epilogue tests compare against (tests/ops/test_conv_epilogue.py, test_conv_plan.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnperf import ops

UNFUSED = {
    "relu": (ops.relu, F.relu),
    "relu6": (ops.relu6, F.relu6),
    "leaky_relu": (lambda y: ops.leaky_relu(y, 0.01), lambda t: F.leaky_relu(t, 0.01)),
    "sigmoid": (ops.sigmoid, torch.sigmoid),
    "tanh": (ops.tanh, torch.tanh),
    "silu": (ops.silu, F.silu),
    "hardswish": (ops.hardswish, F.hardswish),
    "hardsigmoid": (ops.hardsigmoid, F.hardsigmoid),
    "gelu": (ops.gelu, F.gelu),
    "gelu_tanh": (lambda y: ops.gelu(y, "tanh"), lambda t: F.gelu(t, approximate="tanh")),
    "elu": (ops.elu, F.elu),
}
