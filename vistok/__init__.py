"""vistok: train, evaluate and serve visual tokenizers.

The top level is lazy: `import vistok` (and `vistok --help`) imports neither torch nor the models; `Tokenizer`
and `load_images` are imported on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Tokenizer": "vistok.tokenizers.tokenizer",
    "load_images": "vistok.data.images",
}
__all__ = ["Tokenizer", "__version__", "load_images"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vistok' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
