"""ONNX import and export: ``cnnperf.onnx.load(model) -> CompiledModel`` and
``cnnperf.onnx.save(model, path, input_shape)``.

The ``onnx`` package is an optional dependency (``pip install 'cnnperf[onnx]'``), imported
only when a model is loaded or saved. Supported ops are the keys of
:data:`cnnperf.onnx.mappers.MAPPERS` (import) and :data:`cnnperf.onnx.export.EXPORTERS`
(export: graph IR ops; :func:`save` takes a ``cnnperf.nn`` Module, a Graph or a CompiledModel).

Example:
    >>> from onnx import TensorProto, helper
    >>> node = helper.make_node("Relu", ["x"], ["y"])
    >>> graph = helper.make_graph([node], "g",
    ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
    ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])])
    >>> model = load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    >>> model(np.array([[-1.0, 0.5, 2.0]], np.float32)).tolist()
    [[0.0, 0.5, 2.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from ..compile import CompiledModel, Graph, compile_graph
from .export import save
from .importer import import_model, require_onnx

__all__ = ["load", "save", "import_model", "require_onnx"]


def load(
    model,
    *,
    input_shapes: Mapping[str, tuple] | None = None,
    passes: Iterable[Callable[[Graph], Graph]] | None = None,
) -> CompiledModel:
    """Import an ONNX model and compile it for inference.

    Args:
        model: a file path, the serialized bytes or an ``onnx.ModelProto``.
        input_shapes: shapes for graph inputs whose non-batch dimensions are dynamic (or to fix
            the batch size); the first dimension may be None (any batch size).
        passes: graph passes to apply (default ``cnnperf.compile.DEFAULT_PASSES``; ``()`` for
            none).

    Raises:
        ImportError: the ``onnx`` package is not installed.
        ValueError: the model is malformed (truncated, not ONNX, fails the ONNX checker).
        NotImplementedError: the model uses ops or op forms cnnperf does not support (all
            unsupported op types are listed with their node names).
    """
    return compile_graph(import_model(model, input_shapes), passes)
