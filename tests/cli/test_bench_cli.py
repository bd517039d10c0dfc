"""The ``cnnperf bench`` command: parsing, errors, output files; tiny layers, 1-2 rounds."""

from __future__ import annotations

import json
import os
import sys

import pytest

from cnnperf.bench import core
from cnnperf.cli import bench as bench_cli
from cnnperf.cli.main import build_parser, main

SPEC = "1,4,8,8,4,3"


@pytest.fixture(autouse=True)
def fast_peak(monkeypatch):
    # The 2048^3 sgemm takes about a second; its measurement has its own test below.
    monkeypatch.setattr(core, "sgemm_peak_gflops", lambda *a, **k: 100.0)


def bench(*argv):
    return main(["bench", "--no-progress", "--rounds", "1", *argv])


def test_table_and_summary_on_stdout(capsys):
    assert bench("--layer", SPEC, "--layer", "1,4,8,8,4,1,2,0", "--threads", "1") == 0
    out = capsys.readouterr().out
    assert "cnnperf bench: 2 layer(s), 1 thread(s)" in out
    assert "peak 100 GFLOP/s" in out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("layer "))
    for col in ("shape", "auto", "torch", "ort", "auto/torch", "auto/ort", "best", "%peak"):
        assert col in header.split()
    assert any(line.startswith("custom.1,4,8,8,4,3 ") for line in lines)
    assert any(line.startswith("custom.1,4,8,8,4,1,2,0 ") for line in lines)
    assert "geometric" in out and "worst auto vs ort" in out


def test_json_to_stdout_is_pure_json(capsys):
    assert bench("--layer", SPEC, "--json", "-", "--engines", "auto,torch") == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["schema"] == "cnnperf-bench/2"
    assert list(data["layers"][0]["engines"]) == ["auto", "torch"]
    assert data["machine"]["peak_gflops"] == 100.0
    assert "cnnperf bench:" in captured.err  # the table went to stderr


def test_json_file_detail_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")  # installed by the test extra
    js, png = tmp_path / "b.json", tmp_path / "b.png"
    assert bench("--layer", SPEC, "--json", str(js), "--plot", str(png), "--detail") == 0
    out = capsys.readouterr().out
    assert f"wrote {js}" in out and f"wrote {png}" in out
    assert "median ms" in out  # --detail
    assert json.loads(js.read_text())["layers"][0]["name"] == f"custom.{SPEC}"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_list_prints_the_suite(capsys):
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert "resnet18.layer1.3x3/b8" in out and "mobilenetv2.f4.dw/b1" in out
    assert "in --quick" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--layer", "1,64,56"], "bad layer spec '1,64,56': expected a suite layer name or"),
        (["--layer", "1,6,8,8,4,3,1,1,4"], "groups=4 must divide the input channels"),
        (["--layer", "resnet99.conv1"], "unknown layer 'resnet99.conv1'"),
        (["--tag", "nope"], "unknown tag"),
        (["--engines", "torch,warp"], "--engines: unknown engine(s) ['warp']"),
        (["--rounds", "0"], "expected a positive integer, got '0'"),
        (["--target", "-1"], "expected a positive number"),
        (["--threads", "4096"], "only"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "cnnperf bench: error:" in err
    assert message in err


def test_plot_without_matplotlib_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit) as exc:
        bench("--layer", SPEC, "--plot", "x.png")
    assert exc.value.code == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err


def test_top_level_command_restarts_once_with_passive_pools(monkeypatch):
    calls = []

    def fake_execve(exe, argv, env):
        calls.append((exe, argv, env))
        raise SystemExit(0)

    for key in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT", bench_cli._REEXEC_MARK):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(os, "execve", fake_execve)
    monkeypatch.setattr(sys, "argv", ["cnnperf", "bench", "--layer", SPEC])
    args = build_parser().parse_args(["bench", "--layer", SPEC])
    with pytest.raises(SystemExit):
        bench_cli.run_bench_command(args, top_level=True)
    exe, argv, env = calls[0]
    assert argv == [sys.executable, "-m", "cnnperf", "bench", "--layer", SPEC]
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["OPENBLAS_THREAD_TIMEOUT"] == "4"
    assert env[bench_cli._REEXEC_MARK] == "1"
    # --spin keeps the defaults; the restarted process (marked) never restarts again
    calls.clear()
    for extra in (["--spin"], []):
        if not extra:
            monkeypatch.setenv(bench_cli._REEXEC_MARK, "1")
        args = build_parser().parse_args(["bench", "--no-progress", "--layer", SPEC, *extra])
        args.rounds, args.engines = 1, "auto"
        assert bench_cli.run_bench_command(args, top_level=True) == 0
    assert calls == []


def test_measures_the_sgemm_peak():
    from cnnperf.bench.machine import sgemm_peak_gflops

    assert sgemm_peak_gflops(size=128, rounds=2) > 0
