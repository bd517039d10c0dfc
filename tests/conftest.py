"""Shared test helpers: the PyTorch oracle, error measures and Hypothesis profiles.

PyTorch and ONNX Runtime are required test dependencies: a missing one fails the run rather
than skipping the comparisons (see .ci/run).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("ci", deadline=None, derandomize=True, max_examples=40)
settings.register_profile("dev", deadline=None, max_examples=40)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_configure(config):
    # The tests never read or write the user's tuning cache, and run without tuning or a forced
    # algorithm unless a test sets one.
    import tempfile

    os.environ["CNNPERF_CACHE_DIR"] = tempfile.mkdtemp(prefix="cnnperf-test-cache-")
    for name in ("CNNPERF_TUNE", "CNNPERF_ALGO"):
        os.environ.pop(name, None)

    # Required oracles: an ImportError here stops the run instead of skipping comparisons.
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import onnxscript  # noqa: F401  (PyTorch's dynamo ONNX exporter)
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def rel_err(actual, expected) -> float:
    """max |actual - expected| / max |expected| (0 when both are empty or all zero)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    actual, expected = np.atleast_1d(actual), np.atleast_1d(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    if expected.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        diff = np.abs(actual - expected)
    same = (np.isnan(actual) & np.isnan(expected)) | (np.isinf(expected) & (actual == expected))
    diff[same] = 0.0
    if np.isnan(diff).any():
        return float("inf")
    scale = np.max(np.abs(np.nan_to_num(expected, nan=0.0, posinf=0.0, neginf=0.0)))
    err = float(np.max(diff))
    return err / scale if scale > 0 else err


def assert_rel_close(actual, expected, tol: float, what: str = "") -> None:
    """Relative error of ``actual`` against ``expected`` (scaled by max |expected|) <= tol."""
    err = rel_err(actual, expected)
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.1e}"


def to_torch(a, requires_grad: bool = False):
    import torch

    t = torch.from_numpy(np.array(a, copy=True, order="C"))  # keeps 0-d arrays 0-d
    t.requires_grad_(requires_grad)
    return t


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def cache_file(tmp_path, monkeypatch):
    """An empty tuning-cache directory, tuning off, no forced algorithm; yields the cache path.

    Test modules of the autotuner use it for every test (``pytestmark``).
    """
    from cnnperf.ops import autotune

    monkeypatch.setenv("CNNPERF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNPERF_TUNE", raising=False)
    monkeypatch.delenv("CNNPERF_ALGO", raising=False)
    autotune.reset_autotune_state()
    yield tmp_path / "cache" / autotune.CACHE_FILENAME
    autotune.reset_autotune_state()
