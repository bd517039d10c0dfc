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

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from .graph import Graph
from .memory import MemoryPlan, plan_memory
from .passes import DEFAULT_PASSES
from .profile import profile_model
from .runtime import build_kernel
from .shapes import infer_shapes

__all__ = ["CompiledModel", "compile_graph"]


class CompiledModel:
    """A compiled inference graph: ``run({name: array}) -> {name: array}``, no autograd.

    Kernels (conv plans with their prepared weights, chosen with ``weight_prepared=True``) are
    built once here; intermediate values are freed after their last reader (the liveness that
    :meth:`memory_plan` plans buffers for). The kernels allocate their own outputs, so at run
    time NumPy's allocator recycles the freed blocks: the plan reports what an executor
    writing into its buffers needs, and the executor holds no more than the live values.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph.validate()
        self.shapes = infer_shapes(graph)
        self.input_names: list[str] = list(graph.inputs)
        self.output_names: list[str] = list(graph.outputs)
        self._steps: list[tuple[Callable, list[str], list[str], list[str]]] = []
        self._plans: dict[int, MemoryPlan] = {}
        last_use: dict[str, int] = {}
        for i, n in enumerate(graph.nodes):
            for v in n.inputs:
                last_use[v] = i
        keep = set(graph.outputs) | set(graph.initializers)
        for i, n in enumerate(graph.nodes):
            fn, args = build_kernel(n, graph, self.shapes)
            free = sorted({v for v in n.inputs if last_use[v] == i and v not in keep})
            self._steps.append((fn, list(args), n.outputs, free))

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
        env.update(self.graph.initializers)
        for fn, args, outs, free in self._steps:
            results = fn(*(env[a] for a in args))
            env.update(zip(outs, results, strict=True))
            for v in free:
                del env[v]
        return {k: env[k] for k in self.output_names}

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
            self._plans[batch] = plan_memory(self.graph, batch)
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
    graph: Graph, passes: Iterable[Callable[[Graph], Graph]] | None = None
) -> CompiledModel:
    """Apply ``passes`` (default: eliminate_identity, fold_batchnorm, fuse_conv_activation;
    ``()`` for none) and build the executor."""
    g = graph.validate()
    for p in DEFAULT_PASSES if passes is None else passes:
        g = p(g)
    return CompiledModel(g)
