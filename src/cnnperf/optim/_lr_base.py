"""``LRScheduler``: the base of the learning-rate schedulers (PyTorch's stepping protocol).

>>> from cnnperf import nn, optim
>>> opt = optim.SGD(nn.Linear(1, 1).parameters(), lr=0.5)
>>> class Halve(LRScheduler):
...     def get_lr(self):
...         return [lr if self._is_initial else lr / 2 for lr in self._current_lrs()]
>>> s = Halve(opt); s.step(); s.get_last_lr(), s.last_epoch
([0.25], 1)
"""

from __future__ import annotations

import copy
from typing import Any

from .optimizer import Optimizer

__all__ = ["LRScheduler"]


def _per_group(name: str, optimizer: Optimizer, value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(
                f"{name} must have the same length as optimizer.param_groups: {name} has "
                f"{len(value)} values, param_groups has {len(optimizer.param_groups)}"
            )
        return list(value)
    return [value] * len(optimizer.param_groups)


class LRScheduler:
    """Base class: ``base_lrs``, ``last_epoch``, ``step()``, ``get_last_lr()``, state dicts.

    Subclasses define ``get_lr()`` (the next learning rates, usually from the current ones)
    and optionally ``_get_closed_form_lr()`` (from ``base_lrs`` and ``last_epoch``).

    Args:
        optimizer: the optimizer whose ``group["lr"]`` values are set.
        last_epoch: -1 to start; a larger value resumes (the groups then need
            ``"initial_lr"``, as saved in the optimizer's state dict).

    Example:
        >>> from cnnperf import nn, optim
        >>> from cnnperf.optim.lr_scheduler import ExponentialLR, StepLR
        >>> opt = optim.SGD(nn.Linear(1, 1).parameters(), lr=0.3)
        >>> ExponentialLR(opt, gamma=0.5).base_lrs, opt.param_groups[0]["initial_lr"]
        ([0.3], 0.3)
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param 'initial_lr' is not specified in param_groups[{i}] when "
                        f"resuming a scheduler with last_epoch={last_epoch}: load the "
                        f"optimizer's state dict first"
                    )
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        """Set the step count to 0 and perform the initial step (epoch 0)."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """The learning rates for ``last_epoch`` (already advanced); subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_lr()")

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the latest step, one per parameter group.

        Example:
            >>> from cnnperf import nn, optim
            >>> from cnnperf.optim.lr_scheduler import ExponentialLR, StepLR
            >>> opt = optim.SGD(nn.Linear(1, 1).parameters(), lr=0.2)
            >>> StepLR(opt, 1).get_last_lr()
            [0.2]
        """
        return list(self._last_lr)

    def step(self) -> None:
        """Advance one epoch and set the new learning rates (call after ``optimizer.step()``).

        Example:
            >>> from cnnperf import nn, optim
            >>> from cnnperf.optim.lr_scheduler import ExponentialLR, StepLR
            >>> opt = optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
            >>> s = ExponentialLR(opt, gamma=0.5); s.step(); opt.param_groups[0]["lr"]
            0.5
        """
        self._step_count += 1
        self._update_lr()

    def _update_lr(self, epoch: int | None = None) -> None:
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed = getattr(self, "_get_closed_form_lr", None)
            values = closed() if closed is not None else self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _current_lrs(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Every attribute but the optimizer (copied), as PyTorch.

        Example:
            >>> from cnnperf import nn, optim
            >>> from cnnperf.optim.lr_scheduler import ExponentialLR, StepLR
            >>> opt = optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
            >>> StepLR(opt, 3).state_dict()["last_epoch"]
            0
        """
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the attributes saved by :meth:`state_dict`.

        Example:
            >>> from cnnperf import nn, optim
            >>> from cnnperf.optim.lr_scheduler import ExponentialLR, StepLR
            >>> opt = optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
            >>> a, b = StepLR(opt, 3), StepLR(opt, 3); a.step()
            >>> b.load_state_dict(a.state_dict()); b.last_epoch
            1
        """
        self.__dict__.update(copy.deepcopy(dict(state_dict)))
