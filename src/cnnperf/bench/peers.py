"""The peers cnnperf is measured against: PyTorch and ONNX Runtime, when installed.

Both run at the benchmark's thread count, in this process. A peer that is not installed is
skipped with a note, never an error: they are benchmark peers, not dependencies.
"""

from __future__ import annotations

import numpy as np

from .runner import Engine
from .suite import BenchLayer

__all__ = ["Peer", "TorchPeer", "OrtPeer", "PEERS", "available_peers", "ort_conv_model"]


class Peer:
    """A library that runs one convolution layer; set up once per benchmark run."""

    name = ""

    def setup(self, threads: int) -> str | None:
        """Import and configure the library; return why it cannot run (None when it can)."""
        raise NotImplementedError

    def teardown(self) -> None:
        """Undo process-wide settings made by :meth:`setup`."""

    @property
    def label(self) -> str:
        return self.name

    def engine(self, x, w, b, layer: BenchLayer) -> Engine:
        raise NotImplementedError


class TorchPeer(Peer):
    """``torch.nn.functional.conv2d`` under ``torch.no_grad()`` on tensors sharing x's memory."""

    name = "torch"

    def __init__(self):
        self._torch = None
        self._saved_threads = None

    def setup(self, threads: int) -> str | None:
        try:
            import torch
        except ImportError as e:
            return f"PyTorch not installed ({e}): no torch column"
        self._torch = torch
        self._saved_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        return None

    def teardown(self) -> None:
        if self._torch is not None and self._saved_threads is not None:
            self._torch.set_num_threads(self._saved_threads)

    @property
    def label(self) -> str:
        return f"PyTorch {self._torch.__version__}" if self._torch else "PyTorch"

    def engine(self, x, w, b, layer: BenchLayer) -> Engine:
        torch = self._torch
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        bt = None if b is None else torch.from_numpy(b)
        conv = torch.nn.functional.conv2d
        stride, padding, groups = layer.stride, layer.padding, layer.groups

        def run():
            with torch.no_grad():
                return conv(xt, wt, bt, stride=stride, padding=padding, groups=groups).numpy()

        return Engine(self.name, run, kind="peer", label=self.label)


def ort_conv_model(w: np.ndarray, b: np.ndarray | None, layer: BenchLayer) -> bytes:
    """A serialized ONNX model with one Conv node: input "x" (layer.x_shape), output "y"."""
    from onnx import TensorProto, helper, numpy_helper

    inputs = ["x", "w"] + ([] if b is None else ["b"])
    p = layer.params()
    node = helper.make_node(
        "Conv",
        inputs,
        ["y"],
        kernel_shape=[p.kh, p.kw],
        strides=[p.sh, p.sw],
        pads=[p.pt, p.pl, p.pb, p.pr],
        dilations=[p.dh, p.dw],
        group=p.g,
    )
    inits = [numpy_helper.from_array(w, "w")]
    if b is not None:
        inits.append(numpy_helper.from_array(b, "b"))
    graph = helper.make_graph(
        [node],
        "cnnperf_bench_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(layer.x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(p.output_shape))],
        inits,
    )
    # Opset 17 / IR 8: old enough for every ONNX Runtime this project supports.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString()


class OrtPeer(Peer):
    """ONNX Runtime's CPU provider on a one-Conv model: ``intra_op_num_threads=threads``,
    one inter-op thread, sequential execution, all graph optimisations.

    Args:
        spin: let idle intra-op threads spin (ONNX Runtime's default). Off by default: in an
            interleaved benchmark a spinning pool takes the cores from the engine that runs next.
    """

    name = "ort"

    def __init__(self, spin: bool = False):
        self.spin = spin
        self._ort = None
        self._threads = 1

    def setup(self, threads: int) -> str | None:
        try:
            import onnx  # noqa: F401  (builds the model)
            import onnxruntime
        except ImportError as e:
            return f"ONNX Runtime or onnx not installed ({e}): no ort column"
        self._ort = onnxruntime
        self._threads = threads
        return None

    @property
    def label(self) -> str:
        return f"ONNX Runtime {self._ort.__version__}" if self._ort else "ONNX Runtime"

    def engine(self, x, w, b, layer: BenchLayer) -> Engine:
        ort = self._ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = self._threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
        sess = ort.InferenceSession(
            ort_conv_model(w, b, layer), so, providers=["CPUExecutionProvider"]
        )
        feed = {"x": x}

        def run():
            return sess.run(None, feed)[0]

        return Engine(self.name, run, kind="peer", label=self.label)


PEERS = {"torch": TorchPeer, "ort": OrtPeer}


def available_peers(
    threads: int, names=("torch", "ort"), ort_spin: bool = False
) -> tuple[list[Peer], list[str]]:
    """Set up the named peers; return (the ones that can run, notes on the ones that cannot)."""
    peers, notes = [], []
    for name in names:
        peer = OrtPeer(spin=ort_spin) if name == "ort" else PEERS[name]()
        why = peer.setup(threads)
        if why is None:
            peers.append(peer)
        else:
            notes.append(why)
    return peers, notes
