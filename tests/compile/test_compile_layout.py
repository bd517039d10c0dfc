"""The layout pass (compile.layout.choose_layout): which convs go blocked, where the graph
converts, and that the compiled outputs equal the unpassed graph's."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import assert_rel_close

from cnnperf.compile import Graph, Node, compile_graph
from cnnperf.compile.layout import choose_layout
from cnnperf.compile.passes import DEFAULT_PASSES

RNG = np.random.default_rng(0)
TOL = 1e-5


def _r(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _pw(x, y, c_in, c_out, inits, act="relu6", residual=None):
    inits[f"{y}.w"], inits[f"{y}.b"] = _r(c_out, c_in, 1, 1) * 0.3, _r(c_out)
    ins = [x, f"{y}.w", f"{y}.b"] + ([residual] if residual else [])
    attrs = {"activation": act} | ({"residual": True} if residual else {})
    return Node("conv2d", ins, [y], attrs, name=y)


def _dw(x, y, c, inits, stride=1, act="relu6"):
    inits[f"{y}.w"], inits[f"{y}.b"] = _r(c, 1, 3, 3) * 0.3, _r(c)
    attrs = {"groups": c, "pads": (1, 1, 1, 1), "stride": (stride, stride), "activation": act}
    return Node("conv2d", [x, f"{y}.w", f"{y}.b"], [y], attrs, name=y)


def _inverted_residuals() -> Graph:
    """Two MobileNetV2 blocks (the first with a residual from the input), then a head that
    reads the blocked group's last value twice: a pool (NCHW) and a graph output."""
    i: dict = {}
    nodes = [
        _pw("x", "e1", 16, 48, i), _dw("e1", "d1", 48, i),
        _pw("d1", "p1", 48, 16, i, None, "x"),
        _pw("p1", "e2", 16, 48, i), _dw("e2", "d2", 48, i, stride=2),
        _pw("d2", "p2", 48, 24, i, None),
        Node("global_avg_pool2d", ["p2"], ["pool"]),
    ]  # fmt: skip
    return Graph(nodes=nodes, initializers=i, inputs={"x": (None, 16, 9, 11)},
                 outputs=["pool", "p2"])  # fmt: skip


def _check_same(g: Graph, batches=(1, 3)):
    fast, plain = compile_graph(g), compile_graph(g, passes=())
    for n in batches:
        x = _r(n, *g.inputs["x"][1:])
        got, want = fast.run({"x": x}), plain.run({"x": x})
        for k in want:
            assert got[k].shape == want[k].shape
            assert_rel_close(got[k], want[k], TOL, f"{k} at batch {n}")
    return fast


def test_inverted_residual_blocks_run_blocked_and_convert_at_the_borders():
    g = _inverted_residuals()
    model = _check_same(g)
    ops = Counter(n.op for n in model.graph.nodes)
    layouts = Counter(n.attrs.get("layout") for n in model.graph.nodes if n.op == "conv2d")
    assert layouts == {"nchw8c": 6}
    # x enters once (read by e1 and as p1's residual); p2 leaves once (pool and graph output)
    assert ops["to_blocked"] == 1 and ops["from_blocked"] == 1
    assert DEFAULT_PASSES[-1] is choose_layout
    rows = model.profile(_r(1, 16, 9, 11), repeat=1)
    algos = {r["name"]: r["algorithm"] for r in rows}
    assert algos["d1"] == "blocked_depthwise" and algos["p1"] == "blocked_pointwise"


def test_a_value_read_inside_and_outside_the_group_is_converted_once():
    g = _inverted_residuals()
    g.nodes.append(Node("sigmoid", ["d1"], ["side"]))  # d1 leaves the group as well
    g.outputs.append("side")
    model = _check_same(g)
    froms = [n.inputs[0] for n in model.graph.nodes if n.op == "from_blocked"]
    assert sorted(froms) == ["d1:nchw8c", "p2:nchw8c"]


@pytest.mark.parametrize(
    "case",
    ["no depthwise", "too few", "channels", "activation"],
)
def test_groups_that_do_not_pay_or_cannot_run_blocked_stay_nchw(case):
    i: dict = {}
    if case == "no depthwise":  # pointwise only: left to BLAS
        nodes = [_pw("x", "a", 16, 32, i), _pw("a", "b", 32, 16, i), _pw("b", "c", 16, 16, i)]
    elif case == "too few":
        nodes = [_pw("x", "a", 16, 32, i), _dw("a", "b", 32, i)]
    elif case == "channels":  # 12 channels: not in blocks of 8
        nodes = [_pw("x", "a", 16, 12, i), _dw("a", "b", 12, i), _pw("b", "c", 12, 16, i)]
    else:  # sigmoid is not fused by the blocked kernels: the chain breaks into groups of 1
        nodes = [_pw("x", "a", 16, 32, i), _dw("a", "b", 32, i, act="sigmoid"),
                 _pw("b", "c", 32, 16, i)]  # fmt: skip
    g = Graph(nodes=nodes, initializers=i, inputs={"x": (None, 16, 6, 6)},
              outputs=[nodes[-1].outputs[0]])  # fmt: skip
    out = choose_layout(g)
    assert [n.op for n in out.nodes] == ["conv2d"] * len(nodes)
    assert all("layout" not in n.attrs for n in out.nodes)
    _check_same(g)


def test_a_graph_input_read_only_by_the_group_and_a_non_constant_weight():
    i: dict = {}
    nodes = [_pw("x", "a", 16, 32, i), _dw("a", "b", 32, i), _pw("b", "c", 32, 16, i)]
    nodes[1].inputs[1] = "w_in"  # the depthwise weight is a run-time input: not a candidate
    g = Graph(nodes=nodes, initializers=i, inputs={"x": (None, 16, 6, 6)}, outputs=["c"])
    g.inputs["w_in"] = (32, 1, 3, 3)
    out = choose_layout(g)
    assert all("layout" not in n.attrs for n in out.nodes)


def test_undo_layout_and_export_of_a_blocked_graph(tmp_path):
    import onnxruntime as ort

    from cnnperf.compile.layout import undo_layout
    from cnnperf.onnx import save

    g = _inverted_residuals()
    model = compile_graph(g)
    plain = undo_layout(model.graph)
    assert not {"to_blocked", "from_blocked"} & {n.op for n in plain.nodes}
    assert all("layout" not in n.attrs for n in plain.nodes)
    path = tmp_path / "blocks.onnx"
    save(model, path)  # exported as NCHW: other runtimes know nothing of the layout
    x = _r(2, 16, 9, 11)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {sess.get_inputs()[0].name: x}
    got = sess.run(None, feeds)  # the graph's outputs, in order (the exporter names them)
    want = model.run({"x": x})
    for k, y in zip(model.output_names, got, strict=True):
        assert_rel_close(y, want[k], 1e-5, k)


def _stem_graph(c_in=3, extra_reader=False) -> Graph:
    """A stem conv into a group of three, ending in a global average pool."""
    i = {"s.w": _r(16, c_in, 3, 3) * 0.3, "s.b": _r(16)}
    attrs = {"stride": (2, 2), "pads": (1, 1, 1, 1), "activation": "relu"}
    stem = Node("conv2d", ["x", "s.w", "s.b"], ["s"], attrs, name="s")
    nodes = [stem, _dw("s", "d", 16, i), _pw("d", "p", 16, 24, i), _pw("p", "q", 24, 16, i, None),
             Node("global_avg_pool2d", ["q"], ["pool"], name="pool")]  # fmt: skip
    outputs = ["pool"]
    if extra_reader:
        nodes.append(Node("sigmoid", ["s"], ["side"]))
        outputs.append("side")
    return Graph(nodes=nodes, initializers=i, inputs={"x": (None, c_in, 12, 13)}, outputs=outputs)


def test_a_stem_writes_the_group_blocked_and_the_pool_reads_it_blocked():
    model = _check_same(_stem_graph())
    layouts = [n.attrs.get("layout") for n in model.graph.nodes]
    assert layouts == ["nchw_to_nchw8c", "nchw8c", "nchw8c", "nchw8c", "nchw8c"]
    assert model.graph.nodes[-1].op == "global_avg_pool2d"  # no conversion anywhere
    assert model.shapes[model.graph.nodes[0].outputs[0]] == (None, 2, 6, 7, 8)
    rows = model.profile(_r(2, 3, 12, 13), repeat=1)
    assert rows[0]["algorithm"] == "blocked_gemm"
    assert rows[0]["flops"] == 2 * 2 * 16 * 27 * 6 * 7  # as for the NCHW conv


@pytest.mark.parametrize("case", ["read elsewhere", "long reduction"])
def test_a_stem_stays_nchw_when_it_does_not_pay(case):
    g = _stem_graph(extra_reader=True) if case == "read elsewhere" else _stem_graph(c_in=32)
    model = _check_same(g)
    ops = [n.op for n in model.graph.nodes]
    assert model.graph.nodes[0].attrs.get("layout") is None
    assert ops[1] == "to_blocked"


def test_blocked_steps_run_bound_to_the_arena_per_thread_count():
    from cnnperf import config
    from cnnperf.compile.executor import _LANDS, _noop

    g = _inverted_residuals()
    model = compile_graph(g)
    plain = compile_graph(g, passes=(), planned_buffers=False)
    names = [n.name for n in model.graph.nodes]
    threads = config.get_num_threads()
    try:
        for t, seed in ((threads, 1), (1, 2), (threads, 3)):
            config.set_num_threads(t)
            x = np.random.default_rng(seed).standard_normal((2, 16, 9, 11)).astype(np.float32)
            got, want = model.run({"x": x}), plain.run({"x": x})
            first = compile_graph(g).run({"x": x})  # a first run of a new model
            for k in want:  # bit-identical to that: each run reads the new input
                np.testing.assert_array_equal(got[k], first[k])
                assert_rel_close(got[k], want[k], TOL, k)
    finally:
        config.set_num_threads(threads)
    arena = model._local.arenas[2]
    assert set(arena.programs) == {threads, 1}
    program = dict(zip(names, arena.programs[1], strict=True))
    # every blocked conv reads planned buffers or constants; the reorder that writes the
    # first one's input is not bound (it reads the graph input) but lands in its buffer
    assert all(callable(program[v]) for v in ("e1", "d1", "p1", "e2", "d2", "p2"))
    # and they run as one chain (ops.run_chained), one parallel region, at the first of them,
    # each expansion fused with the depthwise conv that alone reads it
    kernels = [layer.kernel for layer in program["e1"].layers]
    assert kernels == ["expand_depthwise_blocked", "pointwise_blocked"] * 2
    assert all(program[v] is _noop for v in ("d1", "p1", "e2", "d2", "p2"))
    assert program["e1:to_blocked"] is _LANDS
    assert program["p2:from_blocked"] is None  # writes a graph output, never planned


def test_fused_expansions_compute_what_the_unfused_layers_compute(monkeypatch):
    """Each expansion that only its depthwise conv reads runs fused with it (e1 + d1, e2 +
    d2); the output is bit-identical to the model compiled without the fusion, and the
    expansion's input never shares a buffer with the depthwise conv's output (the fused
    kernel writes one while it still reads the other)."""
    from cnnperf.compile import executor

    g = _inverted_residuals()
    fused = compile_graph(g)
    assert fused._fusable == {1, 4}  # e1 -> d1, e2 -> d2 (index 0 is the to_blocked)
    monkeypatch.setattr(executor, "FUSE_EXPAND_DEPTHWISE", False)
    plain = compile_graph(g)
    assert plain._fusable == set()
    for n in (1, 2, 5):
        x = _r(n, 16, 9, 11)
        got, want = fused.run({"x": x}), plain.run({"x": x})
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
        views = fused._local.arenas[n].views
        names = [m.name for m in fused.graph.nodes]
        for i in fused._fusable:
            node, dw = fused.graph.nodes[i], fused.graph.nodes[i + 1]
            assert (names[i], names[i + 1]) in (("e1", "d1"), ("e2", "d2"))
            assert not np.shares_memory(views[node.inputs[0]], views[dw.outputs[0]])
        program = fused._local.arenas[n].programs[_threads()]
        kernels = [layer.kernel for layer in program[names.index("e1")].layers]
        assert kernels == ["expand_depthwise_blocked", "pointwise_blocked"] * 2


def test_a_depthwise_output_never_takes_the_buffer_of_the_expansion_input():
    """Without the plan's hold, the stride-2 depthwise output (smaller than the expansion's
    input, which is dead after the expansion's step) would reuse that input's buffer."""
    i: dict = {}
    nodes = [_pw("x", "e1", 16, 48, i), _dw("e1", "d1", 48, i, stride=2),
             _pw("d1", "p1", 48, 16, i, None)]  # fmt: skip
    g = Graph(nodes=nodes, initializers=i, inputs={"x": (None, 16, 9, 11)}, outputs=["p1"])
    model = _check_same(g, batches=(2,))
    (k,) = model._fusable
    views = model._local.arenas[2].views
    src, dst = model.graph.nodes[k].inputs[0], model.graph.nodes[k + 1].outputs[0]
    assert not np.shares_memory(views[src], views[dst])
    model._hold = {}  # what the plan would do without it
    model._local.arenas.clear()
    model.run({"x": _r(2, 16, 9, 11)})
    views = model._local.arenas[2].views
    assert np.shares_memory(views[src], views[dst])


def test_an_expansion_read_elsewhere_too_is_not_fused():
    i: dict = {}
    nodes = [_pw("x", "e1", 16, 48, i), _dw("e1", "d1", 48, i),
             _pw("d1", "p1", 48, 48, i, None, "e1")]  # fmt: skip
    g = Graph(nodes=nodes, initializers=i, inputs={"x": (None, 16, 9, 11)}, outputs=["p1"])
    model = _check_same(g)
    assert model._fusable == set()
    g.outputs.append("e1")
    assert compile_graph(g)._fusable == set()


def test_a_step_that_allocates_instead_of_writing_its_buffer_is_copied_there():
    g = _inverted_residuals()
    model = compile_graph(g)
    i = [n.op for n in model.graph.nodes].index("to_blocked")
    fn, args, outs, free = model._steps[i]
    model._into[i] = lambda out, x: fn(x)  # ignores its planned buffer
    x = np.random.default_rng(6).standard_normal((1, 16, 9, 11)).astype(np.float32)
    got, want = model.run({"x": x}), compile_graph(g).run({"x": x})
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def _resnet_stem(pool_pads=(1, 1, 1, 1), readers=1) -> Graph:
    """ResNet's head: a 7x7/2 stem into a 3x3/2 max pool, then a 3x3 conv (NCHW)."""
    i = {"s.w": _r(16, 3, 7, 7) * 0.2, "s.b": _r(16), "c.w": _r(8, 16, 3, 3) * 0.2}
    attrs = {"stride": (2, 2), "pads": (3, 3, 3, 3), "activation": "relu"}
    pool = {"kernel": (3, 3), "stride": (2, 2), "pads": pool_pads}
    nodes = [
        Node("conv2d", ["x", "s.w", "s.b"], ["s"], attrs, name="s"),
        Node("max_pool2d", ["s"], ["m"], pool, name="m"),
        Node("conv2d", ["m", "c.w"], ["c"], {"pads": (1, 1, 1, 1)}, name="c"),
    ]
    outputs = ["c"]
    if readers > 1:
        nodes.append(Node("max_pool2d", ["s"], ["m2"], {"kernel": (2, 2)}, name="m2"))
        outputs.append("m2")
    return Graph(nodes=nodes, initializers=i, inputs={"x": (None, 3, 21, 18)}, outputs=outputs)


@pytest.mark.parametrize("readers", [1, 2])
def test_a_stem_read_only_by_max_pools_writes_blocked_and_the_pools_read_it(readers):
    model = _check_same(_resnet_stem(readers=readers))
    layouts = {n.name: n.attrs.get("layout") for n in model.graph.nodes}
    assert layouts["s"] == "nchw_to_nchw8c" and layouts["m"] == "nchw8c"
    assert layouts["c"] is None  # the pool writes NCHW: no conversion anywhere
    assert not {"to_blocked", "from_blocked"} & {n.op for n in model.graph.nodes}
    assert model.shapes["m"] == (None, 16, 6, 5) and model.shapes["s:nchw8c"] == (None, 2, 11, 9, 8)
    if readers > 1:
        assert layouts["m2"] == "nchw8c"


def test_a_stem_stays_nchw_for_a_pool_the_blocked_kernel_does_not_take():
    # asymmetric pads: an ONNX form ops.max_pool2d (PyTorch's) has no equivalent of
    model = _check_same(_resnet_stem(pool_pads=(0, 1, 0, 1)))
    assert all("layout" not in n.attrs for n in model.graph.nodes)


def test_a_classifier_head_chains_its_average_pool_and_packs_its_linear_layer():
    """Blocked convs, a blocked global average pool, flatten and a gemm (MobileNetV2's head):
    the pool runs in the convs' chain, and the gemm (a graph output) on the packed weight at
    small batches and BLAS at larger ones, all as the uncompiled graph computes them."""
    from cnnperf.compile.executor import _noop
    from cnnperf.compile.runtime import PACKED_LINEAR_ROWS

    i: dict = {"fc.w": _r(10, 16) * 0.2, "fc.b": _r(10)}
    nodes = [
        _pw("x", "e1", 16, 48, i), _dw("e1", "d1", 48, i), _pw("d1", "p1", 48, 16, i, None),
        Node("global_avg_pool2d", ["p1"], ["pool"], name="pool"),
        Node("flatten", ["pool"], ["flat"], {"axis": 1}, name="flat"),
        Node("gemm", ["flat", "fc.w", "fc.b"], ["y"], {"trans_b": 1}, name="fc"),
    ]  # fmt: skip
    g = Graph(nodes=nodes, initializers=i, inputs={"x": (None, 16, 9, 11)}, outputs=["y"])
    model = _check_same(g, batches=(1, 3, PACKED_LINEAR_ROWS, PACKED_LINEAR_ROWS + 1))
    layouts = {n.name: n.attrs.get("layout") for n in model.graph.nodes}
    assert layouts["pool"] == "nchw8c"
    names = [n.name for n in model.graph.nodes]
    program = dict(zip(names, model._local.arenas[1].programs[_threads()], strict=True))
    assert all(program[v] is _noop for v in ("d1", "p1", "pool"))
    # e1 and d1 (fused), p1 and the pool in one region
    kernels = [layer.kernel for layer in program["e1"].layers]
    assert kernels == ["expand_depthwise_blocked", "pointwise_blocked", "global_avg_pool_blocked"]
    # the run loop skips the chained steps, except to name the pool's buffer for flatten
    entries, consts = model._local.arenas[1].plans[_threads()]
    run = {names[e[0]]: e for e in entries}
    assert "d1" not in run and "p1" not in run
    assert run["pool"][2] == "pool" and run["e1"][2] is None
    assert consts == {}  # the unbound steps (flatten, the gemm) hold their constants


def _threads() -> int:
    from cnnperf import config

    return config.get_num_threads()
