"""Decoders from token codes back to pixels."""

from vistok.decoders.vit import ViTPixelDecoder

__all__ = ["ViTPixelDecoder"]
