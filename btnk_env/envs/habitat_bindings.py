"""What habitat-sim's bindings ask of their Python callers: vectors handed over without NumPy's
removed ``PyArray_CopyInto``, and simulators closed in the order their shared GL context allows.

NumPy 2. habitat-sim up to 0.3.0 holds sensor-spec and path vectors as Eigen types, which
pybind11 (2.9.2 in 0.2.2) fills from Python through slot 82 of NumPy's C-API table,
``PyArray_CopyInto``. NumPy 2 left that slot NULL, so *any* value assigned to such a member (a
list or a typed array alike) makes the process jump to address 0. Reading is safe: the getter of
a ``def_readwrite`` Eigen member returns a read-only NumPy view of the C++ member itself.
:func:`set_vector` therefore writes the values through that view; from habitat-sim 0.3.1 the
members are Magnum types and are assigned as such. A call that takes an Eigen *argument* cannot
be fed this way: :func:`numpy_copy_into_available` says whether such calls are safe.

GL contexts. habitat-sim (``Simulator::reconfigure``, 0.2.2 to 0.3.3) creates a GL context only
when none is current, so every later ``Simulator`` of the process draws in the first one's
context; closing that first simulator destroys the context under the others, and their next
draw or close aborts the process (``GL::Context::current(): no current context``). The
simulators are therefore closed in reverse creation order: :func:`close_simulator` closes a
simulator at once when no simulator created after it is still open, and otherwise keeps it
(scene and all) until those are closed; at interpreter exit the rest are closed in that order.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import importlib
import logging
import warnings
from typing import Any, Sequence

import numpy as np

__all__ = ["numpy_copy_into_available", "set_vector", "track_simulator", "close_simulator", "close_all_simulators"]

logger = logging.getLogger(__name__)

COPY_INTO_SLOT = 82
"""Index of ``PyArray_CopyInto`` in NumPy's C-API table ``_ARRAY_API``."""

_capsule_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))


@functools.lru_cache(maxsize=1)
def numpy_copy_into_available() -> bool:
    """Whether the NumPy C-API table that pybind11 2.9 to 2.11 reads (``numpy.core.multiarray``'s
    ``_ARRAY_API``) has ``PyArray_CopyInto``: always on NumPy 1, on NumPy 2 only where a shim
    has filled the slot (e.g. the habitat kit's ``npshim``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy.core is deprecated on NumPy 2; pybind11 still imports it
        # the module pybind11's PyImport_ImportModule returns: sys.modules' entry (where a shim may sit)
        capsule = importlib.import_module("numpy.core.multiarray")._ARRAY_API
    table = (ctypes.c_void_p * (COPY_INTO_SLOT + 1)).from_address(_capsule_pointer(capsule, None))
    return table[COPY_INTO_SLOT] is not None


def set_vector(obj: Any, name: str, values: Sequence[float], magnum_type: Any = None) -> None:
    """Set the vector member ``obj.<name>`` to ``values``.

    With ``magnum_type`` (habitat-sim 0.3.1+) the member is assigned ``magnum_type(*values)``.
    Without it the member is an Eigen vector: its getter's read-only view of the C++ storage is
    written in place (no ``PyArray_CopyInto``), and read back to make sure it was that storage.

    Raises:
        RuntimeError: the getter returned a copy, not a view of the member.
    """
    if magnum_type is not None:
        setattr(obj, name, magnum_type(*values))
        return
    view = np.asarray(getattr(obj, name))
    wanted = np.asarray(values, dtype=view.dtype).reshape(view.shape)
    storage = (ctypes.c_char * view.nbytes).from_address(view.ctypes.data)
    np.ndarray(view.shape, view.dtype, buffer=storage, strides=view.strides)[...] = wanted
    if not np.array_equal(np.asarray(getattr(obj, name)), wanted):
        raise RuntimeError(f"could not set {type(obj).__name__}.{name}: its getter returned a copy, not a view")


_OPEN: list[list] = []
"""``[simulator, close_requested]`` for each simulator of this process, in creation order."""


def track_simulator(sim: Any) -> None:
    """Record a new simulator (call right after creating it)."""
    _OPEN.append([sim, False])


def close_simulator(sim: Any) -> None:
    """Close ``sim`` now, or as soon as every simulator created after it is closed."""
    for entry in _OPEN:
        if entry[0] is sim:
            entry[1] = True
            break
    else:  # not tracked (e.g. it failed before it was recorded): nothing was created after it
        _close(sim)
        return
    while _OPEN and _OPEN[-1][1]:
        _close(_OPEN.pop()[0])


@atexit.register
def close_all_simulators() -> None:
    """Close every open simulator, newest first (runs at interpreter exit)."""
    while _OPEN:
        _close(_OPEN.pop()[0])


def _close(sim: Any) -> None:
    try:
        sim.close()
    except Exception as err:  # a simulator whose scene failed may fail to close too
        logger.warning("closing a habitat-sim Simulator raised %s: %s", type(err).__name__, err)
