"""Atomic counters and raw array views for Numba kernels whose threads share work.

A parallel region per layer costs its sleeping threads' wake-up each time (about 8 us with
``OMP_WAIT_POLICY=PASSIVE`` on the 2-core development machine, plus the imbalance of a static
split). :mod:`cnnperf.kernels.chain` runs a whole chain of layers in one region instead; its
threads claim tasks from counters with these intrinsics and wait for a layer's last task with
:func:`atomic_load` and :func:`cpu_pause`.

- :func:`atomic_add` ``(a, i, v)``: ``a[i] += v`` as one atomic read-modify-write
  (sequentially consistent), returning the old value; ``a`` an int64 array.
- :func:`atomic_load` ``(a, i)``: ``a[i]`` read atomically (acquire: the writes that preceded
  the matching :func:`atomic_add` in the other thread are visible after it).
- :func:`cpu_pause`: the spin-wait hint (x86 ``pause``; nothing elsewhere).
- :func:`os_yield`: ``sched_yield()``: give the core to another runnable thread, if any (a
  waiting thread whose partner was descheduled must not keep the core from it).
- :func:`f32_view` / :func:`i64_view` ``(address, size)``: a 1-D array over memory that a
  caller keeps alive (the address of a NumPy array's data): a table of layers holds its
  arrays as addresses, where a typed list of arrays would compile list methods at load time.

Indices and addresses are unchecked.
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import ir
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["atomic_add", "atomic_load", "cpu_pause", "os_yield", "f32_view", "i64_view"]

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _element_pointer(context, builder, aryty, ary, idx):
    data = context.make_array(aryty)(context, builder, ary).data
    return builder.gep(data, [idx])


def _check_int64_array(a) -> None:
    if not (isinstance(a, types.Array) and a.dtype == types.int64):
        raise TypeError(f"atomics need an int64 array, got {a}")


@intrinsic
def atomic_add(typingctx, a, i, v):
    """``old = a[i]; a[i] += v; return old``, atomically."""
    _check_int64_array(a)
    sig = types.int64(a, types.intp, types.int64)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")

    return sig, codegen


@intrinsic
def atomic_load(typingctx, a, i):
    """``a[i]``, read atomically with acquire ordering (never hoisted out of a loop)."""
    _check_int64_array(a)
    sig = types.int64(a, types.intp)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def cpu_pause(typingctx):
    """The x86 ``pause`` hint for a spin-wait loop."""

    def codegen(context, builder, sig, args):
        if _X86:
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause"
            )
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def os_yield(typingctx):
    """``sched_yield()`` (libc, resolved by name when the kernel is linked: the cached code
    holds no address)."""

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield"
        )
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


def _pointer_intrinsic(dtype):
    @intrinsic
    def pointer(typingctx, address):
        sig = types.CPointer(dtype)(types.int64)

        def codegen(context, builder, sig, args):
            return builder.inttoptr(args[0], context.get_value_type(sig.return_type))

        return sig, codegen

    return pointer


_f32_pointer = _pointer_intrinsic(types.float32)
_i64_pointer = _pointer_intrinsic(types.int64)


@njit(inline="always")
def f32_view(address, size):  # pragma: no cover - compiled
    """The float32 array of ``size`` elements at ``address``."""
    return carray(_f32_pointer(address), size, np.float32)


@njit(inline="always")
def i64_view(address, size):  # pragma: no cover - compiled
    """The int64 array of ``size`` elements at ``address``."""
    return carray(_i64_pointer(address), size, np.int64)
