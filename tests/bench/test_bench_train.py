"""``cnnperf bench --train``: the training-step benchmark against PyTorch (tiny batch, 1 round)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cnnperf.bench.train_step import (
    TRAIN_SCHEMA,
    TrainBenchSettings,
    cnnperf_lenet,
    format_train_report,
    run_train_bench,
    step_breakdown,
    torch_lenet,
    train_json,
)
from cnnperf.cli.main import main


def test_the_two_networks_match_layer_for_layer():
    model = cnnperf_lenet(3)
    tmodel = torch_lenet(torch, model.state_dict())
    assert list(model.state_dict()) == list(tmodel.state_dict())
    shapes = {k: tuple(v.shape) for k, v in tmodel.state_dict().items()}
    assert shapes["0.weight"] == (6, 1, 5, 5) and shapes["3.weight"] == (16, 6, 5, 5)
    assert shapes["7.weight"] == (120, 256) and shapes["11.weight"] == (10, 84)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(x).data, expected, rtol=1e-5, atol=1e-6)


def test_run_times_both_and_checks_one_step_against_pytorch():
    run = run_train_bench(TrainBenchSettings(batch=8, rounds=2), threads=1)
    assert list(run.engines) == ["cnnperf", "torch"]
    for res in run.engines.values():
        assert res.error is None and len(res.times_s) == 2
        assert res.rel_err is not None and res.rel_err <= 1e-4  # first step's loss
    assert run.check["ok"] is True
    assert run.check["loss_rel_err"] <= 1e-5 and run.check["params_rel_err"] <= 1e-4
    assert run.ratio() == pytest.approx(run.median_ms("cnnperf") / run.median_ms("torch"))
    assert run.images_per_s("torch") == pytest.approx(8 / (run.median_ms("torch") / 1e3))
    assert run.machine["threads"] == 1
    text = format_train_report(run)
    assert "ratio cnnperf/torch:" in text and "check after one step" in text
    assert "LeNet-5 size CNN on 28x28, batch 8" in text


def test_breakdown_names_every_operator_of_the_step():
    run = run_train_bench(TrainBenchSettings(batch=4, rounds=1), peers=(), breakdown=True)
    assert list(run.engines) == ["cnnperf"] and run.ratio() is None
    ops_ms = run.breakdown["ops_ms"]
    for name in (
        "conv2d(6, 1, 5, 5)", "conv2d_backward(16, 6, 5, 5)", "linear(120, 256)",
        "linear_backward(10, 84)", "max_pool2d", "max_pool2d_backward", "relu_backward",
        "cross_entropy", "cross_entropy_backward",
    ):  # fmt: skip
        assert name in ops_ms and ops_ms[name] >= 0
    total = run.breakdown["step_ms"]
    assert total == pytest.approx(sum(ops_ms.values()) + run.breakdown["other_ms"])
    assert "cnnperf step breakdown" in format_train_report(run, detail=True)


def test_breakdown_restores_the_ops():
    from cnnperf import ops

    before = ops.conv2d
    step_breakdown(lambda: ops.conv2d(np.ones((1, 1, 3, 3), np.float32),
                                      np.ones((1, 1, 2, 2), np.float32)), rounds=1)  # fmt: skip
    assert ops.conv2d is before


def test_cli_prints_the_ratio(capsys):
    argv = ["bench", "--train", "--batch", "8", "--rounds", "1", "--threads", "1", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "cnnperf bench --train" in out
    assert "ratio cnnperf/torch:" in out
    rows = [line for line in out.splitlines() if line.startswith(("cnnperf  ", "PyTorch "))]
    assert len(rows) == 2 and all(float(r.split()[-1]) > 0 for r in rows)  # images/s


def test_cli_json_to_stdout_is_pure_json(capsys):
    argv = ["bench", "--train", "--batch", "8", "--rounds", "1", "--json", "-", "--detail"]
    assert main([*argv, "--no-progress"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["schema"] == TRAIN_SCHEMA
    assert data["network"]["input_shape"] == [8, 1, 28, 28]
    assert set(data["engines"]) == {"cnnperf", "torch"}
    ratio = data["ratio"]["cnnperf/torch"]
    assert ratio == pytest.approx(
        data["engines"]["cnnperf"]["median_s"] / data["engines"]["torch"]["median_s"]
    )
    assert data["check"]["ok"] is True and data["breakdown"]["ops_ms"]
    assert data["settings"]["batch"] == 8 and data["settings"]["rounds"] == 1
    assert "ratio cnnperf/torch:" in captured.err  # the report went to stderr


def test_json_of_a_run_without_peers(tmp_path):
    run = run_train_bench(TrainBenchSettings(batch=2, rounds=1), peers=())
    data = json.loads(json.dumps(train_json(run), allow_nan=False))
    assert data["ratio"] == {"cnnperf/torch": None} and data["check"]["ok"] is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--layer", "1,4,8,8,4,3"], "--train times one training step; it does not take --layer"),
        (["--quick", "--engines", "auto"], "it does not take --quick, --engines"),
        (["--batch", "8", "--batch", "16"], "--train takes one --batch, got [8, 16]"),
        (["--threads", "4096"], "--threads 4096: only"),
        (["--rounds", "0"], "expected a positive integer, got '0'"),
    ],
)
def test_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--train", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "cnnperf bench: error:" in err and message in err
