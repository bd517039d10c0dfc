"""The global random generator that autograd's dropout uses when given no ``rng``.

>>> from cnnperf.autograd import manual_seed
>>> a = manual_seed(0).random(); b = manual_seed(0).random()
>>> a == b
True
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["manual_seed", "default_generator"]

_generator: np.random.Generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the global generator (as ``torch.manual_seed``) and return it.

    Example:
        >>> isinstance(manual_seed(1), np.random.Generator)
        True
    """
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative int, got {seed!r}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def default_generator() -> np.random.Generator:
    """The global generator (fresh entropy until :func:`manual_seed` is called).

    Example:
        >>> default_generator() is default_generator()
        True
    """
    return _generator
