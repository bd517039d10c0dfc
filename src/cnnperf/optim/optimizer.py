"""``Optimizer``: parameter groups, per-parameter state, ``zero_grad`` and state dictionaries.

Subclasses (:class:`~cnnperf.optim.SGD`, :class:`~cnnperf.optim.Adam`,
:class:`~cnnperf.optim.AdamW`) implement ``step``, which updates each parameter's ``.data`` in
place from its ``.grad``, in the parameter's dtype (float32 arithmetic for float32 weights, as
PyTorch). The state dictionary has ``torch.optim``'s layout: ``{"state": {index: {...}},
"param_groups": [{..., "params": [index, ...]}]}``, with ndarray copies for the buffers.

>>> import numpy as np
>>> from cnnperf import nn, optim
>>> model = nn.Linear(2, 1)
>>> opt = optim.SGD([{"params": [model.weight]}, {"params": [model.bias], "lr": 0.0}], lr=0.1)
>>> [g["lr"] for g in opt.param_groups], opt.state_dict()["param_groups"][1]["params"]
([0.1, 0.0], [1])
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ..autograd.grad_mode import enable_grad
from ..autograd.tensor import Tensor

__all__ = ["Optimizer", "required", "fused_multiply_add"]


class _Required:
    """Marks a hyperparameter that has no default and must be given."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]]


def fused_multiply_add(a: Any, b: Any, c: Any, dtype: np.dtype) -> np.ndarray:
    """``a * b + c`` in ``dtype``, rounded once for float32, like PyTorch's CPU kernels.

    PyTorch's vectorised ``add(alpha=)``, ``lerp`` and ``addcmul`` use fused multiply-adds;
    for float32 the exact product and sum (in float64) rounded to float32 give the same
    values. float64 is computed with two roundings.

    Example:
        >>> fused_multiply_add(np.float32(0.1), np.ones(2, np.float32), 1.0, np.float32).dtype
        dtype('float32')
    """
    if np.dtype(dtype) == np.float32:
        f64 = np.float64
        r = np.asarray(a, f64) * np.asarray(b, f64)
        r += np.asarray(c, f64)
        return r.astype(np.float32)
    t = np.dtype(dtype).type
    return np.asarray(a, t) * np.asarray(b, t) + np.asarray(c, t)


def _copy_value(value: Any) -> Any:
    return value.copy() if isinstance(value, np.ndarray) else copy.deepcopy(value)


class Optimizer:
    """Base class of the optimizers: holds ``param_groups`` and per-parameter ``state``.

    Args:
        params: an iterable of parameters (Tensors that require grad), or of dicts, each a
            parameter group: ``{"params": [...], "lr": ...}`` with optional per-group settings.
        defaults: the hyperparameters a group gets when it does not set them.

    Attributes:
        param_groups: list of dicts, each with ``"params"`` and every hyperparameter.
        state: parameter -> dict of its buffers (filled by ``step``).
        defaults: the constructor's hyperparameters.

    Example:
        >>> from cnnperf import nn, optim
        >>> opt = optim.SGD(nn.Linear(3, 1).parameters(), lr=0.1, momentum=0.9)
        >>> len(opt.param_groups[0]["params"]), opt.param_groups[0]["momentum"]
        (2, 0.9)
    """

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.state: dict[Tensor, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, (Tensor, np.ndarray)):
            raise TypeError(
                f"{type(self).__name__}: params argument given to the optimizer should be an "
                f"iterable of Tensors or dicts, but got {type(params).__name__}"
            )
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__}: optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ------------------------------------------------------------------------------------------
    # groups

    def _check_group(self, group: dict[str, Any]) -> None:
        """Subclasses validate a group's hyperparameters (ValueError naming the bad value)."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group (e.g. layers unfrozen during fine-tuning).

        Args:
            param_group: ``{"params": [...], ...}``; settings it lacks come from ``defaults``.

        Example:
            >>> from cnnperf import nn, optim
            >>> a, b = nn.Linear(1, 1), nn.Linear(1, 1)
            >>> opt = optim.SGD(a.parameters(), lr=0.1)
            >>> opt.add_param_group({"params": b.parameters(), "lr": 0.01})
            >>> [g["lr"] for g in opt.param_groups]
            [0.1, 0.01]
        """
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}: a param group must be a dict, got {type(param_group)}")
        group = dict(param_group)
        params = group.get("params")
        if params is None:
            raise ValueError(f"{name}: a param group needs a 'params' entry, got {sorted(group)}")
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(
                f"{name}: optimizer parameters need to be organized in ordered collections, "
                f"but the ordering of tensors in sets will change between runs; use a list"
            )
        params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"{name}: optimizer can only optimize Tensors, but one of the params is "
                    f"{type(p).__name__}"
                )
            if not p.is_leaf:
                raise ValueError(f"{name}: can't optimize a non-leaf Tensor (shape {p.shape})")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{name}: a parameter group contains the same parameter twice")
        group["params"] = params
        for key, default in self.defaults.items():
            if default is required and key not in group:
                raise ValueError(
                    f"{name}: parameter group didn't specify a value of required "
                    f"optimization parameter {key}"
                )
            group.setdefault(key, default)
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in params):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        self._check_group(group)
        self.param_groups.append(group)

    def _params_with_grad(self) -> Iterable[tuple[dict[str, Any], Tensor, np.ndarray]]:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if p.grad.shape != p.shape:
                        raise ValueError(
                            f"{type(self).__name__}: a parameter of shape {p.shape} has a "
                            f"gradient of shape {p.grad.shape}"
                        )
                    yield group, p, p.grad

    # ------------------------------------------------------------------------------------------
    # stepping

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every parameter's gradient (None, or zero-filled with ``set_to_none=False``).

        Example:
            >>> from cnnperf import nn, optim
            >>> m = nn.Linear(1, 1); opt = optim.SGD(m.parameters(), lr=0.1)
            >>> m.weight.grad = np.ones((1, 1), np.float32); opt.zero_grad(); m.weight.grad
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def _closure_loss(self, closure: Callable[[], Any] | None) -> Any:
        if closure is None:
            return None
        with enable_grad():
            return closure()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One optimisation step (``closure`` re-evaluates the model and returns the loss)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    # ------------------------------------------------------------------------------------------
    # state dictionaries

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state in ``torch.optim``'s layout, with copies of the buffers.

        Parameters are numbered across the groups in order; ``state`` maps those numbers to
        each parameter's buffers (``momentum_buffer``; ``step``, ``exp_avg``, ``exp_avg_sq``).

        Example:
            >>> from cnnperf import nn, optim
            >>> m = nn.Linear(1, 1); opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
            >>> for p in m.parameters(): p.grad = np.ones_like(p.data)
            >>> opt.step(); sorted(opt.state_dict()["state"][0])
            ['momentum_buffer']
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {
            index[id(p)]: {k: _copy_value(v) for k, v in s.items()}
            for p, s in self.state.items()
            if id(p) in index
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (checked first; nothing changes on error).

        The groups must match this optimizer's in number and size; each buffer must have its
        parameter's shape (floating buffers are cast to the parameter's dtype). The saved
        hyperparameters (``lr``, ...) replace the current ones, as in PyTorch (settings the saved
        groups lack keep their current values). Tensors (``.data``) are accepted for arrays and
        a 0-d array for ``step``, so a converted PyTorch state loads too.

        Example:
            >>> from cnnperf import nn, optim
            >>> m = nn.Linear(1, 1)
            >>> a = optim.SGD(m.parameters(), lr=0.5); b = optim.SGD(m.parameters(), lr=0.1)
            >>> b.load_state_dict(a.state_dict()); b.param_groups[0]["lr"]
            0.5
        """
        name = type(self).__name__
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError(
                f"{name}.load_state_dict: expected a dict with 'state' and 'param_groups', got "
                f"{sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict)}"
            )
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: loaded state dict has {len(saved_groups)} parameter "
                f"groups, the optimizer has {len(self.param_groups)}"
            )
        by_index: dict[Any, Tensor] = {}
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups, strict=True)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: loaded parameter group {i} has "
                    f"{len(saved['params'])} parameters, the optimizer's has "
                    f"{len(group['params'])}"
                )
            by_index.update(zip(saved["params"], group["params"], strict=True))
        new_state: dict[Tensor, dict[str, Any]] = {}
        problems = []
        for key, entries in state_dict["state"].items():
            p = by_index.get(key)
            if p is None:
                problems.append(f"state entry {key!r} names no parameter of the groups")
                continue
            restored = {}
            for k, v in entries.items():
                if isinstance(v, Tensor):
                    v = v.data
                if k == "step":
                    restored[k] = float(np.asarray(v))
                elif isinstance(v, np.ndarray):
                    if v.shape != p.shape:
                        problems.append(
                            f"state {k!r} of parameter {key} has shape {v.shape}, the "
                            f"parameter has shape {p.shape}"
                        )
                        continue
                    restored[k] = v.astype(p.dtype) if v.dtype.kind == "f" else v.copy()
                else:
                    restored[k] = copy.deepcopy(v)
            new_state[p] = restored
        if problems:
            raise ValueError(f"{name}.load_state_dict: " + "; ".join(problems))
        groups = []
        for group, saved in zip(self.param_groups, saved_groups, strict=True):
            # the saved settings win; a setting the saved group lacks keeps its current value
            new = {k: v for k, v in group.items() if k != "params"}
            new.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "params"})
            new["params"] = group["params"]
            groups.append(new)
        self.param_groups = groups
        self.state = new_state

    def __repr__(self) -> str:
        s = type(self).__name__ + " ("
        for i, group in enumerate(self.param_groups):
            s += f"\nParameter Group {i}\n"
            for key in sorted(group):
                if key != "params":
                    s += f"    {key}: {group[key]}\n"
        return s + ")"
