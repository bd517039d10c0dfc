"""The kernel warm-up helper of `cnnperf train` (cnnperf.training.prewarm)."""

from __future__ import annotations

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


def test_cache_is_cold_is_a_bool():
    assert prewarm.cache_is_cold() in (True, False)
