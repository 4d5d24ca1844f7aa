"""Record a module's constructor arguments so that an export can rebuild it without pickle.

`@configurable` wraps a class's `__init__` to keep its bound arguments in `self.init_args` and adds the class
to an allow-list. `to_config` turns a module tree into `{"class_path", "init_args"}` dictionaries (the format
LightningCLI uses); `from_config` rebuilds it and refuses any class that is not on the allow-list, so a
`config.json` from an untrusted source cannot make vistok import or run arbitrary code.

A class path inside one of `MODEL_PACKAGES` is imported on demand (its module registers its classes), so a
loader needs no list of model modules and this module imports no model code (no import cycle with the
packages that use it). Plain objects that are not modules (a flow decoder's objective and sampler) are
`@configurable` too and nest in a config like modules.

A class may define `upgrade_init_args(init_args) -> init_args` (a staticmethod) to map the arguments of an
older export to its current constructor; `from_config` applies it before checking the arguments.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import types
import typing
from typing import Any

from torch import nn

_ALLOWED: dict[str, type] = {}


class BudgetExceeded(ValueError):
    """A config that asks for more memory than its weights justify (`vistok.build_budget`)."""

# Packages whose modules define the model classes; only these are imported on demand by `from_config`.
MODEL_PACKAGES = ("vistok.tokenizers", "vistok.decoders", "vistok.quantizers", "vistok.nn")


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def configurable(cls: type) -> type:
    original = cls.__init__
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        arguments.pop("self")
        original(self, *args, **kwargs)
        # A subclass's wrapper runs after its parent's, so the outermost class's arguments win.
        self.init_args = arguments

    cls.__init__ = __init__
    _ALLOWED[class_path(cls)] = cls
    return cls


def allowed_classes() -> list[str]:
    return sorted(_ALLOWED)


def import_model_classes() -> None:
    """Import every model package, so the allow-list is complete (e.g. to list it)."""
    import importlib

    for package in MODEL_PACKAGES:
        importlib.import_module(package)


# Classes that moved, by their old class path (exports written before the move name the old one).
MOVED = {"vistok.tokenizers.omni.OmniDecoder": "vistok.decoders.omni.OmniDecoder",
         "vistok.tokenizers.larp.LARPDecoder": "vistok.decoders.larp.LARPDecoder"}


def _allowed(path: str) -> type | None:
    """The allow-listed class at `path`, importing its module first when it lies in a model package."""
    path = MOVED.get(path, path) if isinstance(path, str) else path
    if path not in _ALLOWED and isinstance(path, str) and "." in path:
        module = path.rsplit(".", 1)[0]
        if any(module == p or module.startswith(p + ".") for p in MODEL_PACKAGES):
            import importlib

            try:
                importlib.import_module(module)
            except ImportError:
                pass
    return _ALLOWED.get(path)


def _encode(value: Any) -> Any:
    if isinstance(value, nn.Module) or class_path(type(value)) in _ALLOWED:
        return to_config(value)
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot record constructor argument of type {type(value).__name__} in a config")


def to_config(module: Any) -> dict[str, Any]:
    """`{"class_path": ..., "init_args": {...}}` for a module (or object) built from @configurable classes."""
    if not hasattr(module, "init_args") or class_path(type(module)) not in _ALLOWED:
        raise TypeError(f"{type(module).__name__} is not a @configurable vistok class and cannot be exported")
    return {"class_path": class_path(type(module)), "init_args": _encode(module.init_args)}


def _is_class_spec(value: Any) -> bool:
    return isinstance(value, dict) and "class_path" in value


def from_config(config: dict[str, Any], where: str = "config") -> Any:
    """Instantiate a config made by `to_config`; only allow-listed vistok classes are accepted."""
    if not _is_class_spec(config):
        raise ValueError(f"{where}: expected an object with 'class_path' and 'init_args'")
    path = config["class_path"]
    if not isinstance(path, str):
        raise ValueError(f"{where}.class_path: expected a class name (a string), got {type(path).__name__}")
    if not isinstance(config.get("init_args", {}), dict):
        raise ValueError(f"{where}.init_args: expected an object of constructor arguments, got "
                         f"{type(config['init_args']).__name__}")
    if _allowed(path) is None:
        import_model_classes()
        raise ValueError(
            f"{where}: class {path!r} is not an allowed vistok class; allowed: {', '.join(allowed_classes())}"
        )
    cls = _ALLOWED[MOVED.get(path, path)]
    init_args = config.get("init_args", {})
    upgrade = getattr(cls, "upgrade_init_args", None)
    if upgrade is not None and isinstance(init_args, dict):
        init_args = upgrade(dict(init_args))

    def decode(value: Any, key: str) -> Any:
        if _is_class_spec(value):
            return from_config(value, key)
        if isinstance(value, list):
            return [decode(v, f"{key}[{i}]") for i, v in enumerate(value)]
        return value

    args = {k: decode(v, f"{where}.init_args.{k}") for k, v in init_args.items()}
    try:
        inspect.signature(cls).bind(**args)
    except TypeError as e:
        raise ValueError(f"{where}: bad arguments for {path}: {e}") from None
    hints = _init_hints(cls)
    for name, value in args.items():
        if name in hints and _fits(value, hints[name]) is False:
            raise ValueError(f"{where}.init_args.{name}: expected {_show(hints[name])}, got {value!r} "
                             f"({type(value).__name__})")
    try:
        return cls(**args)
    except BudgetExceeded:  # names the file already
        raise
    except (TypeError, ValueError, RuntimeError, OverflowError, MemoryError) as e:  # negative or absurd sizes
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{where}: cannot build {path}: {message}") from None


def _init_hints(cls: type) -> dict[str, Any]:
    init = getattr(cls.__init__, "__wrapped__", cls.__init__)
    try:
        return typing.get_type_hints(init)
    except Exception:  # an annotation that does not evaluate: no type check, the constructor still runs
        return {}


def _fits(value: Any, hint: Any) -> bool | None:
    """Whether a JSON value fits a constructor annotation; None when the annotation is not understood."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        verdicts = [_fits(value, a) for a in args]
        return True if any(v is True for v in verdicts) else (None if None in verdicts else False)
    if origin is typing.Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_fits(v, a) is not False for v, a in zip(value, args))
        return all(_fits(v, args[0]) is not False for v in value) if args else True
    if isinstance(hint, type):
        return isinstance(value, hint)
    return None


def _show(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
