"""Compile the training path's kernels in a second process while training starts.

With an empty Numba cache, the first training run compiles every kernel it meets, one after
another, on one core: the default ``cnnperf train`` spent about 55 s of its 64 s doing so
(measured per kernel: direct convolution 15.4 s, the four Winograd transforms 29.1 s, the
lowering kernels 10.6 s, pools and element-wise kernels 2 s). :func:`start_prewarm` starts a
helper process that compiles the same kernels, through the same ``ops`` calls on tiny inputs
(so with the same argument types), in the *opposite* order from the one training first needs
them. Each compiled kernel lands in Numba's on-disk cache; whichever process reaches a kernel
the other has already compiled loads it from there. The two meet in the middle, on two cores.

The helper only starts when the cache looks cold (a kernel's cache index is missing), runs at
one thread, and is stopped when training ends; a failure in it only loses the head start.

Example:
    >>> proc = start_prewarm(force=False)  # None when the kernels are already cached
    >>> stop_prewarm(proc)
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

__all__ = ["start_prewarm", "stop_prewarm", "cache_is_cold", "warm_steps"]


def _conv(algo: str, c_in: int = 8, stride: int = 1):
    from .. import ops

    x = np.ones((2, c_in, 6, 6), np.float32)
    w = np.ones((8, c_in, 3, 3), np.float32)
    return lambda: ops.conv2d(x, w, stride=stride, padding=1, algo=algo)


def _conv_backward(c_in: int, stride: int):
    from .. import ops

    x = np.ones((2, c_in, 6, 6), np.float32)
    w = np.ones((8, c_in, 3, 3), np.float32)
    gy = np.ones((2, 8, 6 // stride, 6 // stride), np.float32)
    return lambda: ops.conv2d_backward(
        gy, x, w, bias=False, stride=stride, padding=1, need_input_grad=c_in > 3
    )


def _elementwise():
    from .. import ops
    from ..optim import SGD

    x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 4, 4, 4)

    def run():
        ops.relu(x)
        ops.relu_backward(x, x)
        ops.adaptive_avg_pool2d(x, 1)
        ops.max_pool2d(x, 2)
        from ..autograd import Tensor  # a parameter's SGD update with momentum

        p = Tensor(np.ones(4, np.float32), requires_grad=True)
        p.grad = np.ones(4, np.float32)
        SGD([p], lr=0.1, momentum=0.9, weight_decay=1e-4).step()

    return run


def warm_steps() -> list[tuple[str, object]]:
    """``(name, call)`` pairs in the order the helper runs them: the reverse of the order in
    which a training step of the bundled models first needs the kernels."""
    return [
        ("elementwise, pools, SGD", _elementwise()),
        ("weight gradient without lowering", _conv_backward(1, 1)),
        ("batched lowering (backward)", _conv_backward(8, 2)),
        ("im2col stride 2", _conv("im2col", stride=2)),
        ("im2col", _conv("im2col")),
        ("winograd F(2x2)", _conv("winograd_f23")),
        ("winograd F(4x4)", _conv("winograd_f43")),
        ("direct", _conv("direct", c_in=1)),
    ]


def cache_is_cold() -> bool:
    """Whether some kernel of the training path has no Numba cache index yet (a first run)."""
    try:
        from ..kernels import direct, winograd

        for fn in (direct.conv2d_direct, winograd._input_f43, winograd._output_f23):
            if not os.path.exists(fn._cache._cache_file._index_path):
                return True
        return False
    except Exception:  # Numba internals moved: assume cold, the helper is only a head start
        return True


def start_prewarm(force: bool = False) -> subprocess.Popen | None:
    """Start the helper process (:func:`main`) if the kernel cache is cold (or ``force``);
    returns it, or None. Its output is discarded."""
    if not (force or cache_is_cold()):
        return None
    env = dict(os.environ, CNNPERF_NUM_THREADS="1")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "cnnperf.training.prewarm"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    except OSError:
        return None


def stop_prewarm(proc: subprocess.Popen | None) -> None:
    """Stop the helper if it still runs (Numba writes its cache files atomically)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - a stuck compile
        proc.kill()
        proc.wait()


def main() -> int:
    """Run every warm-up step; a failing step is skipped (it only loses its head start)."""
    failed = 0
    for _, call in warm_steps():
        try:
            call()
        except Exception:
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover - the helper process
    sys.exit(main())
