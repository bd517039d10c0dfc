"""Inference compiler: graph IR, tracing, shape inference, passes, memory plan and executor.

The package itself is callable: ``cnnperf.compile(model_or_path, input_shape=None, *,
passes=None)`` is :func:`cnnperf.compile.api.compile_model` (a ``cnnperf.nn`` Module, traced,
or an ONNX model), while ``from cnnperf.compile import Graph`` imports as usual.

Example:
    >>> import cnnperf.compile
    >>> from cnnperf import nn
    >>> cnnperf.compile(nn.Sequential(nn.ReLU()), (None, 2))(np.array([[-1.0, 2.0]], np.float32))
    array([[0., 2.]], dtype=float32)
    >>> from cnnperf.compile import Graph, Node, compile_graph
    >>> g = Graph(nodes=[Node("relu", ["x"], ["y"])], inputs={"x": (None, 2)}, outputs=["y"])
    >>> compile_graph(g)(np.array([[-1.0, 2.0]], np.float32)).tolist()
    [[0.0, 2.0]]
"""

import sys as _sys
import types as _types

from .api import compile_model
from .executor import CompiledModel, compile_graph
from .graph import OPS, Graph, Node
from .layout import choose_layout, undo_layout
from .memory import MemoryPlan, plan_memory
from .passes import (
    DEFAULT_PASSES,
    eliminate_identity,
    fold_batchnorm,
    fuse_conv_activation,
    fuse_gelu_pattern,
    fuse_residual_add,
)
from .profile import format_profile
from .shapes import infer_shapes
from .trace import trace

__all__ = [
    "Graph",
    "Node",
    "OPS",
    "CompiledModel",
    "compile_graph",
    "compile_model",
    "trace",
    "infer_shapes",
    "plan_memory",
    "MemoryPlan",
    "format_profile",
    "eliminate_identity",
    "fold_batchnorm",
    "fuse_conv_activation",
    "fuse_residual_add",
    "fuse_gelu_pattern",
    "choose_layout",
    "undo_layout",
    "DEFAULT_PASSES",
]


class _CallableModule(_types.ModuleType):
    """This package's module type: calling it calls :func:`compile_model`."""

    def __call__(self, model, input_shape=None, *, passes=None) -> CompiledModel:
        return compile_model(model, input_shape, passes=passes)


_sys.modules[__name__].__class__ = _CallableModule
