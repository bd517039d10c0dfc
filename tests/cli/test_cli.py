"""The cnnperf command: --version and demo (train, compile, profile, naive loop, one layer)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import cnnperf
from cnnperf.autograd.grad_mode import no_grad
from cnnperf.cli.demo import run_demo
from cnnperf.cli.demo_perf import naive_conv_seconds, torch_twin
from cnnperf.cli.main import build_parser, main
from cnnperf.compile import compile_model
from cnnperf.ops import conv_params
from cnnperf.training import build_model

LAYER_PARAMS = conv_params((1, 64, 56, 56), (64, 64, 3, 3), padding=1)
SECTIONS = (
    "== 1. Train: resnet_small on the bundled digits, 2 epoch(s)",
    "== 2. Compile: cnnperf.compile(model, input_shape=(None, 1, 8, 8)) ==",
    "== 3. Profile: the compiled model at batch 256",
    "== 4. The naive loop: cnnperf.reference.conv2d",
    "== 5. One ResNet-18 layer, every convolution algorithm ==",
)
# Two epochs of cnnperf train's recipe reach about 96.7% on the digits' test split; a broken
# training, compiler or evaluation (chance: 10%) cannot reach this.
QUICK_ACCURACY_FLOOR = 0.90


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"cnnperf {cnnperf.__version__}"


def test_entry_point_is_installed():
    exe = shutil.which("cnnperf")
    cmd = [exe] if exe else [sys.executable, "-m", "cnnperf.cli.main"]
    out = subprocess.run(cmd + ["--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"cnnperf {cnnperf.__version__}"


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def _section(text: str, start: str, end: str | None) -> str:
    i = text.index(start)
    return text[i : text.index(end, i)] if end else text[i:]


def _check_layer_table(text: str, with_torch: bool) -> None:
    rows = [line for line in text.splitlines() if line.startswith("cnnperf ") and "ms" in line]
    applicable = [a for a in cnnperf.ops.CONV_ALGOS.values() if a.why_not(LAYER_PARAMS) is None]
    assert len(rows) == len(applicable) + 1  # every algorithm that covers the layer, and auto
    assert {"cnnperf winograd", "cnnperf im2col", "cnnperf direct"} <= {
        r[:22].strip() for r in rows
    }
    for row in rows:
        gflops = float(row.split()[-3])
        assert gflops > 0
        assert re.search(r"[\d,]+x$", row)  # the speed-up over the naive loop
    assert "naive float64 loop" in text
    assert ("PyTorch " + torch.__version__ in text) == with_torch


def _check_story(text: str, with_torch: bool) -> None:
    """What every demo run must show, with or without PyTorch."""
    starts = [text.index(s) for s in SECTIONS]
    assert starts == sorted(starts)  # each section, in order
    train = _section(text, SECTIONS[0], SECTIONS[1])
    epochs = re.findall(r"^epoch (\d)/2  loss ([\d.]+) .* ([\d,]+) img/s", train, re.M)
    assert [e[0] for e in epochs] == ["1", "2"]
    acc = float(re.search(r"test accuracy ([\d.]+)% after 2 epoch", train).group(1)) / 100
    assert acc > QUICK_ACCURACY_FLOOR

    comp = _section(text, SECTIONS[1], SECTIONS[2])
    m = re.search(r"on the (\d+) test images: (\d+)/(\d+) predictions agree \(100\.00%\)", comp)
    assert m and m.group(1) == m.group(2) == m.group(3) == "359"
    assert float(re.search(r"max \|logit difference\| ([\d.e+-]+)", comp).group(1)) < 1e-3
    compiled_acc = float(re.search(r"compiled test accuracy ([\d.]+)%", comp).group(1)) / 100
    assert compiled_acc == pytest.approx(acc, abs=1e-9)  # the same predictions
    m = re.search(r"(\d+) traced nodes -> (\d+): 9 batch norm\(s\) folded into conv", comp)
    traced, nodes = int(m.group(1)), int(m.group(2))
    assert nodes < traced
    assert re.search(r"planned peak activation memory: [\d.]+ KiB at batch 1", comp)

    prof = _section(text, SECTIONS[2], SECTIONS[3])
    assert re.search(r"^layer1\.0\.conv1 +conv2d +256x16x8x8 ", prof, re.M)
    assert f"total: {nodes} nodes" in prof
    rows = dict(re.findall(r"^(cnnperf compiled|cnnperf nn \(eager\)|PyTorch \S+) +(.*)$",
                           prof, re.M))  # fmt: skip
    expected = {"cnnperf compiled", "cnnperf nn (eager)"} | (
        {f"PyTorch {torch.__version__}"} if with_torch else set()
    )
    assert set(rows) == expected
    for rates in rows.values():
        assert all(float(v.replace(",", "")) > 0 for v in rates.split())  # batch 1 and 256
    assert ("PyTorch not installed: skipping the PyTorch comparison" in prof) != with_torch
    assert "ERROR" not in text

    naive = _section(text, SECTIONS[3], SECTIONS[4])
    assert "each of the 9 conv layers" in naive
    assert "0.76 M multiply-adds" in naive
    slower = r"-> the naive loop is ~[\d,]+x slower at batch 1, ~[\d,]+x slower at batch 256"
    assert re.search(slower, naive)
    _check_layer_table(_section(text, SECTIONS[4], "summary:"), with_torch)
    assert re.search(r"^summary: digits test accuracy [\d.]+% after 2 epoch\(s\)", text, re.M)
    assert "compiled = eager on 359/359 test predictions" in text
    assert re.search(r"naive loop ~[\d,]+x slower than compiled at 256", text)


def test_quick_demo_tells_the_whole_story():
    buf = io.StringIO()
    assert run_demo(quick=True, out=buf) == 0
    _check_story(buf.getvalue(), with_torch=True)


def test_quick_demo_runs_without_pytorch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    buf = io.StringIO()
    assert run_demo(quick=True, out=buf) == 0
    text = buf.getvalue()
    _check_story(text, with_torch=False)
    assert "PyTorch not installed" in text.splitlines()[1]


def test_demo_options_parse_and_reject_bad_values(capsys):
    args = build_parser().parse_args(["demo", "--quick", "--epochs", "3", "--threads", "1"])
    assert (args.quick, args.epochs, args.threads, args.rounds, args.batch) == (
        True, 3, 1, None, 1,
    )  # fmt: skip
    for argv, message in (
        (["demo", "--epochs", "0"], "argument --epochs: expected an integer >= 1, got '0'"),
        (["demo", "--rounds", "x"], "argument --rounds: expected an integer, got 'x'"),
        (["demo", "--threads", "999"], "argument --threads: expected an integer from 1 to"),
    ):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match="run_demo: epochs must be an int >= 1, got 0"):
        run_demo(epochs=0)


def _resnet_small_with_batchnorm_stats(seed: int):
    model = build_model("resnet_small", 1, 10, 8, seed=seed)
    rng = np.random.default_rng(seed)
    state = model.state_dict()
    for key, value in state.items():  # non-trivial statistics, so that folding them matters
        if key.endswith("running_mean"):
            state[key] = (0.5 * rng.standard_normal(value.shape)).astype(np.float32)
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, value.shape).astype(np.float32)
    model.load_state_dict(state)
    return model.eval()


def test_torch_twin_loads_the_state_dict_and_agrees_with_cnnperf():
    model = _resnet_small_with_batchnorm_stats(3)
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(np.float32)
    twin = torch_twin(model)
    assert set(twin.state_dict()) == set(model.state_dict())
    with no_grad():
        expected = model(x).data
    with torch.no_grad():
        got = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_torch_twin_names_an_architecture_it_does_not_cover():
    with pytest.raises(
        NotImplementedError, match="only resnet_small has a PyTorch twin, not 'lenet'"
    ):
        torch_twin(build_model("lenet", 1, 10, 8))


def test_naive_estimate_covers_every_conv_of_the_network():
    model = _resnet_small_with_batchnorm_stats(1)
    compiled = compile_model(model, (None, 1, 8, 8))
    convs = [n for n in compiled.graph.nodes if n.op == "conv2d"]
    macs = 0
    for n in convs:  # multiply-adds per image: c_out * oh * ow * c_in/g * kh * kw
        c_out, c_in_g, kh, kw = compiled.graph.initializers[n.inputs[1]].shape
        _, _, oh, ow = compiled.shapes[n.outputs[0]]
        macs += c_out * oh * ow * c_in_g * kh * kw
    r = naive_conv_seconds(compiled)
    assert (r["layers"], r["macs"]) == (len(convs), macs) == (9, 762_880)
    assert r["outputs"] == sum(int(np.prod(compiled.shapes[n.outputs[0]][1:])) for n in convs)
    assert r["timed_outputs"] * 16 <= r["outputs"]  # one output channel of 16 to 64
    assert r["seconds"] > 0
    assert r["max_rel_err"] < 1e-5  # the float64 loop and cnnperf's float32 conv agree
