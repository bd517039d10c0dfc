"""Grad mode: whether operations on Tensors record the graph that ``backward`` walks.

Recording is on by default and per thread (as in PyTorch). ``no_grad`` turns it off inside a
``with`` block or a decorated function: the results of operations then have no ``grad_fn`` and
``requires_grad=False``, and nothing is kept alive for a backward pass.

>>> from cnnperf.autograd import tensor, no_grad
>>> x = tensor([1.0, 2.0], requires_grad=True)
>>> with no_grad():
...     y = x * 2
>>> y.requires_grad
False
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["no_grad", "enable_grad", "is_grad_enabled", "set_grad_enabled"]

F = TypeVar("F", bound=Callable[..., Any])

_state = threading.local()


def is_grad_enabled() -> bool:
    """Whether operations record the autograd graph in this thread (True unless in no_grad).

    >>> is_grad_enabled()
    True
    """
    return getattr(_state, "enabled", True)


def set_grad_enabled(mode: bool) -> None:
    """Turn graph recording on or off for this thread (prefer the ``no_grad`` context).

    >>> set_grad_enabled(False); set_grad_enabled(True); is_grad_enabled()
    True
    """
    _state.enabled = bool(mode)


class _GradMode:
    """Context manager and decorator that sets grad mode to ``_mode`` and restores it after."""

    _mode: bool

    def __new__(cls, func: Callable | None = None):
        self = super().__new__(cls)
        if func is None:
            return self
        if not callable(func):
            raise TypeError(
                f"{cls.__name__}() takes no arguments, or decorates a function; got "
                f"{type(func).__name__}"
            )
        return self(func)  # used bare: @no_grad

    def __init__(self, func: Callable | None = None) -> None:
        self._saved: list[bool] = []

    def __enter__(self) -> None:
        self._saved.append(is_grad_enabled())
        set_grad_enabled(self._mode)

    def __exit__(self, *exc: object) -> None:
        set_grad_enabled(self._saved.pop())

    def __call__(self, func: F) -> F:
        cls = type(self)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with cls():
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class no_grad(_GradMode):
    """Disable graph recording inside a ``with`` block or a decorated function.

    Usable as ``with no_grad():``, ``@no_grad()`` and ``@no_grad``; nests, and restores the
    previous mode on exit (also on an exception).

    Example:
        >>> from cnnperf.autograd import tensor
        >>> @no_grad
        ... def double(t):
        ...     return t * 2
        >>> double(tensor([1.0], requires_grad=True)).grad_fn is None
        True
    """

    _mode = False


class enable_grad(_GradMode):
    """Re-enable graph recording inside a ``no_grad`` region (context manager or decorator).

    Example:
        >>> with no_grad():
        ...     with enable_grad():
        ...         print(is_grad_enabled())
        True
    """

    _mode = True
