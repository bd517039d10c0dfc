"""The executor: a Graph compiled into a list of prepared kernels, run on NumPy arrays.

Example:
    >>> from cnnperf.compile.graph import Graph, Node
    >>> g = Graph(nodes=[Node("conv2d", ["x", "w"], ["t"], {"pads": (1, 1, 1, 1)}),
    ...                  Node("relu", ["t"], ["y"])],
    ...           initializers={"w": np.ones((2, 3, 3, 3), np.float32)},
    ...           inputs={"x": (None, 3, 8, 8)}, outputs=["y"])
    >>> model = compile_graph(g)
    >>> model(np.ones((2, 3, 8, 8), np.float32)).shape
    (2, 2, 8, 8)
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from .. import config
from .graph import Graph
from .layout import BLOCKED
from .memory import ALIAS_OPS, ARENA_ALIGN, MemoryPlan, plan_memory
from .passes import DEFAULT_PASSES
from .profile import profile_model
from .runtime import build_kernel
from .shapes import infer_shapes

__all__ = ["CompiledModel", "compile_graph"]

# Arenas kept per thread, one per batch size, least recently used dropped past this many.
ARENA_CACHE_SIZE = 4
# Fuse each 1x1 expansion with the depthwise conv that alone reads it, inside a chain
# (``_chain_runs``). Compiled MobileNetV2, fused against unfused in one process: see README.
FUSE_EXPAND_DEPTHWISE = True


_LANDS = object()  # a program entry: run the step as usual, its result in its planned buffer


class _Arena:
    """One batch size's planned buffers: the arena and each planned value's view of it."""

    __slots__ = ("memory", "views", "programs", "plans")

    def __init__(self, plan: MemoryPlan, shapes: dict, batch: int) -> None:
        raw = np.empty(plan.arena_span_bytes + ARENA_ALIGN, np.uint8)
        start = -raw.ctypes.data % ARENA_ALIGN
        self.memory = raw[start : start + plan.arena_span_bytes]
        self.views: dict[str, np.ndarray] = {}
        for v in plan.assignment:
            shape = tuple(batch if d is None else d for d in shapes[v])
            off = plan.offset_of(v)
            self.views[v] = (
                self.memory[off : off + plan.value_bytes[v]].view(np.float32).reshape(shape)
            )
        # per thread count: each step's call bound to these buffers, _LANDS or None
        # (CompiledModel._bind), and the run loop's entries made from it (CompiledModel._plan)
        self.programs: dict[int, list] = {}
        self.plans: dict[int, tuple] = {}


def _noop() -> None:
    """A program entry for a step that an earlier entry's chain runs."""


def _fusable_pairs(graph: Graph) -> set[int]:
    """Steps i of ``graph`` that are an ungrouped blocked conv whose output only step i + 1,
    a grouped blocked conv, reads: the pairs ``_chain_runs`` fuses when both run bound in a
    chain (a 1x1 expansion and a depthwise conv; ``fuse_expand_depthwise`` refuses others)."""
    readers = Counter(v for n in graph.nodes for v in n.inputs)
    readers.update(graph.outputs)
    nodes = graph.nodes
    return {
        i
        for i, (n, d) in enumerate(zip(nodes, nodes[1:], strict=False))
        if n.op == d.op == "conv2d"
        and n.attrs.get("layout") == d.attrs.get("layout") == BLOCKED
        and n.attrs.get("groups", 1) == 1
        and d.attrs.get("groups", 1) > 1
        and readers[n.outputs[0]] == 1
        and d.inputs[0] == n.outputs[0]
    }


def _chain_runs(program: list, fusable: Sequence[bool] = ()) -> list:
    """Runs of two or more consecutive bound blocked convolutions (``.chain_layer``) run as
    one parallel region (``ops.run_chained``) at the first step of the run; the others become
    ``_noop`` entries (the run loop names their buffers only where an unbound step or the
    caller reads them, ``_plan``). Within a run, a 1x1 expansion whose output only the next
    step (a depthwise conv) reads, ``fusable[k]`` (``_fusable_pairs``), is fused with it into
    one layer (``ops.fuse_expand_depthwise``): the memory plan keeps the expansion's input
    live through the depthwise step (``plan_memory``'s ``hold``), which the fused kernel
    writes while it reads that input."""
    from ..ops.conv_blocked import fuse_expand_depthwise, run_chained

    i = 0
    while i < len(program):
        j = i
        while j < len(program) and getattr(program[j], "chain_layer", None) is not None:
            j += 1
        if j - i >= 2:
            layers, k = [], i
            while k < j:
                layer = program[k].chain_layer
                if k + 1 < j and k < len(fusable) and fusable[k]:
                    fused = fuse_expand_depthwise(layer, program[k + 1].chain_layer)
                    if fused is not None:
                        layers.append(fused)
                        k += 2
                        continue
                layers.append(layer)
                k += 1
            program[i] = run_chained(layers)
            program[i + 1 : j] = [_noop] * (j - i - 1)
        i = max(j, i + 1)
    return program


class CompiledModel:
    """A compiled inference graph: ``run({name: array}) -> {name: array}``, no autograd.

    Kernels (conv plans with their prepared weights, chosen with ``weight_prepared=True``) are
    built once here; intermediate values are freed after their last reader. With
    ``planned_buffers`` (the default) the kernels that can write into a given array
    (convolutions, element-wise add/sub/mul/div) write their outputs into their buffers of
    the liveness plan (:func:`plan_memory` restricted to those values): one arena per batch
    size and thread, allocated on the first run at that size and reused. The others allocate
    their outputs, as every kernel does without ``planned_buffers``. Graph outputs are never
    planned: each run returns new arrays, which later runs do not touch.
    """

    def __init__(self, graph: Graph, *, planned_buffers: bool = True) -> None:
        self.graph = graph.validate()
        self.shapes = infer_shapes(graph)
        self.input_names: list[str] = list(graph.inputs)
        self.output_names: list[str] = list(graph.outputs)
        self.planned_buffers = bool(planned_buffers)
        self._steps: list[tuple[Callable, list[str], list[str], list[str]]] = []
        # Per step: fn.into (writes into a planned buffer) or None, and whether its results
        # must be checked for views of the arena (ops that are not meant to return views).
        self._into: list[Callable | None] = []
        self._guard: list[bool] = []
        self._plans: dict[int, MemoryPlan] = {}
        self._local = threading.local()
        last_use: dict[str, int] = {}
        for i, n in enumerate(graph.nodes):
            for v in n.inputs:
                last_use[v] = i
        keep = set(graph.outputs) | set(graph.initializers)
        for i, n in enumerate(graph.nodes):
            fn, args = build_kernel(n, graph, self.shapes)
            free = sorted({v for v in n.inputs if last_use[v] == i and v not in keep})
            self._steps.append((fn, list(args), n.outputs, free))
            into = getattr(fn, "into", None)
            self._into.append(into if len(n.outputs) == 1 and n.op not in ALIAS_OPS else None)
            self._guard.append(n.op not in ALIAS_OPS)
        self._writable = {
            n.outputs[0] for n, into in zip(graph.nodes, self._into, strict=True) if into
        }
        # A 1x1 conv's input stays live through the depthwise conv after it that alone reads
        # its output: fused (_chain_runs), the depthwise conv writes while the 1x1 still reads.
        self._fusable = _fusable_pairs(graph) if FUSE_EXPAND_DEPTHWISE else set()
        self._hold = {
            v: i + 1
            for i in self._fusable
            for v in graph.nodes[i].inputs
            if v not in graph.initializers
        }

    def _check_inputs(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [k for k in self.input_names if k not in feeds]
        extra = [k for k in feeds if k not in self.graph.inputs]
        if missing or extra:
            raise ValueError(
                f"CompiledModel.run: expected inputs {self.input_names}, missing {missing}, "
                f"unknown {extra}"
            )
        env: dict[str, np.ndarray] = {}
        for name, expected in self.graph.inputs.items():
            x = np.asarray(feeds[name])
            if x.dtype != np.float32:
                x = x.astype(np.float32)
            ok = x.ndim == len(expected) and all(
                e is None or e == d for e, d in zip(expected, x.shape, strict=True)
            )
            if not ok:
                raise ValueError(
                    f"CompiledModel.run: input {name!r} must have shape {expected} "
                    f"(None: any batch size), got {tuple(x.shape)}"
                )
            env[name] = np.ascontiguousarray(x)
        return env

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on ``feeds`` (input name -> array); returns output name -> array."""
        env = self._check_inputs(feeds)
        arena = self._arena(env) if self.planned_buffers and self._writable else None
        if arena is None:
            env.update(self.graph.initializers)
            for fn, args, outs, free in self._steps:
                results = fn(*(env[a] for a in args))
                env.update(zip(outs, results, strict=True))
                for v in free:
                    del env[v]
            return {k: env[k] for k in self.output_names}
        views, memory = arena.views, arena.memory
        threads = config.get_num_threads()
        plan = arena.plans.get(threads)
        if plan is None:
            program = arena.programs[threads] = self._bind(arena)
            plan = arena.plans[threads] = self._plan(program, arena)
        entries, consts = plan
        env.update(consts)
        # (the per-step Python here is paid by every layer of a network at batch 1)
        for i, bound, name, view, free in entries:
            if bound is not None and bound is not _LANDS:
                bound()
                if name is not None:
                    env[name] = view
                for v in free:
                    del env[v]
                continue
            fn, args, outs, _ = self._steps[i]
            into, guard = self._into[i], self._guard[i]
            out = views.get(outs[0]) if into is not None else None
            if out is not None:
                results = into(out, *[env[a] for a in args])
                if bound is _LANDS and results[0] is not out:
                    # a bound step reads this value from its buffer: put it there
                    np.copyto(out, results[0])
                    results = (out,)
            else:
                results = fn(*[env[a] for a in args])
                if guard and any(np.may_share_memory(r, memory) for r in results):
                    # a view of a planned buffer that the plan does not know of: copy it
                    results = tuple(np.array(r, copy=True) for r in results)
            if len(outs) == 1:
                env[outs[0]] = results[0]
            else:
                env.update(zip(outs, results, strict=True))
            for v in free:
                del env[v]
        return {
            k: np.array(env[k], copy=True) if np.may_share_memory(env[k], memory) else env[k]
            for k in self.output_names
        }

    def _plan(self, program: list, arena: _Arena) -> tuple[list, dict]:
        """The run loop's entries for ``program``: per step ``(index, bound, name, view,
        frees)``, where a bound step's value is put in the environment (``name``, its planned
        buffer ``view``) only if an unbound step or the caller reads it, frees list only values
        the environment holds, and a chained step (``_noop``) with neither is left out; and the
        constants that unbound steps read (bound calls hold theirs)."""
        unbound = [p is None or p is _LANDS for p in program]
        needed = set(self.graph.outputs)
        for (_, args, _, _), u in zip(self._steps, unbound, strict=True):
            if u:
                needed.update(args)
        held = set(self.graph.inputs)  # values the environment holds during a run
        entries = []
        for i, ((_, _, outs, free), bound) in enumerate(zip(self._steps, program, strict=True)):
            if unbound[i]:
                held.update(outs)
                name = view = None
            else:
                name = outs[0] if outs[0] in needed else None
                view = arena.views[outs[0]]
                if name is not None:
                    held.add(name)
            frees = [v for v in free if v in held]
            if bound is _noop and name is None and not frees:
                continue
            entries.append((i, bound, name, view, frees))
        inits = self.graph.initializers
        consts = {v: inits[v] for v in needed if v in inits}
        return entries, consts

    def _bind(self, arena: _Arena) -> list:
        """Per step: its kernel bound to the arena's buffers (``fn.bind``) where the step
        writes a planned buffer and reads only constants and planned buffers; ``_LANDS`` for
        an unbound step writing a planned buffer that a bound step reads (its result is
        copied there if the kernel allocated instead); None for the rest."""
        known = dict(self.graph.initializers)  # name -> the array it is read from
        producer: dict[str, int] = {}
        program: list = []
        for i, ((fn, args, outs, _), into) in enumerate(zip(self._steps, self._into, strict=True)):
            binder = getattr(fn, "bind", None)
            out = arena.views.get(outs[0]) if into is not None else None
            bound = None
            if binder is not None and out is not None and all(a in known for a in args):
                bound = binder(out, *[known[a] for a in args])
                if bound is not None:
                    for a in args:
                        if a in producer and program[producer[a]] is None:
                            program[producer[a]] = _LANDS
            if out is not None:
                known[outs[0]] = out
                producer[outs[0]] = i
            program.append(bound)
        return _chain_runs(program, [k in self._fusable for k in range(len(program))])

    def _arena(self, env: Mapping[str, np.ndarray]) -> _Arena | None:
        """This thread's arena for the batch size of ``env`` (None when the dynamic inputs'
        batch sizes differ or are 0: those runs allocate every output)."""
        batches = {
            env[name].shape[0]
            for name, dims in self.graph.inputs.items()
            if len(dims) and dims[0] is None
        }
        if len(batches) > 1:
            return None
        batch = batches.pop() if batches else 1
        if batch < 1:
            return None
        cache = getattr(self._local, "arenas", None)
        if cache is None:
            cache = self._local.arenas = OrderedDict()
        arena = cache.get(batch)
        if arena is None:
            plan = plan_memory(self.graph, batch, values=self._writable, hold=self._hold)
            arena = cache[batch] = _Arena(plan, self.shapes, batch)
            while len(cache) > ARENA_CACHE_SIZE:
                cache.popitem(last=False)
        else:
            cache.move_to_end(batch)
        return arena

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run a one-input, one-output model on ``x``."""
        if len(self.input_names) != 1 or len(self.output_names) != 1:
            raise ValueError(
                f"CompiledModel(x) needs one input and one output; this model has inputs "
                f"{self.input_names} and outputs {self.output_names}: use .run()"
            )
        return self.run({self.input_names[0]: x})[self.output_names[0]]

    def memory_plan(self, batch: int = 1) -> MemoryPlan:
        """The liveness-based buffer plan of this graph's activations at ``batch`` (cached)."""
        if batch not in self._plans:
            self._plans[batch] = plan_memory(self.graph, batch, hold=self._hold)
        return self._plans[batch]

    def profile(self, x: np.ndarray | Mapping[str, np.ndarray], repeat: int = 10) -> list[dict]:
        """Time each node on ``x`` (an array for a one-input model, or ``{name: array}``):
        one row per node with op, shapes, conv algorithm, median seconds, share, GFLOP/s.

        See :func:`cnnperf.compile.profile.profile_model`; ``format_profile`` prints the rows.
        """
        feeds = x if isinstance(x, Mapping) else None
        if feeds is None:
            if len(self.input_names) != 1:
                raise ValueError(
                    f"CompiledModel.profile(x) needs one input; this model has inputs "
                    f"{self.input_names}: pass {{name: array}}"
                )
            feeds = {self.input_names[0]: x}
        return profile_model(self, feeds, repeat)

    def __repr__(self) -> str:
        return (
            f"CompiledModel(inputs={self.input_names}, outputs={self.output_names}, "
            f"nodes={len(self._steps)})"
        )


def compile_graph(
    graph: Graph,
    passes: Iterable[Callable[[Graph], Graph]] | None = None,
    *,
    planned_buffers: bool = True,
) -> CompiledModel:
    """Apply ``passes`` (default ``DEFAULT_PASSES``: eliminate_identity, fuse_gelu_pattern,
    fold_batchnorm, fuse_residual_add, fuse_conv_activation, choose_layout; ``()`` for none)
    and build the executor (``planned_buffers``: see :class:`CompiledModel`)."""
    g = graph.validate()
    for p in DEFAULT_PASSES if passes is None else passes:
        g = p(g)
    return CompiledModel(g, planned_buffers=planned_buffers)
