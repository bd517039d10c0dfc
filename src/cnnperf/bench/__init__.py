"""``cnnperf bench``: convolution layers of real networks, cnnperf against PyTorch and ONNX Runtime.

Every cnnperf algorithm that covers a layer, ``auto``, and the peers run in one process at the
same thread count, interleaved, after a warm-up call each; the report gives median times,
GFLOP/s, the fraction of the machine's sgemm peak and time ratios against the peers.

>>> from cnnperf.bench import select_layers
>>> [layer.name for layer in select_layers(["resnet18.layer1.3x3"])]
['resnet18.layer1.3x3/b1', 'resnet18.layer1.3x3/b8']
"""

from __future__ import annotations

from .core import BenchRun, BenchSettings, LayerResult, run
from .machine import machine_info, sgemm_peak_gflops
from .runner import Engine, EngineResult, run_interleaved
from .suite import QUICK, SUITE, BenchLayer, parse_shape_spec, select_layers

__all__ = [
    "BenchLayer",
    "BenchRun",
    "BenchSettings",
    "Engine",
    "EngineResult",
    "LayerResult",
    "QUICK",
    "SUITE",
    "machine_info",
    "parse_shape_spec",
    "run",
    "run_interleaved",
    "select_layers",
    "sgemm_peak_gflops",
]
