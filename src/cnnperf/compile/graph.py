"""The inference graph IR: named value edges, nodes, constant initializers, inputs and outputs.

A :class:`Graph` is a list of :class:`Node` in execution (topological) order. Values are named
edges: a node reads the values named in ``inputs`` and writes those named in ``outputs``. A value
is a graph input, an initializer (a constant NumPy array) or the output of exactly one node.
Graph inputs have static shapes except that the first (batch) dimension may be ``None``.

The op vocabulary (``Node.op``) and its attributes are listed in :data:`OPS`; importers (ONNX)
map their operators onto it, passes rewrite it and the executor runs it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

__all__ = ["Node", "Graph", "OPS", "ACTIVATION_OPS"]

# op -> attributes it takes (documentation and validation of the vocabulary).
OPS: dict[str, tuple[str, ...]] = {
    # inputs (x, weight[, bias][, residual]); pads are (top, bottom, left, right); activation as
    # ops.conv2d's; residual=True: the last input (the output's shape) is added after the bias,
    # before the activation (passes.fuse_residual_add); layout "nchw8c" (compile.layout): x,
    # residual and output are channel-blocked (n, c/8, h, w, 8) arrays (ops.conv_blocked);
    # "nchw_to_nchw8c": x is NCHW, the output blocked
    "conv2d": ("stride", "pads", "dilation", "groups", "activation", "residual", "layout"),
    # (n, c, h, w) <-> the channel-blocked (n, c/8, h, w, 8) (compile.layout inserts them)
    "to_blocked": (),
    "from_blocked": (),
    # layout "nchw8c": x is channel-blocked (compile.layout: after a stem that writes blocked);
    # the output is NCHW either way
    "max_pool2d": ("kernel", "stride", "pads", "dilation", "ceil_mode", "layout"),
    "avg_pool2d": ("kernel", "stride", "pads", "dilation", "ceil_mode", "count_include_pad"),
    # layout "nchw8c": x is channel-blocked (n, c/8, h, w, 8); the output is NCHW either way
    "global_avg_pool2d": ("layout",),
    "global_max_pool2d": (),
    # inputs (x, scale, bias, mean, var): inference-mode batch normalisation over dim 1
    "batch_norm": ("eps",),
    "relu": (),
    "leaky_relu": ("alpha",),
    "clip": ("min", "max"),
    "sigmoid": (),
    "tanh": (),
    "hardsigmoid": ("alpha", "beta"),
    "hardswish": (),
    # coerce_2d: ONNX opset < 13 semantics (flatten to 2-D at axis, softmax over the second dim)
    "softmax": ("axis", "coerce_2d"),
    # inputs (a, b[, c]): alpha * a' @ b' + beta * c
    "gemm": ("alpha", "beta", "trans_a", "trans_b"),
    "matmul": (),
    "add": (),
    "sub": (),
    "mul": (),
    "div": (),
    "concat": ("axis",),
    "flatten": ("axis",),
    # shape entries: 0 copies the input's dimension (unless allowzero), -1 is inferred
    "reshape": ("shape", "allowzero"),
    "transpose": ("perm",),
    "squeeze": ("axes",),
    "unsqueeze": ("axes",),
    "identity": (),
    "dropout": (),
    # inputs (x, weight[, bias]); weight (c_in, c_out/groups, kh, kw). pads (top, bottom, left,
    # right) crop the unpadded result, output_padding (h, w) adds rows/columns at the end:
    # oh = (h-1)*sh + dh*(kh-1) + 1 - top - bottom + output_padding_h (as PyTorch's, but pads
    # may be asymmetric and output_padding any size: rows past the result hold the bias)
    "conv_transpose2d": ("stride", "pads", "output_padding", "dilation", "groups"),
    "elu": ("alpha",),
    "selu": ("alpha", "gamma"),
    # inputs (x, slope): x if x > 0 else slope * x, slope broadcast to x (unidirectionally)
    "prelu": (),
    "erf": (),
    "sqrt": (),
    "pow": (),
    "log_softmax": ("axis", "coerce_2d"),
    # variadic element-wise ops with broadcasting: one or more inputs
    "sum": (),
    "maximum": (),
    "minimum": (),
    # ONNX LRN: channels [c - (size-1)//2, c + size//2], y = x / (k + alpha/size * sum)**beta
    "local_response_norm": ("size", "alpha", "beta", "k"),
    # inputs (x, scale[, bias]): normalise over dims axis..rank-1
    "layer_norm": ("axis", "eps"),
    # axes: tuple of non-negative dims (() reduces over all of them)
    "reduce_mean": ("axes", "keepdims"),
    "reduce_sum": ("axes", "keepdims"),
    # pads: ((before, after), ...) one pair per dim, negative crops; mode: constant, reflect,
    # edge or wrap; value: the constant fill
    "pad": ("pads", "mode", "value"),
    # sizes: output shape (None keeps the batch); scales: per-dim scale the coordinate
    # transform divides by (ONNX's given scales, else sizes/input); mode: nearest or linear;
    # coord: ONNX coordinate_transformation_mode; nearest_mode: round_prefer_floor,
    # round_prefer_ceil, floor, ceil or simple (opset < 11: ceil if downsampling, else floor)
    "resize": ("sizes", "scales", "mode", "coord", "nearest_mode"),
    # ONNX Slice on run-time data: starts/ends/steps per axis, clamped to the dims at run time
    "slice": ("starts", "ends", "axes", "steps"),
    # indices: constant int (nested) tuple, negative counts from the end (ONNX Gather)
    "gather": ("axis", "indices"),
    # sizes: the length of each output along axis
    "split": ("axis", "sizes"),
    "tile": ("repeats",),
    "space_to_depth": ("blocksize",),
    # mode: "DCR" (depth-column-row, ONNX's default) or "CRD" (PyTorch's pixel_shuffle)
    "depth_to_space": ("blocksize", "mode"),
    # x * Phi(x): approximate "none" (erf) or "tanh" (ops.gelu's two forms)
    "gelu": ("approximate",),
    # log(1 + exp(x)); mish: x * tanh(softplus(x))
    "softplus": (),
    "mish": (),
    "abs": (),
    "exp": (),
    "log": (),
    "neg": (),
    "reciprocal": (),
    "floor": (),
    "ceil": (),
    # as reduce_mean; reduce_l2: sqrt(sum(x**2))
    "reduce_max": ("axes", "keepdims"),
    "reduce_min": ("axes", "keepdims"),
    "reduce_l2": ("axes", "keepdims"),
    # inputs (x, scale, bias): per (n, c) statistics over dims 2.., scale and bias of shape (c,)
    "instance_norm": ("eps",),
    # shape: the target shape, broadcast with x's (numpy rules; a 1 keeps x's dimension)
    "expand": ("shape",),
    # Boolean values are float32 masks (1.0 true, 0.0 false): comparisons write them, where
    # reads inputs (cond, x, y) and takes x where cond != 0
    "equal": (),
    "less": (),
    "greater": (),
    "where": (),
    # (sum over dims 2.. of |x|**p) ** (1/p), keeping them as 1s
    "global_lp_pool": ("p",),
}

# Element-wise activations a conv can apply as it writes its output (see passes).
ACTIVATION_OPS = (
    "relu", "leaky_relu", "clip", "sigmoid", "tanh", "hardsigmoid", "hardswish", "gelu",
)  # fmt: skip


@dataclasses.dataclass
class Node:
    """One operation: ``outputs = op(*inputs, **attrs)``.

    Example:
        >>> Node("relu", ["x"], ["y"])
        Node(op='relu', inputs=['x'], outputs=['y'], attrs={}, name='')
    """

    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = dataclasses.field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"Node {self.name!r}: unknown op {self.op!r}; known: {sorted(OPS)}")
        unknown = set(self.attrs) - set(OPS[self.op])
        if unknown:
            raise ValueError(
                f"Node {self.name!r} ({self.op}): unknown attributes {sorted(unknown)}; "
                f"{self.op} takes {list(OPS[self.op])}"
            )
        self.inputs = list(self.inputs)
        self.outputs = list(self.outputs)


@dataclasses.dataclass
class Graph:
    """Nodes in execution order, initializers, graph inputs (name -> shape) and output names.

    Example:
        >>> g = Graph(inputs={"x": (None, 3)}, outputs=["y"], nodes=[Node("relu", ["x"], ["y"])])
        >>> g.validate().producers()["y"].op
        'relu'
    """

    nodes: list[Node] = dataclasses.field(default_factory=list)
    initializers: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    inputs: dict[str, tuple] = dataclasses.field(default_factory=dict)
    outputs: list[str] = dataclasses.field(default_factory=list)

    def copy(self) -> Graph:
        """A copy whose node list, nodes and dicts can be changed (arrays are shared)."""
        return Graph(
            nodes=[dataclasses.replace(n, attrs=dict(n.attrs)) for n in self.nodes],
            initializers=dict(self.initializers),
            inputs=dict(self.inputs),
            outputs=list(self.outputs),
        )

    def producers(self) -> dict[str, Node]:
        """Value name -> the node that writes it."""
        return {out: n for n in self.nodes for out in n.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        """Value name -> the nodes that read it (a node reading it twice is listed twice)."""
        uses: dict[str, list[Node]] = {}
        for n in self.nodes:
            for name in n.inputs:
                uses.setdefault(name, []).append(n)
        return uses

    def fresh_name(self, base: str) -> str:
        """A value name not yet used in the graph, starting with ``base``."""
        used = self._names()
        name, i = base, 0
        while name in used:
            i += 1
            name = f"{base}_{i}"
        return name

    def _names(self) -> set[str]:
        names = set(self.initializers) | set(self.inputs)
        for n in self.nodes:
            names.update(n.inputs)
            names.update(n.outputs)
        return names

    def validate(self) -> Graph:
        """Check that every value is defined once, before use, and that outputs exist."""
        defined = set(self.initializers)
        for name, shape in self.inputs.items():
            _check_input_shape(name, shape)
            if name in defined:
                raise ValueError(f"Graph input {name!r} is also an initializer")
            defined.add(name)
        for n in self.nodes:
            missing = [v for v in n.inputs if v not in defined]
            if missing:
                raise ValueError(
                    f"Node {n.name!r} ({n.op}) reads {missing}, which no earlier node, "
                    "graph input or initializer defines"
                )
            twice = [v for v in n.outputs if v in defined]
            if twice:
                raise ValueError(f"Node {n.name!r} ({n.op}) redefines {twice}")
            defined.update(n.outputs)
        missing = [v for v in self.outputs if v not in defined]
        if missing:
            raise ValueError(f"Graph outputs {missing} are never defined")
        return self

    def remove_unused(self) -> Graph:
        """Drop nodes whose outputs nobody reads and initializers nobody uses (in place)."""
        live = set(self.outputs)
        kept: list[Node] = []
        for n in reversed(self.nodes):
            if any(o in live for o in n.outputs):
                kept.append(n)
                live.update(n.inputs)
        self.nodes = kept[::-1]
        self.initializers = {k: v for k, v in self.initializers.items() if k in live}
        return self

    def summary(self) -> str:
        """One line per node: ``op(inputs) -> outputs``."""
        return "\n".join(
            f"{n.op}({', '.join(n.inputs)}) -> {', '.join(n.outputs)}" for n in self.nodes
        )


def _check_input_shape(name: str, shape: Iterable) -> None:
    dims = tuple(shape)
    bad = [d for i, d in enumerate(dims) if not (d is None and i == 0) and not _is_dim(d)]
    if bad:
        raise ValueError(
            f"Graph input {name!r} has shape {dims}: dimensions must be non-negative ints "
            "(only the first, batch, dimension may be None)"
        )


def _is_dim(d) -> bool:
    return isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0
