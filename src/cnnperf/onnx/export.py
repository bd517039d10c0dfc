"""ONNX export: ``cnnperf.onnx.save(model, path, input_shape)`` writes a standard ONNX file.

A ``cnnperf.nn`` Module is traced (:func:`cnnperf.compile.trace.trace`, eval mode) and its graph
IR exported before any optimisation pass: Conv, BatchNormalization, Relu, ... as written. A
compile ``Graph`` is exported as it is, and a ``CompiledModel`` as its (optimised) graph: a conv
carrying a fused activation becomes Conv followed by the activation's node(s), a folded
BatchNormalization is already part of the conv's weights. The per-op emitters live in
:mod:`cnnperf.onnx.export_ops` (network ops), :mod:`cnnperf.onnx.export_ops_tensor` and
:mod:`cnnperf.onnx.export_ops_math`.

The file uses only the default ``ai.onnx`` domain at the chosen opset (13 to 21), float32
initializers, float32 inputs and outputs with static shapes but for a symbolic batch ``"N"``,
and passes ``onnx.checker.check_model(model, full_check=True)`` before it is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, BinaryIO

import numpy as np

from .._atomic import atomic_write_bytes
from .._version import __version__
from ..compile.executor import CompiledModel
from ..compile.graph import Graph
from ..compile.layout import undo_layout
from ..compile.shapes import infer_shapes
from ..compile.trace import trace
from .export_ops import NETWORK_EXPORTERS, ExportContext
from .export_ops_math import MATH_EXPORTERS
from .export_ops_tensor import TENSOR_EXPORTERS
from .importer import require_onnx

__all__ = ["save", "export_model", "EXPORTERS", "MIN_OPSET", "MAX_OPSET", "MAX_BYTES"]

#: IR op -> emitter (see :mod:`cnnperf.onnx.export_ops`); an IR op missing here cannot be saved.
EXPORTERS = {**NETWORK_EXPORTERS, **TENSOR_EXPORTERS, **MATH_EXPORTERS}

MIN_OPSET, MAX_OPSET = 13, 21
#: protobuf's limit on one serialized message (external tensor data is not written).
MAX_BYTES = 2**31 - 1


def save(
    model: Any,
    path: str | os.PathLike | BinaryIO,
    input_shape: Sequence[int | None] | None = None,
    *,
    opset: int = 17,
    dynamic_batch: bool = True,
    input_name: str = "input",
    output_name: str = "output",
):
    """Export a cnnperf model to an ONNX file that other runtimes (ONNX Runtime, ...) run.

    Args:
        model: a ``cnnperf.nn.Module`` (traced in eval mode on a random input of
            ``input_shape``; its train/eval mode is restored), a ``cnnperf.compile.Graph`` or
            a ``CompiledModel`` (its graph, with fused activations and folded batch norms).
        path: a file path (written atomically: a temporary file in the same folder, fsync,
            rename) or a binary file-like object with ``.write``.
        input_shape: ``(n, c, h, w)`` including the batch; required for a Module. For a
            one-input Graph or CompiledModel it may give the batch size (with
            ``dynamic_batch=False``); its other dimensions must equal the graph's.
        opset: the ai.onnx opset to target, 13 to 21.
        dynamic_batch: the first dimension of inputs and outputs is the symbol ``"N"`` (any
            batch size); False keeps the batch of ``input_shape`` or of the graph.
        input_name, output_name: names of the graph input and output (``name_0``,
            ``name_1``, ... when there are several).

    Returns:
        The exported ``onnx.ModelProto``.

    Raises:
        ImportError: the ``onnx`` package is not installed.
        ValueError: a bad opset, shape or name, a missing ``input_shape``, a graph whose
            batch size cannot be made dynamic, or a model over protobuf's 2 GiB limit.
        TypeError: ``model`` or ``path`` is none of the accepted kinds.
        NotImplementedError: the graph holds IR ops (or op forms) with no ONNX exporter; the
            message names them and their nodes.

    Example:
        >>> import io, onnx
        >>> from cnnperf import nn
        >>> from cnnperf.onnx import load
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        ...                     nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10))
        >>> buf = io.BytesIO()
        >>> proto = save(net, buf, (1, 3, 8, 8), opset=17)
        >>> [n.op_type for n in proto.graph.node]
        ['Conv', 'BatchNormalization', 'Relu', 'MaxPool', 'Flatten', 'Gemm']
        >>> [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
        ['N', 3, 8, 8]
        >>> load(buf.getvalue())(np.zeros((2, 3, 8, 8), np.float32)).shape
        (2, 10)
    """
    if not (hasattr(path, "write") or isinstance(path, (str, os.PathLike))):
        raise TypeError(
            "cnnperf.onnx.save: path must be a str, an os.PathLike or a binary file-like object "
            f"with .write, got {type(path).__name__}"
        )
    proto = export_model(model, input_shape, opset=opset, dynamic_batch=dynamic_batch,
                         input_name=input_name, output_name=output_name)  # fmt: skip
    data = proto.SerializeToString()
    if hasattr(path, "write"):
        path.write(data)
    else:
        atomic_write_bytes(path, data)
    return proto


def export_model(
    model: Any,
    input_shape: Sequence[int | None] | None = None,
    *,
    opset: int = 17,
    dynamic_batch: bool = True,
    input_name: str = "input",
    output_name: str = "output",
):
    """The ``onnx.ModelProto`` of ``model``; arguments and errors as :func:`save`."""
    onnx = require_onnx()
    opset = _check_opset(onnx, opset)
    graph, title = _graph_of(model, input_shape, dynamic_batch)
    missing = [f"{n.op} (node {n.name!r})" for n in graph.nodes if n.op not in EXPORTERS]
    if missing:
        raise NotImplementedError(
            f"cnnperf.onnx.save: no ONNX exporter for {len(missing)} node(s): "
            + ", ".join(missing) + f"; exportable IR ops: {sorted(EXPORTERS)}"
        )  # fmt: skip
    weight_bytes = sum(4 * np.asarray(v).size for v in graph.initializers.values())
    if weight_bytes > MAX_BYTES:
        raise ValueError(_too_large(f"its float32 weights take {weight_bytes} bytes"))
    shapes = infer_shapes(graph)
    in_names = _io_names(input_name, "input_name", len(graph.inputs))
    out_names = _io_names(output_name, "output_name", len(graph.outputs))
    if set(in_names) & set(out_names):
        raise ValueError(
            f"cnnperf.onnx.save: input_name and output_name must differ, got {in_names} and "
            f"{out_names}"
        )
    # Graph outputs written by a node get their ONNX names directly; an output that is a graph
    # input, a constant or a repeated value is copied by an Identity node.
    reserved = dict(zip(graph.inputs, in_names, strict=True))
    producers, copies = graph.producers(), []
    for value, name in zip(graph.outputs, out_names, strict=True):
        if value in producers and value not in reserved:
            reserved[value] = name
        else:
            copies.append((value, name))
    ctx = ExportContext(onnx, opset, graph.initializers, shapes, reserved)
    for n in graph.nodes:
        EXPORTERS[n.op](ctx, n, [ctx.name(v) for v in n.inputs], [ctx.name(v) for v in n.outputs])
    for value, name in copies:
        ctx.node("Identity", [ctx.name(value)], [name], name)

    helper, float32 = onnx.helper, onnx.TensorProto.FLOAT

    def typed(name: str, shape: tuple):
        dims = ["N" if d is None and i == 0 else d for i, d in enumerate(shape)]
        return helper.make_tensor_value_info(name, float32, dims)

    onnx_graph = helper.make_graph(
        ctx.nodes, title,
        [typed(name, graph.inputs[v]) for v, name in zip(graph.inputs, in_names, strict=True)],
        [typed(name, shapes[v]) for v, name in zip(graph.outputs, out_names, strict=True)],
        initializer=ctx.initializers,
    )  # fmt: skip
    opset_id = helper.make_opsetid("", opset)
    proto = helper.make_model(
        onnx_graph, opset_imports=[opset_id], producer_name="cnnperf",
        producer_version=__version__, ir_version=helper.find_min_ir_version_for([opset_id]),
        doc_string=f"exported by cnnperf {__version__}",
    )  # fmt: skip
    if proto.ByteSize() > MAX_BYTES:
        raise ValueError(_too_large(f"the model takes {proto.ByteSize()} bytes"))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:  # ValidationError, InferenceError: a graph ONNX reads otherwise
        raise ValueError(
            f"cnnperf.onnx.save: the exported model fails the ONNX checker: {e}"
        ) from e
    return proto


def _too_large(what: str) -> str:
    return (
        f"cnnperf.onnx.save: the model is too large for one ONNX file: {what}, over "
        f"protobuf's 2 GiB limit ({MAX_BYTES} bytes); external tensor data is not supported"
    )


def _check_opset(onnx, opset: Any) -> int:
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise ValueError(f"cnnperf.onnx.save: opset must be an int, got {opset!r}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(
            f"cnnperf.onnx.save: opset {opset} is not supported; choose {MIN_OPSET} to {MAX_OPSET}"
        )
    if opset > onnx.defs.onnx_opset_version():
        raise ValueError(
            f"cnnperf.onnx.save: opset {opset} needs a newer onnx package (onnx "
            f"{onnx.__version__} knows up to opset {onnx.defs.onnx_opset_version()})"
        )
    return int(opset)


def _io_names(base: Any, what: str, count: int) -> list[str]:
    if not isinstance(base, str) or not base:
        raise ValueError(f"cnnperf.onnx.save: {what} must be a non-empty str, got {base!r}")
    return [base] if count == 1 else [f"{base}_{i}" for i in range(count)]


def _shape_arg(input_shape: Any) -> tuple:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    ok = shape and all(
        (d is None and i == 0)
        or (isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1)
        for i, d in enumerate(shape)
    )
    if not ok:
        raise ValueError(
            "cnnperf.onnx.save: input_shape must be positive ints, e.g. (1, 3, 224, 224) (the "
            f"batch may be None), got {input_shape!r}"
        )
    return tuple(None if d is None else int(d) for d in shape)


def _graph_of(model: Any, input_shape: Any, dynamic_batch: bool) -> tuple[Graph, str]:
    """The graph IR to export, with the inputs' batch dimension as requested."""
    from ..nn import Module

    if isinstance(model, Module):
        if input_shape is None:
            raise ValueError(
                f"cnnperf.onnx.save: exporting a {type(model).__name__} module needs "
                "input_shape, e.g. (1, 3, 224, 224) (the batch included)"
            )
        shape = _shape_arg(input_shape)
        if not dynamic_batch and shape[0] is None:
            raise ValueError(
                f"cnnperf.onnx.save: dynamic_batch=False needs a batch size in input_shape, "
                f"got {shape}"
            )
        trace_shape = (None, *shape[1:]) if dynamic_batch else shape
        return trace(model, trace_shape), type(model).__name__
    if isinstance(model, CompiledModel):
        graph = model.graph
    elif isinstance(model, Graph):
        graph = model
    else:
        raise TypeError(
            "cnnperf.onnx.save expects a cnnperf.nn.Module, a cnnperf.compile Graph or a "
            f"CompiledModel, got {type(model).__name__}"
        )
    graph = undo_layout(graph.validate())
    batch = None
    if input_shape is not None:
        shape = _shape_arg(input_shape)
        (name, have), *rest = graph.inputs.items() or [(None, None)]
        if rest or name is None or len(have) != len(shape) or have[1:] != shape[1:]:
            raise ValueError(
                f"cnnperf.onnx.save: input_shape {shape} does not fit the graph's inputs "
                f"{graph.inputs} (one input; only the batch dimension may differ)"
            )
        batch = shape[0]
    changed, old_shapes = False, infer_shapes(graph)
    for name, have in graph.inputs.items():
        if not have:
            continue
        new = None if dynamic_batch else (batch if batch is not None else have[0])
        if new is None and not dynamic_batch:
            raise ValueError(
                f"cnnperf.onnx.save: graph input {name!r} has a dynamic batch {have}: "
                "dynamic_batch=False needs input_shape with a batch size"
            )
        changed |= have[0] is not None and new != have[0]
        graph.inputs[name] = (new, *have[1:])
    if changed:
        _free_resize_batch(graph, old_shapes)
        _check_batch_free(graph)
    return graph, "cnnperf_graph"


def _free_resize_batch(graph: Graph, shapes: dict) -> None:
    """A resize that keeps a fixed batch (size = input's, scale 1) keeps any batch: its size
    becomes None (the IR's "keep the batch")."""
    for n in graph.nodes:
        sizes, scales = n.attrs.get("sizes"), n.attrs.get("scales")
        if n.op == "resize" and sizes and sizes[0] is not None and (not scales or scales[0] == 1):
            if sizes[0] == shapes[n.inputs[0]][0]:
                n.attrs["sizes"] = (None, *sizes[1:])


def _check_batch_free(graph: Graph) -> None:
    """A graph traced or imported at a fixed batch may bake it in (a Reshape to (1, 400)):
    its batch can change only if every output still follows the inputs' first dimension."""
    probe = graph.copy()
    probe.inputs = {k: (None, *v[1:]) if v else v for k, v in graph.inputs.items()}
    try:
        shapes = infer_shapes(probe)
        ok = all(shapes[v] and shapes[v][0] is None for v in probe.outputs)
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise ValueError(
            "cnnperf.onnx.save: this graph's batch size is fixed inside it (its outputs do not "
            "follow the input's first dimension): export it with dynamic_batch=False and its "
            "own batch size"
        )
