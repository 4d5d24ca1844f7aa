"""vistok: train, evaluate and serve visual tokenizers."""

__version__ = "0.1.0"

from vistok.tokenizers.tokenizer import Tokenizer  # noqa: E402

__all__ = ["Tokenizer", "__version__"]
