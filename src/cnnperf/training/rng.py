"""Random-generator states as JSON-able dicts, for checkpoints that resume bit for bit.

A checkpoint captures the state of cnnperf's global generator
(:func:`cnnperf.autograd.default_generator`: weight initialisation without a ``generator=``
and every dropout mask) under ``"autograd"``. Other generators a training run draws from
(a data loader's shuffling, augmentation) belong to the caller: pass their states, from
:func:`generator_state`, in ``save_checkpoint(..., rng_state=...)`` and give them back with
:func:`set_generator_state` after loading. A state is NumPy's ``bit_generator.state`` dict.

>>> import numpy as np
>>> g = np.random.default_rng(0); saved = generator_state(g); a = g.random()
>>> set_generator_state(g, saved); g.random() == a
True
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..autograd.random_state import default_generator

__all__ = [
    "generator_state",
    "set_generator_state",
    "check_generator_state",
    "get_rng_state",
    "set_rng_state",
]


def generator_state(generator: np.random.Generator) -> dict[str, Any]:
    """A copy of ``generator``'s state (``generator.bit_generator.state``).

    Example:
        >>> generator_state(np.random.default_rng(1))["bit_generator"]
        'PCG64'
    """
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"expected a numpy.random.Generator, got {type(generator).__name__}")
    return copy.deepcopy(generator.bit_generator.state)


def check_generator_state(generator: np.random.Generator, state: Any, what: str) -> None:
    """Raise ValueError (naming ``what``) unless ``state`` can be set on ``generator``.

    The state is tried on a scratch bit generator of the same kind; ``generator`` is unchanged.

    Example:
        >>> check_generator_state(np.random.default_rng(), {"bit_generator": "MT19937"}, "rng")
        Traceback (most recent call last):
        ...
        ValueError: rng: a MT19937 state cannot be restored into a PCG64 generator
    """
    bitgen = generator.bit_generator
    kind = type(bitgen).__name__
    if not isinstance(state, Mapping):
        raise ValueError(f"{what}: expected a bit generator state dict, got {type(state).__name__}")
    if state.get("bit_generator") != kind:
        raise ValueError(
            f"{what}: a {state.get('bit_generator')} state cannot be restored into a {kind} "
            f"generator"
        )
    try:
        type(bitgen)().state = dict(state)
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{what}: invalid {kind} state ({type(e).__name__}: {e})") from None


def set_generator_state(generator: np.random.Generator, state: Mapping[str, Any]) -> None:
    """Restore a state from :func:`generator_state` (checked first; ValueError if it does not fit).

    Example:
        >>> g = np.random.default_rng(5); s = generator_state(g); _ = g.random(3)
        >>> set_generator_state(g, s); generator_state(g) == s
        True
    """
    check_generator_state(generator, state, "set_generator_state")
    generator.bit_generator.state = copy.deepcopy(dict(state))


def get_rng_state() -> dict[str, Any]:
    """The states cnnperf itself draws from: ``{"autograd": <default generator's state>}``.

    Example:
        >>> from cnnperf.autograd import manual_seed
        >>> _ = manual_seed(0); sorted(get_rng_state())
        ['autograd']
    """
    return {"autograd": generator_state(default_generator())}


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (the global autograd generator).

    Example:
        >>> from cnnperf.autograd import default_generator
        >>> s = get_rng_state(); a = default_generator().random()
        >>> set_rng_state(s); default_generator().random() == a
        True
    """
    if "autograd" in state:
        set_generator_state(default_generator(), state["autograd"])
