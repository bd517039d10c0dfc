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
from cnnperf.compile.memory import ALIAS_OPS, ARENA_ALIGN
from cnnperf.compile.passes import fuse_residual_add


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


def _compiled_graph(g: Graph, without=None) -> Graph:
    for p in DEFAULT_PASSES:
        if p is not without:
            g = p(g)
    return g


def test_resnet18_224_batch1_peak_within_twice_the_largest_layer():
    traced = trace_model(resnet18(), (None, 3, 224, 224))
    g = _compiled_graph(traced)
    plan = plan_memory(g, batch=1)
    check_plan(plan, g)
    assert plan.largest_layer == "maxpool"  # 64x112x112 in, 64x56x56 out
    assert plan.largest_layer_bytes == 4 * 64 * (112 * 112 + 56 * 56)
    assert plan.planned_peak_bytes <= 2 * plan.largest_layer_bytes
    assert plan.output_bytes == 4 * 1000
    assert "planned peak" in plan.summary()
    # Without the residual fusion, 8 adds and the 8 relus after them write activations too.
    unfused = _compiled_graph(traced, without=fuse_residual_add)
    plan_u = plan_memory(unfused, batch=1)
    assert len(unfused.nodes) == len(g.nodes) + 16
    assert plan_u.naive_bytes > 3 * plan_u.planned_peak_bytes
    stages = 4 * 2 * (64 * 56 * 56 + 128 * 28 * 28 + 256 * 14 * 14 + 512 * 7 * 7)  # 2 blocks each
    assert plan_u.naive_bytes - plan.naive_bytes == 2 * stages
    assert plan.planned_peak_bytes == plan_u.planned_peak_bytes


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


def test_a_held_value_stays_live_through_its_step_and_keeps_its_buffer():
    g = Graph(
        nodes=[Node("relu", ["x"], ["a"]), Node("relu", ["a"], ["b"]),
               Node("relu", ["b"], ["c"]), Node("relu", ["c"], ["y"])],
        inputs={"x": (None, 10)},
        outputs=["y"],
    )  # fmt: skip
    free = plan_memory(g, batch=1)
    assert free.assignment["a"] == free.assignment["c"]  # a is dead when c is written
    held = plan_memory(g, batch=1, hold={"a": 2, "x": 3})  # x is not planned: ignored
    assert held.live_ranges["a"] == (0, 2)
    assert held.assignment["a"] != held.assignment["c"]
    check_plan(held, g)


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
    rng = np.random.default_rng(0)
    x1, x2 = (rng.standard_normal((batch, g.inputs["x"][1])).astype(np.float32) for _ in "ab")
    planned, plain = compile_graph(g, passes=()), compile_graph(g, passes=(), planned_buffers=False)
    y1 = planned.run({"x": x1})
    kept = {k: v.copy() for k, v in y1.items()}
    y2 = planned.run({"x": x2})
    for k in g.outputs:  # planned buffers change nothing, and the first results stay intact
        np.testing.assert_array_equal(y1[k], kept[k])
        np.testing.assert_array_equal(y1[k], plain.run({"x": x1})[k])
        np.testing.assert_array_equal(y2[k], plain.run({"x": x2})[k])
    arena = getattr(planned._local, "arenas", {}).get(batch)  # none without add nodes
    assert (arena is None) == (not planned._writable)
    if arena is not None:
        assert not any(np.shares_memory(v, arena.memory) for v in [*y1.values(), *y2.values()])


def test_bad_batch():
    with pytest.raises(ValueError, match="batch must be >= 1"):
        plan_memory(Graph(inputs={"x": (None, 1)}), batch=0)


# --- the executor's planned buffers ---------------------------------------------------------


def _conv_chain() -> Graph:
    """conv -> add(conv output, x) -> conv -> outputs: the second conv's result and its
    flattened view; ``a`` and ``s`` are planned intermediates."""
    rng = np.random.default_rng(3)
    w = {k: rng.standard_normal((4, 4, 3, 3)).astype(np.float32) for k in ("w1", "w2")}
    return Graph(
        nodes=[
            Node("conv2d", ["x", "w1"], ["a"], {"pads": (1, 1, 1, 1)}, "c1"),
            Node("add", ["a", "x"], ["s"], name="add"),
            Node("conv2d", ["s", "w2"], ["y"], {"pads": (1, 1, 1, 1)}, "c2"),
            Node("flatten", ["y"], ["f"], {"axis": 1}),
        ],
        initializers=w,
        inputs={"x": (None, 4, 6, 5)},
        outputs=["y", "f"],
    )


def test_arena_layout_is_aligned_and_buffers_are_disjoint():
    g = _compiled_graph(trace_model(tiny_resnet(), (None, 3, 16, 16)))
    plan = plan_memory(g, batch=3)
    assert len(plan.buffer_offsets) == len(plan.buffer_bytes) > 1
    assert plan.buffer_offsets[0] == 0 and all(o % ARENA_ALIGN == 0 for o in plan.buffer_offsets)
    ends = [o + b for o, b in zip(plan.buffer_offsets, plan.buffer_bytes, strict=True)]
    assert all(e <= o for e, o in zip(ends, plan.buffer_offsets[1:], strict=False))
    assert plan.arena_span_bytes == ends[-1] < plan.arena_bytes + ARENA_ALIGN * len(ends)
    v = next(iter(plan.assignment))
    assert plan.offset_of(v) == plan.buffer_offsets[plan.assignment[v]]
    only = plan_memory(g, batch=3, values={v})
    assert list(only.assignment) == [v] and only.buffer_bytes == [plan.value_bytes[v]]
    assert only.naive_bytes == plan.naive_bytes
    assert plan_memory(Graph(inputs={"x": (None, 1)}), 1).arena_span_bytes == 0


def test_kernels_write_into_their_planned_buffers():
    g = _conv_chain()
    model = compile_graph(g, passes=())
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 5)).astype(np.float32)
    out = model.run({"x": x})
    arena = model._local.arenas[2]
    assert set(arena.views) == {"a", "s"}  # the graph outputs y, f are not planned
    probe = g.copy()
    probe.outputs = ["a", "s", "y"]
    want = compile_graph(probe, passes=(), planned_buffers=False).run({"x": x})
    np.testing.assert_array_equal(arena.views["a"], want["a"])  # written by conv c1 ...
    np.testing.assert_array_equal(arena.views["s"], want["s"])  # ... and by the add's out=
    np.testing.assert_array_equal(out["y"], want["y"])
    assert np.shares_memory(out["f"], out["y"])  # the view output views the returned array
    assert not np.shares_memory(out["y"], arena.memory)


def test_outputs_never_alias_and_a_second_run_leaves_the_first_results_alone():
    model = compile_graph(trace_model(tiny_resnet(), (None, 3, 16, 16)))
    plain = compile_graph(model.graph, passes=(), planned_buffers=False)
    rng = np.random.default_rng(1)
    x1, x2 = (rng.standard_normal((2, 3, 16, 16)).astype(np.float32) for _ in "ab")
    y1 = model(x1)
    y1_copy = y1.copy()
    y2 = model(x2)
    np.testing.assert_array_equal(y1, y1_copy)
    np.testing.assert_array_equal(y1, plain(x1))
    np.testing.assert_array_equal(y2, plain(x2))
    assert not np.shares_memory(y1, y2)
    assert not any(np.shares_memory(y, model._local.arenas[2].memory) for y in (y1, y2))


def test_batch_sizes_change_and_arenas_are_cached_per_batch():
    model = compile_graph(trace_model(tiny_resnet(), (None, 3, 16, 16)))
    plain = compile_graph(model.graph, passes=(), planned_buffers=False)
    rng = np.random.default_rng(2)
    first = {}
    for n in (2, 1, 3, 2, 1):
        x = rng.standard_normal((n, 3, 16, 16)).astype(np.float32)
        np.testing.assert_array_equal(model(x), plain(x))
        first.setdefault(n, model._local.arenas[n])
        assert model._local.arenas[n] is first[n]  # allocated once per batch size
    assert list(model._local.arenas) == [3, 2, 1]  # most recently used last
    for n in (4, 5):
        model(rng.standard_normal((n, 3, 16, 16)).astype(np.float32))
    assert list(model._local.arenas) == [2, 1, 4, 5]  # at most ARENA_CACHE_SIZE kept
    assert not hasattr(plain._local, "arenas")
    assert model(np.zeros((0, 3, 16, 16), np.float32)).shape == (0, 5)  # empty: no arena


def test_inputs_with_different_batches_run_without_the_arena():
    g = Graph([Node("add", ["x", "z"], ["s"]), Node("add", ["s", "s"], ["y"])], {},
              {"x": (None, 3), "z": (None, 3)}, ["y"])  # fmt: skip
    model = compile_graph(g)
    x, z = np.ones((2, 3), np.float32), np.full((1, 3), 2, np.float32)
    np.testing.assert_array_equal(model.run({"x": x, "z": z})["y"], np.full((2, 3), 6))
    assert not getattr(model._local, "arenas", None)
    np.testing.assert_array_equal(model.run({"x": x, "z": x})["y"], np.full((2, 3), 4))
    assert set(model._local.arenas[2].views) == {"s"}


def test_a_kernel_returning_a_view_of_a_planned_buffer_is_copied():
    g = _conv_chain()
    g.nodes.insert(2, Node("relu", ["s"], ["r"]))  # relu does not write into the arena
    g.nodes[3].inputs = ["r", "w2"]
    g.outputs = ["y", "r"]
    model = compile_graph(g, passes=())
    fn, args, outs, free = model._steps[2]
    model._steps[2] = (lambda s: (s,), args, outs, free)  # a kernel that returns its input
    x = np.random.default_rng(4).standard_normal((1, 4, 6, 5)).astype(np.float32)
    out = model.run({"x": x})
    s = model._local.arenas[1].views["s"]
    assert not np.shares_memory(out["r"], s)
    np.testing.assert_array_equal(out["r"], s)


def test_threads_have_their_own_arenas():
    from concurrent.futures import ThreadPoolExecutor

    model = compile_graph(trace_model(tiny_resnet(), (None, 3, 16, 16)))
    plain = compile_graph(model.graph, passes=(), planned_buffers=False)
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((2, 3, 16, 16)).astype(np.float32) for _ in range(8)]
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(model, xs))
    for x, y in zip(xs, got, strict=True):
        np.testing.assert_array_equal(y, plain(x))
