"""``Module`` and ``Parameter``: the building blocks of networks, with PyTorch's bookkeeping.

A :class:`Module` registers, by plain attribute assignment, its :class:`Parameter` objects
(leaf Tensors that require grad), its sub-modules and its buffers (ndarrays such as a batch
norm's running statistics, added with :meth:`Module.register_buffer`). ``state_dict()`` names
every parameter and persistent buffer with PyTorch's dotted keys (``"0.weight"``,
``"1.running_mean"``, ``"1.num_batches_tracked"``), so weights move between cnnperf and PyTorch
as ``{key: ndarray}`` dictionaries. ``load_state_dict`` checks the whole dictionary before it
copies anything: a failed load leaves the model unchanged.

>>> import numpy as np
>>> class Affine(Module):
...     def __init__(self):
...         super().__init__()
...         self.scale = Parameter(np.ones(2, np.float32))
...         self.register_buffer("calls", np.zeros((), np.int64))
...     def forward(self, x):
...         return x * self.scale
>>> m = Affine()
>>> sorted(m.state_dict()), m(np.array([1.0, 2.0], np.float32)).data.tolist()
(['calls', 'scale'], [1.0, 2.0])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ..autograd.tensor import FLOAT_DTYPES, Tensor
from ._state import IncompatibleKeys, load_entries
from .parameter import Parameter

__all__ = ["Module"]


def _addindent(s: str, num_spaces: int) -> str:
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    return lines[0] + "\n" + "\n".join(" " * num_spaces + line for line in lines[1:])


def _as_input(value: Any) -> Any:
    """A float ndarray passed to a module becomes a Tensor (wrapped, not copied)."""
    if isinstance(value, np.ndarray) and value.dtype in FLOAT_DTYPES:
        return Tensor(value)
    return value


class Module:
    """Base class of every layer and network: registration, modes, state dictionaries.

    Subclasses call ``super().__init__()`` first, assign parameters, buffers and sub-modules as
    attributes and define ``forward``. Calling a module calls ``forward``; a float ndarray
    argument is wrapped as a :class:`~cnnperf.autograd.Tensor` first, so a model accepts
    either.

    Attributes:
        training: True in training mode (the default), False after :meth:`eval`.

    Example:
        >>> from cnnperf import nn
        >>> net = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
        >>> [name for name, _ in net.named_parameters()]
        ['0.weight', '0.bias']
        >>> net.eval().training
        False
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())

    # ------------------------------------------------------------------------------------------
    # registration

    def _check_ready(self, what: str) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {what} before Module.__init__() call (call super().__init__() "
                f"first in {type(self).__name__}.__init__)"
            )

    def _check_name(self, name: Any, kind: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if name == "" or "." in name:
            raise KeyError(f'{kind} name can\'t be empty or contain ".", got {name!r}')
        if hasattr(self, name) and not any(
            name in d for d in (self._parameters, self._buffers, self._modules)
        ):
            raise KeyError(f"attribute {name!r} already exists")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or None: a declared but absent parameter, such as a missing bias).

        Example:
            >>> m = Module(); m.register_parameter("bias", None); m.bias is None
            True
        """
        self._check_ready("parameters")
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign {type(param).__name__!r} object to parameter {name!r} "
                f"(cnnperf.nn.Parameter or None required)"
            )
        if param is not None and not param.is_leaf:
            raise ValueError(
                f"cannot assign non-leaf Tensor to parameter {name!r}: a parameter must be a "
                f"leaf; wrap a detached copy (Parameter(t.data.copy()))"
            )
        self._buffers.pop(name, None)
        self._modules.pop(name, None)
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: np.ndarray | None, persistent: bool = True):
        """Add a buffer: an ndarray saved in ``state_dict`` (unless ``persistent=False``) but
        not learned, such as ``running_mean``. None declares an absent buffer.

        Example:
            >>> m = Module(); m.register_buffer("count", np.zeros((), np.int64))
            >>> m.count.dtype, list(m.state_dict())
            (dtype('int64'), ['count'])
        """
        self._check_ready("buffers")
        self._check_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, np.ndarray):
            raise TypeError(
                f"cannot assign {type(tensor).__name__!r} object to buffer {name!r} "
                f"(numpy.ndarray or None required)"
            )
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a sub-module (its parameters get the prefix ``name + "."``).

        Example:
            >>> from cnnperf import nn
            >>> m = Module(); m.add_module("fc", nn.Linear(2, 1)); list(m.state_dict())
            ['fc.weight', 'fc.bias']
        """
        self._check_ready("modules")
        if not isinstance(name, str):
            raise TypeError(f"module name should be a string, got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f'module name can\'t be empty or contain ".", got {name!r}')
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._parameters.pop(name, None)
        self._buffers.pop(name, None)
        self.__dict__.pop(name, None)
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        params = d.get("_parameters")
        if isinstance(value, Parameter):
            self._check_ready("parameters")
            d.pop(name, None)  # a plain attribute of that name is replaced, as in PyTorch
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__!r} as parameter {name!r} "
                    f"(cnnperf.nn.Parameter or None expected)"
                )
            params[name] = None
        elif isinstance(value, Module):
            self._check_ready("modules")
            self.add_module(name, value)
        elif d.get("_modules") is not None and name in d["_modules"]:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__!r} as child module {name!r} "
                    f"(cnnperf.nn.Module or None expected)"
                )
            d["_modules"][name] = None
        elif d.get("_buffers") is not None and name in d["_buffers"]:
            if value is not None and not isinstance(value, np.ndarray):
                raise TypeError(
                    f"cannot assign {type(value).__name__!r} as buffer {name!r} "
                    f"(numpy.ndarray or None expected)"
                )
            d["_buffers"][name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        keys = set(super().__dir__())
        keys |= set(self._parameters) | set(self._buffers) | set(self._modules)
        return sorted(keys)

    def get_submodule(self, target: str) -> Module:
        """The sub-module at the dotted path ``target`` ("" is the module itself).

        Example:
            >>> from cnnperf import nn
            >>> nn.Sequential(nn.Sequential(nn.ReLU())).get_submodule("0.0")
            ReLU()
        """
        mod: Module = self
        if target == "":
            return mod
        for item in target.split("."):
            child = mod._modules.get(item)
            if child is None:
                raise AttributeError(f"{type(mod).__name__} has no sub-module {item!r} ({target})")
            mod = child
        return mod

    # ------------------------------------------------------------------------------------------
    # iteration

    def named_modules(
        self, memo: set | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module and every descendant, each once.

        Example:
            >>> from cnnperf import nn
            >>> [n for n, _ in nn.Sequential(nn.Linear(1, 1), nn.ReLU()).named_modules()]
            ['', '0', '1']
        """
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            sub = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, sub, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        """This module and every descendant, each once.

        Example:
            >>> from cnnperf import nn
            >>> len(list(nn.Sequential(nn.ReLU(), nn.ReLU()).modules()))
            3
        """
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """(name, module) for the direct sub-modules, each once.

        Example:
            >>> from cnnperf import nn
            >>> [n for n, _ in nn.Sequential(nn.ReLU(), nn.Tanh()).named_children()]
            ['0', '1']
        """
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator[Module]:
        """The direct sub-modules, each once.

        Example:
            >>> from cnnperf import nn
            >>> list(nn.Sequential(nn.ReLU()).children())
            [ReLU()]
        """
        for _, m in self.named_children():
            yield m

    def _named_members(self, get: Callable, prefix: str, recurse: bool, remove_duplicate: bool):
        memo: set[int] = set()
        mods = (
            self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
            if recurse
            else [(prefix, self)]
        )
        for mod_prefix, mod in mods:
            for name, value in get(mod):
                if value is None or (remove_duplicate and id(value) in memo):
                    continue
                if remove_duplicate:
                    memo.add(id(value))
                yield mod_prefix + ("." if mod_prefix else "") + name, value

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) pairs, a shared parameter once.

        Example:
            >>> from cnnperf import nn
            >>> [(n, p.shape) for n, p in nn.Linear(3, 2).named_parameters()]
            [('weight', (2, 3)), ('bias', (2,))]
        """
        return self._named_members(
            lambda m: m._parameters.items(), prefix, recurse, remove_duplicate
        )

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Every parameter, in registration order, a shared parameter once.

        Example:
            >>> from cnnperf import nn
            >>> sum(p.data.size for p in nn.Linear(3, 2).parameters())
            8
        """
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, np.ndarray]]:
        """(dotted name, ndarray) for every buffer, persistent or not.

        Example:
            >>> from cnnperf import nn
            >>> [n for n, _ in nn.BatchNorm2d(2).named_buffers()]
            ['running_mean', 'running_var', 'num_batches_tracked']
        """
        return self._named_members(lambda m: m._buffers.items(), prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[np.ndarray]:
        """Every buffer (ndarray).

        Example:
            >>> from cnnperf import nn
            >>> len(list(nn.BatchNorm2d(2).buffers()))
            3
        """
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ------------------------------------------------------------------------------------------
    # modes and gradients

    def train(self, mode: bool = True) -> Module:
        """Set training mode (``mode=True``) or evaluation mode on this module and all
        descendants; returns ``self``. Batch norm and dropout behave differently in each.

        Example:
            >>> from cnnperf import nn
            >>> nn.Dropout().train(False).training
            False
        """
        if not isinstance(mode, bool):
            raise ValueError(f"train: training mode is expected to be a bool, got {mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: ``train(False)``.

        Example:
            >>> from cnnperf import nn
            >>> nn.BatchNorm2d(1).eval().training
            False
        """
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Set ``requires_grad`` of every parameter (freeze with False); returns ``self``.

        Example:
            >>> from cnnperf import nn
            >>> [p.requires_grad for p in nn.Linear(1, 1).requires_grad_(False).parameters()]
            [False, False]
        """
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the parameters' gradients (None, or zero-filled with ``set_to_none=False``).

        Example:
            >>> from cnnperf import nn
            >>> m = nn.Linear(1, 1); m.weight.grad = np.ones((1, 1), np.float32)
            >>> m.zero_grad(); m.weight.grad is None
            True
        """
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad[...] = 0

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every descendant and then on ``self`` (as ``torch.nn.Module.apply``).

        Example:
            >>> from cnnperf import nn
            >>> names = []; _ = nn.Sequential(nn.ReLU()).apply(lambda m: names.append(type(m)))
            >>> [t.__name__ for t in names]
            ['ReLU', 'Sequential']
        """
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------------------------------
    # calling

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation; every subclass defines it."""
        raise NotImplementedError(
            f'Module [{type(self).__name__}] is missing the required "forward" function'
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        args = tuple(_as_input(a) for a in args)
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------------------------------
    # state dictionaries

    def _state_entries(self, prefix: str = "") -> list[tuple[str, Module, str, np.ndarray]]:
        """(key, owner, attribute, array) for every parameter and persistent buffer, in
        ``state_dict`` order: a module's parameters, then its buffers, then its children."""
        out: list[tuple[str, Module, str, np.ndarray]] = []
        for name, p in self._parameters.items():
            if p is not None:
                out.append((prefix + name, self, name, p.data))
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                out.append((prefix + name, self, name, b))
        for name, m in self._modules.items():
            if m is not None:
                out.extend(m._state_entries(prefix + name + "."))
        return out

    def state_dict(
        self, destination: dict | None = None, prefix: str = "", keep_vars: bool = False
    ) -> dict[str, Any]:
        """Every parameter and persistent buffer by PyTorch's dotted key, as ndarray copies.

        Keys are exactly ``torch.nn.Module.state_dict``'s (``"0.weight"``,
        ``"1.running_mean"``, ``"1.num_batches_tracked"``, an int64 0-d array). Unlike PyTorch,
        whose values alias the live tensors, the arrays are copies: a snapshot that later
        training does not change. ``keep_vars=True`` returns the live Parameters and buffers.

        Example:
            >>> from cnnperf import nn
            >>> sd = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).state_dict()
            >>> list(sd)
            ['0.weight', '0.bias', '1.weight', '1.bias', '1.running_mean', '1.running_var', \
'1.num_batches_tracked']
        """
        dest: dict[str, Any] = OrderedDict() if destination is None else destination
        for key, owner, name, arr in self._state_entries(prefix):
            if keep_vars:
                value = owner._parameters.get(name)
                dest[key] = value if value is not None else arr
            else:
                dest[key] = arr.copy()
        return dest

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> IncompatibleKeys:
        """Copy parameters and buffers from ``state_dict`` (ndarrays or Tensors) into this module.

        Everything is checked before anything is copied: missing keys and unexpected keys
        (when ``strict``), shapes, dtypes (a float entry needs float values, an integer buffer
        integer values) and value types. Any problem raises one ``ValueError`` listing all of
        them, and the module is left unchanged. Values are copied into the existing arrays (so
        an optimizer holding the parameters keeps working), cast to their dtype.

        Args:
            state_dict: key -> ndarray (or Tensor, NumPy scalar, Python number for 0-d).
            strict: require the keys to match exactly.

        Returns:
            ``IncompatibleKeys(missing_keys, unexpected_keys)`` (both empty when strict).

        Example:
            >>> from cnnperf import nn
            >>> a, b = nn.Linear(2, 1), nn.Linear(2, 1)
            >>> b.load_state_dict(a.state_dict())
            IncompatibleKeys(missing_keys=[], unexpected_keys=[])
            >>> bool((a.weight.data == b.weight.data).all())
            True
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"load_state_dict: expected a mapping of key -> ndarray, got "
                f"{type(state_dict).__name__}"
            )
        entries = [(key, arr) for key, _, _, arr in self._state_entries()]
        return load_entries(entries, state_dict, strict, type(self).__name__)

    # ------------------------------------------------------------------------------------------
    # printing

    def extra_repr(self) -> str:
        """The module's own settings, shown inside its ``repr`` (one line per setting group)."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [
            f"({key}): " + _addindent(repr(module), 2) for key, module in self._modules.items()
        ]
        lines = extra_lines + child_lines
        main = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                main += extra_lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"
