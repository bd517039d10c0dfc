"""The kernel warm-up helper of `cnnperf train` (cnnperf.training.prewarm)."""

from __future__ import annotations

import os
import subprocess
import sys

from cnnperf.training import prewarm


def test_every_warm_step_runs():
    # each step goes through the public ops on tiny inputs; a step that raised would only lose
    # its head start in the helper, so check here that none does
    for name, call in prewarm.warm_steps():
        call()  # raises on a broken step, naming it in the traceback
        assert name
    assert prewarm.main() == 0


def test_helper_process_runs_to_completion_and_stop_is_safe():
    proc = prewarm.start_prewarm(force=True)
    assert proc is not None and proc.args[0] == sys.executable
    assert proc.wait(timeout=300) == 0
    prewarm.stop_prewarm(proc)  # already finished: nothing to do
    prewarm.stop_prewarm(None)


def test_stop_terminates_a_running_helper():
    proc = prewarm.start_prewarm(force=True)
    prewarm.stop_prewarm(proc)
    assert proc.poll() is not None


def test_an_empty_kernel_cache_is_cold(tmp_path):
    # a fresh NUMBA_CACHE_DIR holds no kernel's cache index: the helper would start
    code = "from cnnperf.training.prewarm import cache_is_cold; print(cache_is_cold())"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
