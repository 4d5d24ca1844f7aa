"""Record a module's constructor arguments so that an export can rebuild it without pickle.

`@configurable` wraps a class's `__init__` to keep its bound arguments in `self.init_args` and adds the class
to an allow-list. `to_config` turns a module tree into `{"class_path", "init_args"}` dictionaries (the format
LightningCLI uses); `from_config` rebuilds it and refuses any class that is not on the allow-list, so a
`config.json` from an untrusted source cannot make vistok import or run arbitrary code.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from torch import nn

_ALLOWED: dict[str, type] = {}


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


def _encode(value: Any) -> Any:
    if isinstance(value, nn.Module):
        return to_config(value)
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot record constructor argument of type {type(value).__name__} in a config")


def to_config(module: nn.Module) -> dict[str, Any]:
    """`{"class_path": ..., "init_args": {...}}` for a module built from @configurable classes."""
    if not hasattr(module, "init_args") or class_path(type(module)) not in _ALLOWED:
        raise TypeError(f"{type(module).__name__} is not a @configurable vistok class and cannot be exported")
    return {"class_path": class_path(type(module)), "init_args": _encode(module.init_args)}


def _is_class_spec(value: Any) -> bool:
    return isinstance(value, dict) and "class_path" in value


def from_config(config: dict[str, Any], where: str = "config") -> nn.Module:
    """Instantiate a config made by `to_config`; only allow-listed vistok classes are accepted."""
    if not _is_class_spec(config):
        raise ValueError(f"{where}: expected an object with 'class_path' and 'init_args'")
    path = config["class_path"]
    if path not in _ALLOWED:
        raise ValueError(
            f"{where}: class {path!r} is not an allowed vistok class; allowed: {', '.join(allowed_classes())}"
        )

    def decode(value: Any, key: str) -> Any:
        if _is_class_spec(value):
            return from_config(value, key)
        if isinstance(value, list):
            return [decode(v, f"{key}[{i}]") for i, v in enumerate(value)]
        return value

    args = {k: decode(v, f"{where}.init_args.{k}") for k, v in config.get("init_args", {}).items()}
    cls = _ALLOWED[path]
    try:
        inspect.signature(cls).bind(**args)
    except TypeError as e:
        raise ValueError(f"{where}: bad arguments for {path}: {e}") from None
    return cls(**args)
