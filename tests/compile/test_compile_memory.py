"""The liveness-based memory plan: reuse, no overlap of live values, ResNet-18 peak."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from compile_models import resnet18, tiny_resnet
from hypothesis import given
from hypothesis import strategies as st

from cnnperf.compile import DEFAULT_PASSES, Graph, MemoryPlan, Node, compile_graph, plan_memory
from cnnperf.compile import trace as trace_model
from cnnperf.compile.memory import ALIAS_OPS


def check_plan(plan: MemoryPlan, graph: Graph) -> None:
    """Every planned value has a buffer large enough; values sharing one never overlap."""
    intermediates = {
        plan.storage_of[v]
        for n in graph.nodes
        for v in n.outputs
        if plan.storage_of[v] not in graph.inputs
    } - {plan.storage_of.get(v, v) for v in graph.outputs}
    assert set(plan.assignment) == intermediates
    for v, b in plan.assignment.items():
        assert plan.value_bytes[v] <= plan.buffer_bytes[b]
    for (u, bu), (v, bv) in itertools.combinations(plan.assignment.items(), 2):
        if bu == bv:
            (f1, l1), (f2, l2) = plan.live_ranges[u], plan.live_ranges[v]
            assert l1 < f2 or l2 < f1, f"{u} {plan.live_ranges[u]} overlaps {v} {(f2, l2)}"
    assert plan.live_peak_bytes <= plan.planned_peak_bytes <= plan.naive_bytes


def _compiled_graph(model, shape):
    g = trace_model(model, shape)
    for p in DEFAULT_PASSES:
        g = p(g)
    return g


def test_resnet18_224_batch1_peak_within_twice_the_largest_layer():
    g = _compiled_graph(resnet18(), (None, 3, 224, 224))
    plan = plan_memory(g, batch=1)
    check_plan(plan, g)
    assert plan.largest_layer == "maxpool"  # 64x112x112 in, 64x56x56 out
    assert plan.largest_layer_bytes == 4 * 64 * (112 * 112 + 56 * 56)
    assert plan.planned_peak_bytes <= 2 * plan.largest_layer_bytes
    assert plan.naive_bytes > 3 * plan.planned_peak_bytes
    assert plan.output_bytes == 4 * 1000
    assert "planned peak" in plan.summary()


def test_plan_scales_with_batch_and_is_cached():
    model = compile_graph(trace_model(tiny_resnet(), (None, 3, 16, 16)))
    p1, p3 = model.memory_plan(), model.memory_plan(batch=3)
    assert model.memory_plan(1) is p1
    assert p3.naive_bytes == 3 * p1.naive_bytes
    assert p3.planned_peak_bytes == 3 * p1.planned_peak_bytes
    check_plan(p3, model.graph)


def test_views_share_their_input_storage_and_extend_its_life():
    g = Graph(
        nodes=[
            Node("relu", ["x"], ["a"]),
            Node("flatten", ["a"], ["a2"], {"axis": 1}),
            Node("relu", ["a2"], ["b"]),
            Node("relu", ["b"], ["c"]),
            Node("add", ["c", "a2"], ["d"]),
            Node("relu", ["d"], ["y"]),
        ],
        inputs={"x": (None, 4, 5)},
        outputs=["y"],
    )
    plan = plan_memory(g, batch=2)
    assert plan.storage_of["a2"] == "a" and "a2" not in plan.assignment
    assert plan.live_ranges["a"] == (0, 4)
    check_plan(plan, g)
    assert plan.assignment["a"] != plan.assignment["b"] != plan.assignment["c"]
    assert plan.assignment["b"] == plan.assignment["d"]  # b is dead when d is written


def test_the_executor_frees_each_intermediate_after_its_planned_last_use():
    model = compile_graph(trace_model(tiny_resnet(), (None, 3, 16, 16)))
    plan = model.memory_plan()
    last_read = {}
    for i, n in enumerate(model.graph.nodes):
        for v in n.inputs:
            last_read[v] = i
    for i, (_, _, _, free) in enumerate(model._steps):
        for v in free:
            assert last_read[v] == i
            if v in model.graph.inputs:
                continue  # the executor drops its reference to the caller's input, too
            root = plan.storage_of[v]
            assert plan.live_ranges[root][1] >= i
    freed = {v for *_, free in model._steps for v in free}
    assert freed == (set(plan.storage_of) | {"input"}) - set(model.graph.outputs)


@st.composite
def random_graphs(draw):
    """Random DAGs of element-wise, concat, view and pooling nodes over (None, c) values."""
    width = {"x": draw(st.integers(1, 6))}
    nodes = []
    for i in range(draw(st.integers(1, 14))):
        names = list(width)
        kind = draw(st.sampled_from(["relu", "add", "concat", "flatten", "identity"]))
        a = draw(st.sampled_from(names))
        out = f"v{i}"
        if kind == "add":
            same = [v for v in names if width[v] == width[a]]
            nodes.append(Node("add", [a, draw(st.sampled_from(same))], [out]))
            width[out] = width[a]
        elif kind == "concat":
            b = draw(st.sampled_from(names))
            nodes.append(Node("concat", [a, b], [out], {"axis": 1}))
            width[out] = width[a] + width[b]
        else:
            nodes.append(Node(kind, [a], [out], {"axis": 1} if kind == "flatten" else {}))
            width[out] = width[a]
    outs = draw(st.lists(st.sampled_from([n.outputs[0] for n in nodes]), min_size=1,
                         max_size=2, unique=True))  # fmt: skip
    return Graph(nodes=nodes, inputs={"x": (None, width["x"])}, outputs=outs)


@given(random_graphs(), st.integers(1, 3))
def test_random_graphs_plans_never_overlap_and_run(g, batch):
    g.validate()
    plan = plan_memory(g, batch)
    check_plan(plan, g)
    assert all(n.op not in ALIAS_OPS for n in g.nodes if n.outputs[0] in plan.assignment)
    x = np.random.default_rng(0).standard_normal((batch, g.inputs["x"][1])).astype(np.float32)
    compile_graph(g, passes=()).run({"x": x})  # the graph is executable


def test_bad_batch():
    with pytest.raises(ValueError, match="batch must be >= 1"):
        plan_memory(Graph(inputs={"x": (None, 1)}), batch=0)
