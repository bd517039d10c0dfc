"""Batch normalisation layers with running statistics: ``BatchNorm2d`` and ``BatchNorm1d``.

Training mode normalises with the batch's statistics and updates the buffers in place
(``running = (1 - momentum) * running + momentum * batch``, unbiased batch variance;
``momentum=None`` gives the cumulative average ``1 / num_batches_tracked``), and counts
``num_batches_tracked`` (an int64 0-d array). Evaluation mode normalises with the buffers.

>>> from cnnperf import nn
>>> bn = nn.BatchNorm2d(3)
>>> x = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
>>> _ = bn(x); bn.num_batches_tracked, bn.running_mean.astype(float).round(2).tolist()
(array(1), [0.75, 1.15, 1.55])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import functional as AF
from ..autograd.tensor import Tensor, as_tensor
from . import init
from ._common import check_device, positive_int, resolve_dtype
from .module import Module
from .parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    """Shared parameters, buffers and forward of the batch-norm layers."""

    _dims: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        layer = type(self).__name__
        check_device(device, layer)
        dt = resolve_dtype(dtype, layer)
        self.num_features = positive_int(num_features, "num_features", layer)
        if not eps > 0:
            raise ValueError(f"{layer}: eps must be positive, got {eps!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{layer}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        c = self.num_features
        if self.affine:
            self.weight = Parameter(np.empty(c, dt))
            if bias:
                self.bias = Parameter(np.empty(c, dt))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, dt))
            self.register_buffer("running_var", np.ones(c, dt))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, ``num_batches_tracked`` 0 (in place)."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self) -> None:
        """Reset the running statistics, weight to ones and bias to zeros."""
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def forward(self, input: Any) -> Tensor:
        """Normalise per channel (batch statistics in training, running ones in evaluation)."""
        x = as_tensor(input, "input", type(self).__name__)
        if x.ndim not in self._dims:
            want = " or ".join(f"{d}D" for d in self._dims)
            raise ValueError(
                f"{type(self).__name__}: expected {want} input (got {x.ndim}D input of shape "
                f"{x.shape})"
            )
        factor = 0.0 if self.momentum is None else self.momentum
        count = self.num_batches_tracked
        update = self.training and self.track_running_stats and count is not None
        if update and self.momentum is None:
            factor = 1.0 / float(count + 1)  # the cumulative average, counting this batch
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        use_stats = not self.training or self.track_running_stats
        y = AF.batch_norm(
            x,
            self.running_mean if use_stats else None,
            self.running_var if use_stats else None,
            self.weight,
            self.bias,
            bn_training,
            factor,
            self.eps,
        )
        if update:
            count += 1  # in place, after a successful forward (PyTorch counts before it)
        return y

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (n, c, h, w) inputs over n, h, w per channel, as
    ``torch.nn.BatchNorm2d``.

    Args:
        num_features: c.
        eps: added to the variance before the square root.
        momentum: weight of the batch statistic in the running update; None for a cumulative
            average.
        affine: learn a per-channel weight (init 1) and bias (init 0).
        track_running_stats: keep running statistics (else batch statistics also in eval).
        device, dtype: None/"cpu"; float32 (default) or float64.
        bias: with ``affine``, whether to learn the bias (keyword only).

    Shape:
        (n, c, h, w) -> (n, c, h, w).

    Example:
        >>> bn = BatchNorm2d(2).eval()
        >>> bn(np.ones((1, 2, 3, 3), np.float32)).shape
        (1, 2, 3, 3)
    """

    _dims = (4,)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (n, c) or (n, c, l) inputs per channel, as
    ``torch.nn.BatchNorm1d`` (arguments as :class:`BatchNorm2d`).

    Example:
        >>> x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
        >>> bool(np.abs(BatchNorm1d(3)(x).data.mean(axis=0)).max() < 1e-6)
        True
    """

    _dims = (2, 3)
