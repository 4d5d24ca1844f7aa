"""Named tokenizer variants: `build_tokenizer("titok-s-128")`.

Each family registers its builders next to its own code, in a module of `vistok.tokenizers.variants`
(`titok.py`, `flextok.py`, `onedpiece.py`, `rectified_flow.py`), with `@register(name)` (timm's
`@register_model`). Importing this module imports every module of that package, so adding a family means
adding a file there, not editing this one. FlexTok and One-D-Piece variants are flexible-length: any prefix of
their tokens decodes.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vistok.tokenizers.tokenizer import Tokenizer

VARIANTS: dict[str, Callable[..., Tokenizer]] = {}


def register(name: str):
    """Decorator: make the builder (keyword overrides -> `Tokenizer`) available as `build_tokenizer(name)`."""
    def wrap(fn: Callable[..., Tokenizer]) -> Callable[..., Tokenizer]:
        if name in VARIANTS and VARIANTS[name] is not fn:
            raise ValueError(f"tokenizer variant {name!r} is registered twice ({VARIANTS[name].__module__} and "
                             f"{fn.__module__})")
        VARIANTS[name] = fn
        return fn

    return wrap


def build_tokenizer(name: str, **overrides: Any) -> Tokenizer:
    if name not in VARIANTS:
        raise ValueError(f"unknown tokenizer variant {name!r}; known: {', '.join(sorted(VARIANTS))}")
    return VARIANTS[name](**overrides)


def _import_variant_modules() -> None:
    from vistok.tokenizers import variants

    for info in sorted(pkgutil.iter_modules(variants.__path__), key=lambda m: m.name):
        importlib.import_module(f"{variants.__name__}.{info.name}")


_import_variant_modules()
