"""Exact JSON for checkpoint metadata: Python values in, the same values (and types) out.

Plain JSON loses what optimizer and scheduler states hold: tuples (Adam's ``betas``), dicts
with int keys (``MultiStepLR``'s ``Counter`` of milestones), NaN and infinities, NumPy scalars
and small arrays (an MT19937 state's key). Those are written as tagged objects
``{"__py__": tag, ...}``; everything else is ordinary JSON, so the document stays readable by
any JSON parser. Floats round-trip exactly (``repr``), and ``int`` and ``float`` stay distinct.

>>> from collections import Counter
>>> value = {"betas": (0.9, 0.999), "milestones": Counter({2: 1}), "best": float("inf")}
>>> decode(encode(value, "demo")) == value
True
>>> type(decode(encode(value, "demo"))["betas"]).__name__
'tuple'
"""

from __future__ import annotations

import json
import math
from collections import Counter, OrderedDict
from typing import Any

import numpy as np

__all__ = ["encode", "decode", "to_jsonable"]

_TAG = "__py__"


def to_jsonable(value: Any, where: str) -> Any:
    """``value`` as plain JSON types, tagging what JSON cannot say (see the module doc).

    Raises:
        TypeError: a value of another type; the message names its path from ``where``.

    Example:
        >>> to_jsonable((1, float("nan")), "x")
        {'__py__': 'tuple', 'v': [1, {'__py__': 'float', 'v': 'nan'}]}
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return {_TAG: "float", "v": repr(float(value))}  # 'nan', 'inf', '-inf'
    if isinstance(value, np.generic):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{where}: cannot store a NumPy scalar of dtype {value.dtype}")
        return {_TAG: "np", "dtype": value.dtype.str, "v": to_jsonable(value.item(), where)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{where}: cannot store an ndarray of dtype {value.dtype}")
        items = [to_jsonable(x, where) for x in value.ravel().tolist()]
        return {_TAG: "ndarray", "dtype": value.dtype.str, "shape": list(value.shape), "v": items}
    if isinstance(value, tuple):
        return {_TAG: "tuple", "v": [to_jsonable(x, f"{where}[{i}]") for i, x in enumerate(value)]}
    if isinstance(value, list):
        return [to_jsonable(x, f"{where}[{i}]") for i, x in enumerate(value)]
    if isinstance(value, dict):
        plain = type(value) in (dict, OrderedDict) and all(isinstance(k, str) for k in value)
        if plain and _TAG not in value:
            return {k: to_jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
        tag = "Counter" if isinstance(value, Counter) else "dict"
        pairs = [
            [to_jsonable(k, f"{where} key {k!r}"), to_jsonable(v, f"{where}[{k!r}]")]
            for k, v in value.items()
        ]
        return {_TAG: tag, "v": pairs}
    cls = type(value)
    name = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    raise TypeError(
        f"{where} has type {name}, which a "
        f"checkpoint cannot store (None, bool, int, float, str, list, tuple, dict, NumPy "
        f"scalars and arrays can be stored)"
    )


def _untag(obj: dict[str, Any]) -> Any:
    tag = obj.get(_TAG)
    if tag is None:
        return obj
    if tag == "float":
        return float(obj["v"])
    if tag == "tuple":
        return tuple(obj["v"])
    if tag in ("dict", "Counter"):
        pairs = dict((k, v) for k, v in obj["v"])
        return Counter(pairs) if tag == "Counter" else pairs
    if tag == "np":
        return np.dtype(obj["dtype"]).type(obj["v"])
    if tag == "ndarray":
        return np.array(obj["v"], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])
    raise ValueError(f"unknown tag {_TAG}={tag!r}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def encode(value: Any, where: str) -> str:
    """``value`` as a compact JSON string (strict JSON: no NaN literals).

    Example:
        >>> encode({"epoch": 3, "lr": 0.1}, "doc")
        '{"epoch":3,"lr":0.1}'
    """
    return json.dumps(to_jsonable(value, where), separators=(",", ":"), allow_nan=False)


def decode(text: str) -> Any:
    """The value :func:`encode` wrote (ValueError for malformed JSON or tags).

    Example:
        >>> decode('{"__py__":"float","v":"-inf"}')
        -inf
    """
    try:
        return json.loads(text, object_hook=_untag, parse_constant=_reject_constant)
    except (KeyError, TypeError, ValueError) as e:  # a malformed tag raises any of these
        raise ValueError(f"malformed JSON document: {type(e).__name__}: {e}") from None
