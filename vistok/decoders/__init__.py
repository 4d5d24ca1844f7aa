"""Decoders from token codes back to pixels: a deterministic ViT, or a rectified-flow generative decoder."""

from vistok.decoders.flow import FlowDecoder
from vistok.decoders.vit import ViTPixelDecoder

__all__ = ["FlowDecoder", "ViTPixelDecoder"]
