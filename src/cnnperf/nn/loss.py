"""Loss modules: ``CrossEntropyLoss`` and ``MSELoss`` (``loss = criterion(output, target)``).

>>> from cnnperf import nn
>>> criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
>>> round(criterion(np.zeros((2, 5), np.float32), np.array([1, 4])).item(), 4)
1.6094
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd.tensor import Tensor
from . import functional as F
from .module import Module

__all__ = ["CrossEntropyLoss", "MSELoss"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str, layer: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{layer}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


class CrossEntropyLoss(Module):
    """Cross-entropy between ``softmax(input)`` and a target, as ``torch.nn.CrossEntropyLoss``.

    The class weights, if given, are a buffer (``state_dict`` key ``"weight"``), as PyTorch.
    Targets: see :func:`cnnperf.nn.functional.cross_entropy`.

    Example:
        >>> CrossEntropyLoss(reduction="none")(np.zeros((3, 2)), np.array([0, 1, 1])).shape
        (3,)
    """

    def __init__(
        self,
        weight: np.ndarray | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if weight is not None:
            weight = np.asarray(weight.data if isinstance(weight, Tensor) else weight)
        self.register_buffer("weight", weight)
        self.ignore_index = int(ignore_index)
        self.reduction = _check_reduction(reduction, "CrossEntropyLoss")
        self.label_smoothing = float(label_smoothing)

    def forward(self, input: Any, target: Any) -> Tensor:
        """The loss of ``input`` logits against ``target``."""
        return F.cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


class MSELoss(Module):
    """Mean squared error, as ``torch.nn.MSELoss``.

    Example:
        >>> MSELoss(reduction="sum")(np.array([1.0, 2.0]), np.zeros(2)).item()
        5.0
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction, "MSELoss")

    def forward(self, input: Any, target: Any) -> Tensor:
        """The loss of ``input`` against ``target``."""
        return F.mse_loss(input, target, reduction=self.reduction)
