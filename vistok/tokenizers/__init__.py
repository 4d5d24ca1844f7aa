"""Tokenizer networks (encoders, token dropout) and the `Tokenizer` that ties them together."""

from vistok.model_output import TokenizerOutput
from vistok.tokenizers.dropout import NestedDropout, TailDrop
from vistok.tokenizers.flextok import FlexTokEncoder
from vistok.tokenizers.registry import VARIANTS, build_tokenizer
from vistok.tokenizers.titok import TiTokEncoder
from vistok.tokenizers.tokenizer import Tokenizer

__all__ = [
    "VARIANTS",
    "FlexTokEncoder",
    "NestedDropout",
    "TailDrop",
    "TiTokEncoder",
    "Tokenizer",
    "TokenizerOutput",
    "build_tokenizer",
]
