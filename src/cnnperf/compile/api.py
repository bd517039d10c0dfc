"""``cnnperf.compile(model_or_path, input_shape=None)``: one entry point for both model kinds.

A ``cnnperf.nn.Module`` is traced (:func:`cnnperf.compile.trace.trace`); an ONNX model (a path,
bytes or an ``onnx.ModelProto``) is imported by :mod:`cnnperf.onnx` (imported here lazily:
ONNX sits above the compiler). Both are then compiled by :func:`compile_graph`.

Example:
    >>> from cnnperf import nn
    >>> model = compile_model(nn.Sequential(nn.Linear(3, 2), nn.ReLU()), (None, 3))
    >>> model(np.ones((4, 3), np.float32)).shape, model.input_names, model.output_names
    ((4, 2), ['input'], ['output'])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .executor import CompiledModel, compile_graph
from .graph import Graph
from .trace import trace

__all__ = ["compile_model"]


def compile_model(
    model: Any,
    input_shape: Sequence[int | None] | None = None,
    *,
    passes: Iterable[Callable[[Graph], Graph]] | None = None,
) -> CompiledModel:
    """Compile a ``cnnperf.nn`` model or an ONNX model for inference (no autograd).

    Args:
        model: a ``cnnperf.nn.Module``, a path to an ``.onnx`` file, its bytes or an
            ``onnx.ModelProto``.
        input_shape: required for a Module: ``(n, c, h, w)``-like, the batch may be None. For
            an ONNX model with one input, optional: overrides that input's shape.
        passes: graph passes (default ``DEFAULT_PASSES``; ``()`` for none).

    Raises:
        ValueError: a Module without ``input_shape``; ``input_shape`` for a multi-input ONNX
            model (use ``cnnperf.onnx.load(..., input_shapes={name: shape})``).
        TypeError: ``model`` is none of the accepted kinds.
        NotImplementedError: a module, op or ONNX op the compiler does not cover.
    """
    from ..nn import Module

    if isinstance(model, Module):
        if input_shape is None:
            raise ValueError(
                f"cnnperf.compile: a {type(model).__name__} module needs input_shape, e.g. "
                "(None, 3, 224, 224) (None: any batch size)"
            )
        return compile_graph(trace(model, input_shape), passes)
    is_proto = type(model).__name__ == "ModelProto"
    if not (is_proto or isinstance(model, (str, os.PathLike, bytes, bytearray, memoryview))):
        raise TypeError(
            "cnnperf.compile expects a cnnperf.nn.Module, a path to an .onnx file, bytes or an "
            f"onnx.ModelProto, got {type(model).__name__}"
        )
    from ..onnx import load
    from ..onnx.importer import parse_model

    proto = parse_model(model)
    shapes = None
    if input_shape is not None:
        consts = {t.name for t in proto.graph.initializer}
        names = [vi.name for vi in proto.graph.input if vi.name not in consts]
        if len(names) != 1:
            raise ValueError(
                f"cnnperf.compile: input_shape needs a one-input model; this one has inputs "
                f"{names}: use cnnperf.onnx.load(model, input_shapes={{name: shape}})"
            )
        shapes = {names[0]: tuple(input_shape)}
    return load(proto, input_shapes=shapes, passes=passes)
