"""ONNX ModelProto -> graph IR: parsing, checking, constant folding and the import loop.

Each ONNX node is handed to its mapper (see :mod:`cnnperf.onnx.mappers`) with an
:class:`ImportContext` that knows the constant values seen so far (initializers, Constant
nodes, folded shape glue) and the static shape of every value. Mappers either fold a node whose
inputs are all constant or emit graph IR nodes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from ..compile.graph import Graph, Node
from ..compile.shapes import infer_node

__all__ = [
    "import_model",
    "parse_model",
    "load_external_data",
    "ImportContext",
    "BATCH",
    "require_onnx",
]

# Stand-in for the dynamic batch size inside folded shape values (Shape of a value whose first
# dimension is dynamic); Reshape turns it back into "copy the input's batch dimension".
BATCH = 2**40 + 3

MIN_OPSET = 7


def require_onnx():
    """Import and return the ``onnx`` package, or raise ImportError saying how to install it."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError(
            "cnnperf.onnx needs the 'onnx' package (an optional dependency): "
            "pip install 'cnnperf[onnx]'  (or: pip install 'onnx>=1.14')"
        ) from e
    return onnx


def parse_model(model):
    """An ``onnx.ModelProto`` from a path, bytes or a ModelProto; ValueError if malformed.

    ONNX's checker is not run: it rejects models ONNX Runtime runs (outputs without shapes);
    the import itself checks what cnnperf relies on.
    """
    onnx = require_onnx()
    if isinstance(model, onnx.ModelProto):
        proto = model
        _refuse_external(onnx, proto, "the given ModelProto")
    elif isinstance(model, (bytes, bytearray, memoryview)):
        proto = _parse_bytes(onnx, bytes(model), "the given bytes")
        _refuse_external(onnx, proto, "the given bytes")
    elif isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"cnnperf.onnx.load: no such file: {path!r}")
        with open(path, "rb") as f:
            proto = _parse_bytes(onnx, f.read(), repr(path))
        load_external_data(onnx, proto, os.path.dirname(os.path.abspath(path)), repr(path))
    else:
        raise TypeError(
            "cnnperf.onnx.load expects a path, bytes or an onnx.ModelProto, "
            f"got {type(model).__name__}"
        )
    if not proto.graph.output:
        raise ValueError("invalid ONNX model: the graph has no outputs")
    return proto


def _tensors(proto):
    """The graph's initializers and its Constant nodes' tensors (where external data can be)."""
    yield from proto.graph.initializer
    for n in proto.graph.node:
        for a in n.attribute:
            if a.HasField("t"):
                yield a.t


def _refuse_external(onnx, proto, what: str) -> None:
    for t in _tensors(proto):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise ValueError(
                f"{what}: tensor {t.name!r} keeps its data in an external file; load the "
                "model from its path so that the file can be found next to it"
            )


def load_external_data(onnx, proto, base_dir: str, what: str = "the model") -> None:
    """Read external tensor data into ``proto`` (in place) from files under ``base_dir``.

    A location that is absolute or resolves (``..``, symbolic links) outside ``base_dir`` is
    refused, as are missing files and short reads: ValueError naming the tensor.
    """
    base = os.path.realpath(base_dir)
    for t in _tensors(proto):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        where = f"{what}: tensor {t.name!r} (external data {loc!r})"
        if not loc or os.path.isabs(loc) or os.path.splitdrive(loc)[0]:
            raise ValueError(f"{where}: the location must be a path relative to the model's folder")
        path = os.path.realpath(os.path.join(base, loc))
        if os.path.commonpath([base, path]) != base:
            raise ValueError(f"{where}: the path escapes the model's folder {base!r}; refused")
        if not os.path.isfile(path):
            raise ValueError(f"{where}: no such file {path!r}")
        try:
            offset = int(info.get("offset", 0))
            length = None if info.get("length") is None else int(info["length"])
        except ValueError as e:
            raise ValueError(f"{where}: bad offset/length ({e})") from e
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read() if length is None else f.read(length)
        if length is not None and len(data) != length:
            raise ValueError(f"{where}: the file holds {len(data)} of the {length} bytes needed")
        t.raw_data = data
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT


def _parse_bytes(onnx, data: bytes, what: str):
    if not data:
        raise ValueError(f"{what} is empty, not an ONNX model")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:
        raise ValueError(f"{what} is not a valid ONNX model (protobuf parse failed: {e})") from e
    if not proto.HasField("graph"):
        raise ValueError(f"{what} is not a valid ONNX model: it has no graph")
    return proto


def opset_of(proto) -> int:
    """The default-domain (ai.onnx) opset version the model imports."""
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ValueError("invalid ONNX model: it imports no version of the default (ai.onnx) domain")


class ImportContext:
    """State shared by the mappers while one graph is imported."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.graph = Graph()
        self.consts: dict[str, np.ndarray] = {}
        self.shapes: dict[str, tuple] = {}
        # Values some node reads or the graph outputs: a declared optional output (Dropout's
        # mask) that no one reads can be left uncomputed.
        self.used: set[str] = set()
        self._count = 0

    # -- reading ---------------------------------------------------------------------------
    def is_const(self, name: str) -> bool:
        return name in self.consts

    def const(self, name: str) -> np.ndarray | None:
        """The constant value of ``name``, or None (absent optional inputs are ``""``)."""
        return self.consts.get(name) if name else None

    def require_const(self, name: str, node, what: str) -> np.ndarray:
        """The constant value of ``name``; NotImplementedError naming the node if not constant."""
        value = self.const(name)
        if value is None:
            raise NotImplementedError(
                f"{node.op_type} node {node.name!r}: {what} ({name!r}) must be a constant "
                "(initializer or Constant) for cnnperf"
            )
        return value

    def is_used(self, name: str) -> bool:
        """Whether a node reads ``name`` or the graph outputs it ("" is never used)."""
        return bool(name) and name in self.used

    def shape(self, name: str) -> tuple:
        if name in self.consts:
            return tuple(self.consts[name].shape)
        return self.shapes[name]

    # -- writing ---------------------------------------------------------------------------
    def set_const(self, name: str, value) -> None:
        self.consts[name] = np.asarray(value)

    def emit(self, op: str, inputs: list[str], outputs: list[str], onnx_node, **attrs) -> None:
        """Append an IR node; constant inputs become initializers; outputs get their shapes."""
        for v in inputs:
            if v in self.consts and v not in self.graph.initializers:
                self.graph.initializers[v] = self._runtime_array(v)
        self._count += 1
        name = onnx_node.name or f"{onnx_node.op_type}_{self._count}"
        node = Node(op, inputs, outputs, attrs, name=name)
        try:
            shapes = infer_node(node, [self.shape(v) for v in inputs])
        except ValueError as e:
            where = f"{onnx_node.op_type} node {onnx_node.name!r}"
            raise ValueError(f"{where}: {e}" if where not in str(e) else str(e)) from e
        self.shapes.update(zip(outputs, shapes, strict=False))
        self.graph.nodes.append(node)

    def _runtime_array(self, name: str) -> np.ndarray:
        a = self.consts[name]
        if a.dtype.kind == "f":
            return np.ascontiguousarray(a)
        raise NotImplementedError(
            f"constant {name!r} of dtype {a.dtype} would be a run-time input: cnnperf graphs "
            "compute in floating point only"
        )


def _attrs(onnx, node) -> dict:
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        try:
            out[a.name] = v.decode() if isinstance(v, bytes) else v
        except UnicodeDecodeError as e:
            raise ValueError(
                f"invalid ONNX model: {node.op_type} node {node.name!r}: attribute {a.name!r} "
                f"is not valid UTF-8 text ({e})"
            ) from e
    return out


def _input_shape(onnx, vi, overrides: Mapping[str, tuple]) -> tuple:
    if vi.name in overrides:
        return tuple(overrides[vi.name])
    t = vi.type.tensor_type
    if vi.type.WhichOneof("value") != "tensor_type":
        raise NotImplementedError(f"graph input {vi.name!r} is not a tensor")
    if t.elem_type != onnx.TensorProto.FLOAT:
        name = onnx.TensorProto.DataType.Name(t.elem_type)
        raise NotImplementedError(f"graph input {vi.name!r} has type {name}; cnnperf needs FLOAT")
    if not t.HasField("shape"):
        raise ValueError(f"graph input {vi.name!r} has no shape: pass input_shapes={{...}}")
    dims = []
    for i, d in enumerate(t.shape.dim):
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif i == 0:
            dims.append(None)
        else:
            raise ValueError(
                f"graph input {vi.name!r}: dimension {i} ({d.dim_param or '?'}) is dynamic; "
                "only the first (batch) dimension may be: pass input_shapes={name: shape}"
            )
    return tuple(dims)


def import_model(model, input_shapes: Mapping[str, tuple] | None = None) -> Graph:
    """Import an ONNX model (path, bytes or ModelProto) as a graph IR :class:`Graph`.

    Raises ValueError for a malformed model and NotImplementedError listing every node whose op
    (or op form) cnnperf does not support.
    """
    from .mappers import MAPPERS

    onnx = require_onnx()
    proto = parse_model(model)
    opset = opset_of(proto)
    if opset < MIN_OPSET:
        raise NotImplementedError(f"ONNX opset {opset} is not supported (need >= {MIN_OPSET})")
    g = proto.graph
    ctx = ImportContext(opset)
    for t in g.initializer:
        try:
            ctx.set_const(t.name, onnx.numpy_helper.to_array(t))
        except Exception as e:
            raise ValueError(f"initializer {t.name!r} cannot be read: {e}") from e
    ctx.used = {v for n in g.node for v in n.input if v} | {o.name for o in g.output}
    overrides = dict(input_shapes or {})
    for vi in g.input:
        if vi.name not in ctx.consts:
            shape = _input_shape(onnx, vi, overrides)
            ctx.graph.inputs[vi.name] = shape
            ctx.shapes[vi.name] = shape
    # Every unsupported node is reported, in one error: an unknown op type, or a form its
    # mapper refuses. Nodes reading their outputs are skipped (their inputs have no shape).
    unknown_ops: list[str] = []
    forms: list[str] = []
    skipped: set[str] = set()
    for n in g.node:
        if n.domain not in ("", "ai.onnx") or n.op_type not in MAPPERS:
            unknown_ops.append(f"{n.op_type} (node {n.name!r})")
            skipped.update(n.output)
            continue
        if any(v in skipped for v in n.input):
            skipped.update(n.output)
            continue
        try:
            MAPPERS[n.op_type](ctx, n, _attrs(onnx, n))
        except NotImplementedError as e:
            forms.append(str(e))
            skipped.update(n.output)
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError(
                f"invalid ONNX model: {n.op_type} node {n.name!r} lacks an input, attribute "
                f"or value it needs, or has one of the wrong type ({type(e).__name__}: {e})"
            ) from e
    _raise_unsupported(unknown_ops, forms)
    ctx.graph.outputs = [o.name for o in g.output]
    for name in ctx.graph.outputs:
        if name in ctx.consts and name not in ctx.graph.initializers:
            ctx.graph.initializers[name] = ctx._runtime_array(name)
    return ctx.graph.remove_unused().validate()


def _raise_unsupported(unknown_ops: list[str], forms: list[str]) -> None:
    parts = []
    if unknown_ops:
        parts.append(
            f"ONNX model uses {len(unknown_ops)} node(s) cnnperf does not support: "
            + ", ".join(unknown_ops)
        )
    if forms:
        parts.append(
            f"{len(forms)} node(s) use forms cnnperf does not support: " + "; ".join(forms)
        )
    if parts:
        raise NotImplementedError(". ".join(parts))
