"""cnnperf.bench: the suite table, the interleaved runner, the peers and the reports.

Tiny layers and one or two rounds keep this fast; nothing here asserts which engine is faster.
"""

from __future__ import annotations

import io
import json
import math
import sys

import numpy as np
import pytest

from cnnperf import ops
from cnnperf.bench import core, report
from cnnperf.bench.peers import OrtPeer, TorchPeer, available_peers
from cnnperf.bench.progress import ProgressBar
from cnnperf.bench.runner import (
    Engine,
    norm_rel_err,
    rotated,
    run_interleaved,
)
from cnnperf.bench.suite import (
    BATCHES,
    QUICK,
    SUITE,
    parse_shape_spec,
    select_layers,
)
from cnnperf.ops.conv_algos import CONV_ALGOS, ConvAlgorithm

TINY = ["2,6,9,9,4,3", "1,6,8,8,6,3,2,1,6"]  # a dense 3x3 at batch 2, a depthwise 3x3/2


# --- the suite table ----------------------------------------------------------------------


def test_suite_names_are_unique_and_shapes_valid():
    names = [layer.name for layer in SUITE]
    assert len(names) == len(set(names))
    for layer in SUITE:
        p = layer.params()  # conv_params accepts every layer
        assert p.flops > 0 and p.oh >= 1 and p.ow >= 1
        assert layer.name == f"{layer.base}/b{layer.n}"
        assert layer.n in BATCHES
        assert layer.base.split(".")[0] in layer.tags  # the network
        assert f"b{layer.n}" in layer.tags
    bases = {layer.base for layer in SUITE}
    for base in bases:  # every layer at every batch
        assert {layer.n for layer in SUITE if layer.base == base} == set(BATCHES)


def test_suite_covers_the_networks_and_kinds():
    nets = {layer.base.split(".")[0] for layer in SUITE}
    assert {"resnet18", "resnet50", "vgg16", "mobilenetv2", "alexnet"} <= nets
    tags = set().union(*(layer.tags for layer in SUITE))
    assert {"3x3s1", "3x3s2", "1x1", "depthwise", "7x7s2", "11x11s4", "5x5s1"} <= tags
    dw = [layer for layer in SUITE if "depthwise" in layer.tags]
    assert all(layer.groups == layer.c_in == layer.c_out for layer in dw)
    assert {layer.stride for layer in dw} == {1, 2}


def test_quick_subset_is_in_the_suite_and_representative():
    names = {layer.name for layer in SUITE}
    assert set(QUICK) <= names
    quick = select_layers(quick=True)
    assert [layer.name for layer in quick] == [n for n in names_in_order() if n in QUICK]
    tags = set().union(*(layer.tags for layer in quick))
    assert {"3x3s1", "3x3s2", "1x1", "depthwise", "b1", "b8"} <= tags


def names_in_order():
    return [layer.name for layer in SUITE]


def test_parse_shape_spec_defaults_and_tags():
    layer = parse_shape_spec("1,64,56,56,64,3")
    assert (layer.stride, layer.padding, layer.groups) == (1, 1, 1)
    assert layer.params().output_shape == (1, 64, 56, 56)
    assert {"custom", "3x3s1", "dense", "b1"} <= layer.tags
    dw = parse_shape_spec("8, 144, 56, 56, 144, 3, 2, 1, 144")
    assert dw.params().output_shape == (8, 144, 28, 28)
    assert "depthwise" in dw.tags
    assert parse_shape_spec("1,3,8,8,4,1,1,0").padding == 0


@pytest.mark.parametrize(
    "spec, message",
    [
        ("1,64,56,56", "expected a suite layer name or N,C,H,W,CO,K"),
        ("1,64,56,56,64,x", "expected a suite layer name or N,C,H,W,CO,K"),
        ("1,64,56,56,64,3,1,1,1,1", "6 to 9 comma-separated"),
        ("1,64,56,56,64,0", "must be >= 1"),
        ("1,6,8,8,4,3,1,1,4", "groups=4 must divide the input channels"),
        ("1,3,4,4,8,7,1,0", "larger than the padded input size"),
    ],
)
def test_parse_shape_spec_errors_name_the_problem(spec, message):
    with pytest.raises(ValueError, match="bad layer spec") as exc:
        parse_shape_spec(spec)
    assert message in str(exc.value)


def test_select_layers_by_name_base_tag_and_batch():
    both = select_layers(["resnet18.layer1.3x3"])
    assert [layer.name for layer in both] == ["resnet18.layer1.3x3/b1", "resnet18.layer1.3x3/b8"]
    one = select_layers(["resnet18.layer1.3x3/b8"])
    assert [layer.n for layer in one] == [8]
    assert all(
        "depthwise" in layer.tags and layer.n == 1
        for layer in select_layers(tags=["depthwise"], batches=[1])
    )
    mixed = select_layers(["vgg16.conv5_2/b1", TINY[0], "vgg16.conv5_2/b1", TINY[0]])
    assert [layer.name for layer in mixed] == ["vgg16.conv5_2/b1", "custom.2,6,9,9,4,3"]


def test_select_layers_errors():
    with pytest.raises(ValueError, match=r"unknown layer 'resnet18\.layer9'.*did you mean"):
        select_layers(["resnet18.layer9"])
    with pytest.raises(ValueError, match="unknown tag"):
        select_layers(tags=["9x9s9"])
    with pytest.raises(ValueError, match="no layer left"):
        select_layers(["resnet18.conv1/b1"], tags=["depthwise"])


# --- the runner ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_engines(clock, durations, log, out=None):
    """Engines that advance ``clock`` by the next duration in their list and log each call."""
    engines = []
    for name, seq in durations.items():
        it = iter(seq)

        def fn(name=name, it=it):
            log.append(name)
            clock.now += next(it)
            return np.ones(3) if out is None else out.get(name, np.ones(3))

        engines.append(Engine(name, fn))
    return engines


def test_rotated_order():
    assert rotated(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert rotated(["a", "b", "c"], 4) == ["b", "c", "a"]
    assert rotated([], 3) == []


def test_runner_interleaves_in_rotating_order_and_takes_the_median():
    clock, log = FakeClock(), []
    durations = {
        "a": [9.0, 1.0, 5.0, 3.0],  # first call, then three rounds
        "b": [8.0, 2.0, 2.0, 8.0],
        "c": [7.0, 4.0, 6.0, 5.0],
    }
    engines = fake_engines(clock, durations, log)
    res, ref = run_interleaved(engines, rounds=3, reference="b", clock=clock, budget_s=1e9)
    # first calls reference first, then round r starts at engine r (mod 3)
    assert log == ["b", "a", "c"] + ["a", "b", "c"] + ["b", "c", "a"] + ["c", "a", "b"]
    assert ref == "b"
    assert list(res) == ["a", "b", "c"]  # results in engine order
    assert res["a"].first_call_s == 9.0 and res["a"].times_s == [1.0, 5.0, 3.0]
    assert res["a"].median_s == 3.0 and res["a"].min_s == 1.0
    assert res["b"].median_s == 2.0
    assert res["c"].median_s == 5.0
    assert all(r.ok and r.rel_err == 0.0 and r.note is None for r in res.values())


def test_runner_adaptive_rounds_give_each_engine_its_target_time():
    clock, log = FakeClock(), []
    durations = {"fast": [0.01] * 100, "slow": [0.05] * 100, "tiny": [1e-5] * 100}
    engines = fake_engines(clock, durations, log)
    res, _ = run_interleaved(
        engines, target_s=0.1, min_rounds=5, max_rounds=50, clock=clock, budget_s=1e9
    )
    assert len(res["fast"].times_s) == 10  # 0.1 s of 0.01 s calls
    assert len(res["slow"].times_s) == 5  # min_rounds (0.25 s)
    assert len(res["tiny"].times_s) == 50  # max_rounds
    # interleaved while they all run: the first five rounds hold each engine once
    rounds = log[3:18]
    assert all(sorted(rounds[i : i + 3]) == ["fast", "slow", "tiny"] for i in range(0, 15, 3))
    assert all(r.note is None for r in res.values())


def test_runner_budget_skips_rounds_of_a_slow_engine_with_a_note():
    clock, log = FakeClock(), []
    engines = fake_engines(clock, {"quick": [0.1] * 20, "slow": [1.0] * 20}, log)
    res, _ = run_interleaved(engines, rounds=6, budget_s=2.5, clock=clock)
    assert len(res["quick"].times_s) == 6
    assert len(res["slow"].times_s) == 3  # 3 s spent > 2.5 s budget: the rest skipped
    assert "3 of 6 rounds" in res["slow"].note
    assert res["quick"].note is None


def test_runner_always_times_an_engine_once_even_over_budget():
    clock, log = FakeClock(), []
    engines = fake_engines(clock, {"huge": [10.0] * 5}, log)
    res, _ = run_interleaved(engines, rounds=3, budget_s=1.0, clock=clock)
    assert res["huge"].times_s == [10.0]


def test_runner_flags_wrong_outputs_and_survives_failures():
    clock, log = FakeClock(), []
    outs = {"ref": np.array([3.0, 4.0]), "good": np.array([3.0, 4.0 + 1e-6]), "bad": np.zeros(2)}
    engines = fake_engines(clock, {k: [1.0] * 5 for k in outs}, log, out=outs)

    def boom():
        raise NotImplementedError("no such case")

    engines.append(Engine("broken", boom))
    res, ref = run_interleaved(engines, rounds=2, reference="ref", tol=1e-4, clock=clock)
    assert ref == "ref"
    assert res["good"].ok and res["good"].rel_err == pytest.approx(1e-6 / 5)
    assert res["bad"].ok is False and res["bad"].rel_err == pytest.approx(1.0)
    assert res["broken"].error == "NotImplementedError: no such case"
    assert not res["broken"].times_s and not res["broken"].timed
    assert len(res["bad"].times_s) == 2  # timed anyway, flagged in the report


def test_runner_reference_falls_back_when_it_fails():
    clock, log = FakeClock(), []
    engines = fake_engines(clock, {"b": [1.0] * 3}, log)

    def boom():
        raise RuntimeError("x")

    engines.insert(0, Engine("a", boom))
    res, ref = run_interleaved(engines, rounds=1, reference="a", clock=clock)
    assert ref == "b" and res["b"].ok


def test_runner_rejects_duplicate_names():
    with pytest.raises(ValueError, match="unique"):
        run_interleaved([Engine("a", lambda: 1), Engine("a", lambda: 1)], rounds=1)


def test_norm_rel_err():
    assert norm_rel_err(np.ones(4), np.ones(4)) == 0.0
    assert norm_rel_err(np.zeros((2, 2)), np.ones(4)) == math.inf
    assert norm_rel_err([np.nan, 1.0], [1.0, 1.0]) == math.inf
    assert norm_rel_err([1.0, 1.0], [1.0, 0.0]) == pytest.approx(1.0)


# --- engines and peers --------------------------------------------------------------------


@pytest.fixture
def no_peak(monkeypatch):
    monkeypatch.setattr(core, "sgemm_peak_gflops", lambda *a, **k: 100.0)


def tiny_run(**kw):
    layers = select_layers(TINY)
    settings = core.BenchSettings(rounds=2, **kw)
    return core.run(layers, settings, threads=1, measure_peak=False)


def test_every_covering_algorithm_auto_and_both_peers_run_and_agree():
    result = tiny_run()
    assert set(result.peers) == {"torch", "ort"}
    assert result.peers["torch"].startswith("PyTorch")
    for r in result.layers:
        p = r.layer.params()
        covering = [name for name, algo in CONV_ALGOS.items() if algo.why_not(p) is None]
        assert list(r.engines) == covering + ["auto", "plan", "torch", "ort"]
        assert r.reference == "torch"
        for name, res in r.engines.items():
            assert res.error is None, (name, res.error)
            assert res.ok, (name, res.rel_err)
            assert res.rel_err < 1e-5
            assert len(res.times_s) == 2 and res.first_call_s > 0
        assert r.auto_algo in CONV_ALGOS
        assert r.engines["auto"].algo == r.auto_algo
        # the plan's algorithm is the one select_conv_algo picks for a prepared weight
        assert r.engines["plan"].algo == ops.select_conv_algo(p, weight_prepared=True).name
        assert r.ratio("torch") > 0 and r.ratio("ort") > 0
        assert r.ratio("torch", "plan") > 0 and r.ratio("ort", "plan") > 0
        assert r.best_cnnperf() in covering
    assert not result.notes


def test_peers_match_cnnperf_on_a_real_layer_shape():
    layer = select_layers(["mobilenetv2.f4.dw/b1"])[0]  # depthwise 3x3/2, groups=144
    x, w, b = core.layer_inputs(layer)
    from cnnperf import ops

    expected = ops.conv2d(x, w, b, stride=2, padding=1, groups=144)
    for peer in (TorchPeer(), OrtPeer()):
        assert peer.setup(1) is None
        try:
            y = peer.engine(x, w, b, layer).fn()
        finally:
            peer.teardown()
        assert y.shape == expected.shape
        assert norm_rel_err(y, expected) < 1e-5


def test_torch_threads_are_restored():
    import torch

    before = torch.get_num_threads()
    tiny_run(engines=("torch",))
    assert torch.get_num_threads() == before


def test_missing_peer_is_skipped_with_a_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    peers, notes = available_peers(1)
    assert [p.name for p in peers] == ["torch"]
    assert len(notes) == 1 and "ONNX Runtime or onnx not installed" in notes[0]
    result = tiny_run()
    assert set(result.peers) == {"torch"}
    assert "ort" not in result.layers[0].engines
    assert any("ONNX Runtime" in n for n in result.notes)
    assert "auto/ort" not in report.format_table(result)


def test_engine_filter():
    result = tiny_run(engines=("auto", "ort"))
    assert all(list(r.engines) == ["auto", "ort"] for r in result.layers)
    assert result.layers[0].reference == "ort"


class ZerosAlgo(ConvAlgorithm):
    """A deliberately wrong algorithm: the report must flag it."""

    name = "zeros"

    def run(self, xp, w_prep, bias, p, out, epi=None):
        out[...] = 0


class NeverAlgo(ConvAlgorithm):
    name = "never"

    def why_not(self, p):
        return "covers nothing"


def test_registry_is_iterated_wrong_outputs_flagged_uncovered_skipped(monkeypatch):
    monkeypatch.setitem(CONV_ALGOS, "zeros", ZerosAlgo())
    monkeypatch.setitem(CONV_ALGOS, "never", NeverAlgo())
    result = tiny_run()
    r = result.layers[0]
    assert r.engines["zeros"].ok is False
    assert "never" not in r.engines and r.unsupported["never"] == "covers nothing"
    assert r.best_cnnperf() != "zeros"
    table = report.format_table(result)
    assert "zeros" in table.splitlines()[0]
    assert "!" in table.splitlines()[2]
    assert any("cnnperf zeros output differs from torch" in n for n in result.notes)
    assert "not run: covers nothing" in report.format_detail(result)


# --- reports ------------------------------------------------------------------------------


def test_table_summary_and_json_are_well_formed():
    result = tiny_run()
    result.machine["peak_gflops"] = 100.0
    table = report.format_table(result).splitlines()
    header = table[0].split()
    for col in ("layer", "shape", "GFLOP", "auto", "torch", "ort", "%peak", "best"):
        assert col in header
    assert "auto/torch" in header and "auto/ort" in header
    assert "plan/torch" in header and "plan/ort" in header and "plan" in header
    assert len(table) == 2 + len(TINY)
    assert table[2].startswith("custom.2,6,9,9,4,3")
    summary = report.summarize(result)
    assert summary["layers"] == 2
    assert set(summary["geomean"]) == {"torch", "ort"}
    assert summary["by_tag"]["depthwise"]["layers"] == 1
    assert set(summary["plan"]["geomean"]) == {"torch", "ort"}
    assert summary["plan"]["by_tag"]["depthwise"]["layers"] == 1
    text = report.format_summary(result, summary)
    assert "geometric" in text and "worst auto vs torch" in text and "worst plan vs ort" in text

    data = json.loads(json.dumps(report.to_json(result, summary), allow_nan=False))
    assert data["schema"] == "cnnperf-bench/2"
    m = data["machine"]
    for key in ("cpu", "cores", "threads", "peak_gflops", "versions", "python"):
        assert key in m
    assert m["threads"] == 1 and m["peak_gflops"] == 100.0
    assert {"numpy", "numba", "torch", "onnxruntime", "cnnperf"} <= set(m["versions"])
    assert data["settings"]["rounds"] == 2
    layer = data["layers"][0]
    assert layer["name"] == "custom.2,6,9,9,4,3" and layer["batch"] == 2
    assert layer["shape"] == {
        "n": 2, "c_in": 6, "h": 9, "w": 9, "c_out": 4, "kh": 3, "kw": 3,
        "stride": 1, "padding": 1, "groups": 1,
    }  # fmt: skip
    assert layer["flops"] == 2 * 2 * 4 * 6 * 9 * 9 * 9
    assert set(layer["ratios"]) == {"auto/torch", "auto/ort", "plan/torch", "plan/ort"}
    for name, eng in layer["engines"].items():
        assert len(eng["times_s"]) == eng["rounds"] == 2
        assert eng["median_s"] == pytest.approx(float(np.median(eng["times_s"])))
        assert eng["min_s"] == min(eng["times_s"])
        assert eng["first_call_s"] > 0
        assert eng["gflops"] == pytest.approx(layer["flops"] / eng["median_s"] / 1e9)
        assert eng["peak_fraction"] == pytest.approx(eng["gflops"] / 100.0)
        assert eng["ok"] is True, name
        assert eng["kind"] in ("cnnperf", "peer")


def test_geomean():
    assert report.geomean([1.0, 4.0]) == pytest.approx(2.0)
    assert report.geomean([None, 2.0]) == pytest.approx(2.0)
    assert report.geomean([]) is None


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")  # installed by the test extra; skip only without it
    result = tiny_run()
    result.machine["peak_gflops"] = 50.0
    path = tmp_path / "bench.png"
    report.plot(result, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = tiny_run(engines=("auto",))
    with pytest.raises(RuntimeError, match=r"pip install 'cnnperf\[plot\]'"):
        report.plot(result, "never.png")


def test_progress_bar_only_on_terminals():
    buf = io.StringIO()
    bar = ProgressBar(buf)  # StringIO is not a TTY
    bar(1, 3, "x")
    assert buf.getvalue() == ""
    bar = ProgressBar(buf, enabled=True)
    bar(1, 4, "resnet18.conv1/b1")
    assert buf.getvalue().startswith("\r[######") and "1/4 resnet18.conv1/b1" in buf.getvalue()
    bar(4, 4)
    assert buf.getvalue().endswith("\r")


def fake_layer_result(name, times, auto_algo):
    from cnnperf.bench.runner import EngineResult

    layer = select_layers([name])[0]
    engines = {}
    for eng, t in times.items():
        kind = "peer" if eng in ("torch", "ort") else "cnnperf"
        engines[eng] = EngineResult(eng, kind, eng, times_s=[t, t], ok=True, rel_err=0.0)
    return core.LayerResult(layer, layer.params().flops, auto_algo, "torch", engines)


def test_summary_ratios_geomeans_and_selection_misses():
    a = fake_layer_result(
        "resnet18.layer1.3x3/b1",
        {"im2col": 1.0, "direct": 2.0, "auto": 2.0, "torch": 1.0},
        "direct",
    )
    b = fake_layer_result(
        "mobilenetv2.f3.dw/b1", {"im2col": 4.0, "direct": 1.0, "auto": 1.0, "torch": 2.0}, "direct"
    )
    run = core.BenchRun({"peak_gflops": None}, core.BenchSettings(), [a, b], [], {"torch": "PT"})
    assert a.ratio("torch") == 2.0 and b.ratio("torch") == 0.5
    assert a.best_cnnperf() == "im2col" and b.best_cnnperf() == "direct"
    assert a.gflops("auto") == pytest.approx(a.flops / 2.0 / 1e9)
    s = report.summarize(run)
    assert s["geomean"]["torch"] == pytest.approx(1.0)
    assert s["by_tag"]["depthwise"] == {"layers": 1, "torch": 0.5}
    assert s["worst"]["torch"][0] == {"layer": "resnet18.layer1.3x3/b1", "ratio": 2.0}
    assert s["auto_not_best"] == [
        {"layer": "resnet18.layer1.3x3/b1", "auto": "direct", "best": "im2col", "ratio": 2.0}
    ]
    assert "auto picked direct; im2col is 2.00x faster" in report.format_summary(run, s)


def test_engine_notes_name_failures_mismatches_and_notes():
    from cnnperf.bench.runner import EngineResult, engine_notes

    engines = {
        "a": EngineResult("a", "cnnperf", "cnnperf a", ok=True),
        "b": EngineResult("b", "cnnperf", "cnnperf b", error="MemoryError: x"),
        "c": EngineResult("c", "peer", "ort", rel_err=2e-3, ok=False, note="spinning off"),
    }
    assert engine_notes("L/b1", engines, "torch", 1e-4) == [
        "L/b1: cnnperf b failed: MemoryError: x",
        "L/b1: ort output differs from torch's by 2.00e-03 (norm-relative, tolerance 0.0001)",
        "L/b1: ort: spinning off",
    ]
