"""Liveness-based memory planning: which intermediate activations can share a buffer.

Steps are the graph's nodes in execution order. A value is live from the step that writes it
to the last step that reads it (both inclusive: a node's inputs and outputs never share). Ops
whose result is a view of their input (reshape, flatten, squeeze, unsqueeze, identity, dropout)
share their input's storage, which then lives until the last read of any of those views.

Intermediate storages (not graph inputs, initializers or graph outputs, which the caller owns)
are assigned to buffers greedily by size, largest first, each to the smallest existing buffer
none of whose values is live at the same time (best fit), else to a new buffer: the classic
"greedy by size" plan (TFLite's arena planner uses the same order). The buffers are laid out
one after another in one arena (``buffer_offsets``, each aligned to :data:`ARENA_ALIGN` bytes):
the executor allocates the arena once per batch size and lets kernels that can write into a
given array (convolutions, element-wise ufuncs) write their outputs into their views of it.

Example:
    >>> from cnnperf.compile.graph import Graph, Node
    >>> g = Graph(nodes=[Node("relu", ["x"], ["a"]), Node("relu", ["a"], ["b"]),
    ...                  Node("relu", ["b"], ["c"]), Node("relu", ["c"], ["y"])],
    ...           inputs={"x": (None, 1000)}, outputs=["y"])
    >>> plan = plan_memory(g, batch=1)
    >>> plan.assignment, plan.naive_bytes, plan.planned_peak_bytes
    ({'a': 0, 'b': 1, 'c': 0}, 16000, 12000)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping

from .graph import Graph
from .shapes import infer_shapes

__all__ = ["MemoryPlan", "plan_memory", "ALIAS_OPS", "ARENA_ALIGN"]

# Ops whose output is a view of their (first) input at run time (see runtime.py).
ALIAS_OPS = ("reshape", "flatten", "squeeze", "unsqueeze", "identity", "dropout")

# Byte alignment of each buffer in the arena: a cache line, and a whole AVX-512 vector.
ARENA_ALIGN = 64


@dataclasses.dataclass
class MemoryPlan:
    """Buffers for a graph's intermediate activations at one batch size.

    Attributes:
        batch: the batch size planned for.
        buffer_bytes: size of each buffer.
        assignment: storage value name -> buffer index (views share their input's entry in
            ``storage_of``, not this dict).
        storage_of: every node output -> the value whose storage it uses (itself or, for a
            view, the value it views).
        live_ranges: storage value -> (first step, last step), inclusive.
        value_bytes: storage value -> bytes.
        naive_bytes: every activation stored at once (intermediates and outputs).
        output_bytes: the graph outputs (fresh arrays per run, owned by the caller).
        live_peak_bytes: the most bytes live at any one step (a lower bound for any plan).
        largest_layer: the node whose activation inputs plus outputs are largest, and
            ``largest_layer_bytes`` that size.
        buffer_offsets: byte offset of each buffer in the arena (aligned to ARENA_ALIGN).
    """

    batch: int
    buffer_bytes: list[int]
    assignment: dict[str, int]
    storage_of: dict[str, str]
    live_ranges: dict[str, tuple[int, int]]
    value_bytes: dict[str, int]
    naive_bytes: int
    output_bytes: int
    live_peak_bytes: int
    largest_layer: str
    largest_layer_bytes: int
    buffer_offsets: list[int] = dataclasses.field(default_factory=list)

    @property
    def arena_bytes(self) -> int:
        """Sum of the buffer sizes (intermediates only)."""
        return sum(self.buffer_bytes)

    @property
    def arena_span_bytes(self) -> int:
        """Bytes of the arena holding every buffer at its aligned offset."""
        if not self.buffer_bytes:
            return 0
        return self.buffer_offsets[-1] + self.buffer_bytes[-1]

    def offset_of(self, value: str) -> int:
        """Byte offset in the arena of the buffer that holds ``value`` (or the value it views)."""
        return self.buffer_offsets[self.assignment[self.storage_of.get(value, value)]]

    @property
    def planned_peak_bytes(self) -> int:
        """Activation memory the plan needs: its buffers plus the graph outputs (graph inputs
        and weights excluded)."""
        return self.arena_bytes + self.output_bytes

    def summary(self) -> str:
        """A few lines: peak, naive total, buffers, largest layer (MiB)."""
        mib = 1 / 2**20
        return (
            f"memory plan (batch {self.batch}): planned peak {self.planned_peak_bytes * mib:.2f} "
            f"MiB in {len(self.buffer_bytes)} buffers + outputs (naive "
            f"{self.naive_bytes * mib:.2f} MiB, live lower bound "
            f"{self.live_peak_bytes * mib:.2f} MiB); largest layer {self.largest_layer!r}: "
            f"{self.largest_layer_bytes * mib:.2f} MiB in+out"
        )


def _bytes(shape: tuple, batch: int, itemsize: int) -> int:
    dims = [batch if d is None else d for d in shape]
    return math.prod(dims) * itemsize


def plan_memory(
    graph: Graph,
    batch: int = 1,
    itemsize: int = 4,
    *,
    values: Collection[str] | None = None,
    hold: Mapping[str, int] | None = None,
) -> MemoryPlan:
    """Plan buffers for ``graph``'s activations at batch size ``batch`` (float32: 4 bytes).

    Args:
        graph: a validated graph, nodes in the order the executor runs them.
        batch: the value of a dynamic (None) batch dimension.
        itemsize: bytes per element.
        values: None to plan every intermediate storage; else only these (the executor's
            in-place writable values; the rest are allocated by their kernels and take no
            buffer). ``naive_bytes`` and ``live_peak_bytes`` still count every activation,
            ``planned_peak_bytes`` the planned buffers and the outputs.
        hold: value -> a step it stays live through even if nothing reads it there (a
            fused kernel that runs a later step's work while it still reads the value).
    """
    if batch < 1:
        raise ValueError(f"plan_memory: batch must be >= 1, got {batch}")
    shapes = infer_shapes(graph)
    external = set(graph.inputs) | set(graph.initializers)
    storage_of: dict[str, str] = {}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, n in enumerate(graph.nodes):
        for v in n.inputs:
            root = storage_of.get(v, v)
            if root in first:
                last[root] = max(last[root], i)
        for v in n.outputs:
            if n.op in ALIAS_OPS:
                storage_of[v] = storage_of.get(n.inputs[0], n.inputs[0])
            else:
                storage_of[v] = v
                first[v], last[v] = i, i
    for v, step in (hold or {}).items():
        root = storage_of.get(v, v)
        if root in last:
            last[root] = max(last[root], step)
    value_bytes = {v: _bytes(shapes[v], batch, itemsize) for v in first}
    owned_by_caller = {storage_of.get(v, v) for v in graph.outputs}
    planned = [
        v
        for v in first
        if v not in owned_by_caller and v not in external and (values is None or v in values)
    ]
    output_bytes = sum(value_bytes[v] for v in owned_by_caller if v in value_bytes)
    for v in owned_by_caller & set(last):
        last[v] = len(graph.nodes) - 1  # returned to the caller: live to the end

    # Greedy by size, best fit: largest first; buffer size = its first (largest) value.
    buffers: list[int] = []
    members: list[list[str]] = []
    assignment: dict[str, int] = {}
    for v in sorted(planned, key=lambda v: (-value_bytes[v], first[v])):
        best = None
        for b, vs in enumerate(members):
            disjoint = all(last[u] < first[v] or last[v] < first[u] for u in vs)
            if disjoint and (best is None or buffers[b] < buffers[best]):
                best = b
        if best is None:
            buffers.append(value_bytes[v])
            members.append([])
            best = len(buffers) - 1
        members[best].append(v)
        assignment[v] = best

    offsets, end = [], 0
    for size in buffers:
        offsets.append(end)
        end += -(-size // ARENA_ALIGN) * ARENA_ALIGN

    live_peak = max(
        (sum(value_bytes[v] for v in first if first[v] <= i <= last[v])
         for i in range(len(graph.nodes))),
        default=0,
    )  # fmt: skip
    layer_bytes = {
        n.name or f"{i}:{n.op}": sum(
            _bytes(shapes[v], batch, itemsize) for v in n.inputs if v not in graph.initializers
        )
        + sum(_bytes(shapes[v], batch, itemsize) for v in n.outputs)
        for i, n in enumerate(graph.nodes)
        if n.op not in ALIAS_OPS
    }
    largest = max(layer_bytes, key=layer_bytes.get, default="")
    return MemoryPlan(
        batch=batch,
        buffer_bytes=buffers,
        assignment=assignment,
        storage_of=storage_of,
        live_ranges={v: (first[v], last[v]) for v in first},
        value_bytes=value_bytes,
        naive_bytes=sum(value_bytes.values()),
        output_bytes=output_bytes,
        live_peak_bytes=live_peak,
        largest_layer=largest,
        largest_layer_bytes=layer_bytes.get(largest, 0),
        buffer_offsets=offsets,
    )
