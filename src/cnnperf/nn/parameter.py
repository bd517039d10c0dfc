"""``Parameter``: the Tensor subclass a ``Module`` registers as a learnable weight.

>>> import numpy as np
>>> w = Parameter(np.ones((2, 2), np.float32))
>>> w.requires_grad, (w * 2).requires_grad
(True, True)
"""

from __future__ import annotations

import numpy as np

from ..autograd.tensor import Tensor

__all__ = ["Parameter"]


class Parameter(Tensor):
    """A Tensor that a :class:`Module` registers as a learnable parameter (``requires_grad``).

    ``Parameter(data)`` wraps a float ndarray without copying it (as ``torch.nn.Parameter``
    shares a tensor's storage); a Tensor's ``.data`` is shared likewise. Assigning a Parameter
    to a Module attribute registers it, so ``parameters()`` and ``state_dict()`` find it.

    Args:
        data: a float32/float64 ndarray or Tensor; None gives an empty float32 parameter.
        requires_grad: whether the parameter receives gradients (default True).

    Example:
        >>> p = Parameter(np.zeros((2, 3), np.float32))
        >>> p.requires_grad, p.shape, isinstance(p, Tensor)
        (True, (2, 3), True)
    """

    __slots__ = ()

    def __init__(self, data: np.ndarray | Tensor | None = None, requires_grad: bool = True):
        if data is None:
            data = np.empty(0, np.float32)
        elif isinstance(data, Tensor):
            data = data.data
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, protocol):
        return (_rebuild_parameter, (self.data, self.requires_grad, self.grad))


def _rebuild_parameter(data: np.ndarray, requires_grad: bool, grad: np.ndarray | None):
    p = Parameter(data, requires_grad)
    p.grad = grad
    return p
