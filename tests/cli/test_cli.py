"""The cnnperf command: --version and demo."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys

import pytest

import cnnperf
from cnnperf.cli.demo import run_demo
from cnnperf.cli.main import main
from cnnperf.ops import conv_params

LAYER_PARAMS = conv_params((1, 64, 56, 56), (64, 64, 3, 3), padding=1)


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


def test_demo_prints_every_engine_with_rates():
    buf = io.StringIO()
    assert run_demo(rounds=1, out=buf) == 0
    text = buf.getvalue()
    for engine in ("cnnperf direct", "cnnperf im2col", "cnnperf auto", "PyTorch", "naive float64"):
        assert engine in text
    rows = [line for line in text.splitlines() if line.startswith("cnnperf ") and "ms" in line]
    applicable = [a for a in cnnperf.ops.CONV_ALGOS.values() if a.why_not(LAYER_PARAMS) is None]
    assert len(rows) == len(applicable) + 1  # every algorithm that covers the layer, and auto
    assert {"cnnperf winograd", "cnnperf im2col", "cnnperf direct"} <= {
        r[:22].strip() for r in rows
    }
    for row in rows:
        gflops = float(row.split()[-3])
        assert gflops > 0
        speedup = float(re.search(r"([\d,]+)x$", row).group(1).replace(",", ""))
        assert speedup > 1  # a compiled kernel must beat the Python loop


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out
