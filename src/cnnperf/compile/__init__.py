"""Inference compiler: graph IR, shape inference, passes and the executor.

Example:
    >>> from cnnperf.compile import Graph, Node, compile_graph
    >>> g = Graph(nodes=[Node("relu", ["x"], ["y"])], inputs={"x": (None, 2)}, outputs=["y"])
    >>> compile_graph(g)(np.array([[-1.0, 2.0]], np.float32)).tolist()
    [[0.0, 2.0]]
"""

from .executor import CompiledModel, compile_graph
from .graph import OPS, Graph, Node
from .passes import DEFAULT_PASSES, eliminate_identity, fold_batchnorm, fuse_conv_activation
from .shapes import infer_shapes

__all__ = [
    "Graph",
    "Node",
    "OPS",
    "CompiledModel",
    "compile_graph",
    "infer_shapes",
    "eliminate_identity",
    "fold_batchnorm",
    "fuse_conv_activation",
    "DEFAULT_PASSES",
]
