"""Thread control: one count for Numba and BLAS; import stays light."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import cnnperf
from cnnperf import config


def test_default_is_the_available_cores():
    if os.environ.get("CNNPERF_NUM_THREADS"):
        pytest.skip("CNNPERF_NUM_THREADS overrides the default")
    assert cnnperf.get_num_threads() == config.available_cores()


def test_set_num_threads_governs_numba_and_blas():
    import numba

    # Run a kernel so the kernels layer (and Numba) are loaded.
    cnnperf.ops.conv2d(np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 2, 2), np.float32))
    before = cnnperf.get_num_threads()
    try:
        cnnperf.set_num_threads(1)
        assert cnnperf.get_num_threads() == 1
        assert numba.get_num_threads() == 1
        assert config.blas_num_threads() == 1
        cnnperf.set_num_threads(config.available_cores())
        assert numba.get_num_threads() == config.available_cores()
        assert config.blas_num_threads() == config.available_cores()
    finally:
        cnnperf.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 10_000, 1.5, "2", True])
def test_set_num_threads_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="set_num_threads"):
        cnnperf.set_num_threads(bad)


def test_import_does_not_load_numba_or_compile():
    code = "import sys, cnnperf; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_env_thread_count_applies_to_blas():
    code = (
        "import cnnperf, cnnperf.config as c; "
        "print(cnnperf.get_num_threads(), c.blas_num_threads())"
    )
    env = dict(os.environ, CNNPERF_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["1", "1"]


def test_env_thread_count_must_be_an_integer():
    env = dict(os.environ, CNNPERF_NUM_THREADS="many")
    out = subprocess.run(
        [sys.executable, "-c", "import cnnperf"], capture_output=True, text=True, env=env
    )
    assert out.returncode != 0
    assert "CNNPERF_NUM_THREADS='many' is not an integer" in out.stderr
