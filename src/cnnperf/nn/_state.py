"""State-dictionary loading for ``Module.load_state_dict``: check everything, then copy.

>>> import numpy as np
>>> target = np.zeros(2, np.float32)
>>> load_entries([("w", target)], {"w": np.ones(2)}, strict=True, owner="Demo")
IncompatibleKeys(missing_keys=[], unexpected_keys=[])
>>> target.tolist()
[1.0, 1.0]
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..autograd.tensor import Tensor

__all__ = ["IncompatibleKeys", "load_entries"]


class IncompatibleKeys(NamedTuple):
    """What :meth:`Module.load_state_dict` returns: the keys it missed and the ones it ignored.

    Example:
        >>> IncompatibleKeys(["0.bias"], []).missing_keys
        ['0.bias']
    """

    missing_keys: list[str]
    unexpected_keys: list[str]


def _shape(a: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in np.shape(a))


def load_entries(
    entries: Sequence[tuple[str, np.ndarray]],
    state_dict: Mapping[str, Any],
    strict: bool,
    owner: str,
) -> IncompatibleKeys:
    """Copy ``state_dict[key]`` into each ``(key, array)`` entry after checking all of them.

    Missing and unexpected keys (when ``strict``), shapes, dtypes and value types are checked
    first; any problem raises one ValueError that lists every problem, and nothing is copied.

    Example:
        >>> load_entries([("b", np.zeros(1))], {"b": np.zeros(1), "x": 1}, False, "M")
        IncompatibleKeys(missing_keys=[], unexpected_keys=['x'])
    """
    expected = {key for key, _ in entries}
    missing = [key for key, _ in entries if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    problems: list[str] = []
    plan: list[tuple[np.ndarray, np.ndarray]] = []
    for key, target in entries:
        if key not in state_dict:
            continue
        value, problem = _checked_value(key, state_dict[key], target)
        if problem:
            problems.append(problem)
        else:
            plan.append((target, value))
    report: list[str] = []
    if strict and missing:
        report.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing))
    if strict and unexpected:
        report.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected))
    report.extend(problems)
    if report:
        raise ValueError(
            f"Error(s) in loading state_dict for {owner} (nothing was "
            f"loaded):\n\t" + "\n\t".join(report)
        )
    for target, value in plan:
        np.copyto(target, value, casting="unsafe")
    return IncompatibleKeys(missing, unexpected)


def _checked_value(key: str, value: Any, target: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The array to copy into ``target`` and "" or (None, a description of the problem)."""
    if isinstance(value, Tensor):
        arr = value.data
    elif isinstance(value, (np.ndarray, np.generic)) or (
        isinstance(value, numbers.Number) and not isinstance(value, bool)
    ):
        arr = np.asarray(value)
    else:
        cls = type(value)
        name = (
            cls.__qualname__
            if cls.__module__ == "builtins"
            else f"{cls.__module__}.{cls.__qualname__}"
        )
        hint = " (convert it with .numpy())" if cls.__module__.startswith("torch") else ""
        return None, (
            f"wrong type for {key}: expected a numpy.ndarray or cnnperf Tensor, got {name}{hint}"
        )
    if _shape(arr) != _shape(target):
        return None, (
            f"size mismatch for {key}: copying a param with shape {_shape(arr)} from "
            f"checkpoint, the shape in current model is {_shape(target)}"
        )
    float_target = target.dtype.kind == "f"
    ok = arr.dtype.kind == "f" if float_target else arr.dtype.kind in "iu"
    if not ok:
        want = "a floating-point" if float_target else "an integer"
        return None, (
            f"dtype mismatch for {key}: the value has dtype {arr.dtype}, the model's entry "
            f"has dtype {target.dtype} and needs {want} value"
        )
    if not target.flags.writeable:
        return None, f"cannot load {key}: the model's array is read-only"
    return arr, ""
