"""Plain-PyTorch building blocks shared by encoders and decoders."""

from vistok.nn.attention import Attention, key_padding_mask
from vistok.nn.blocks import MLP, Transformer, TransformerBlock
from vistok.nn.discriminator import NLayerDiscriminator, NLayerDiscriminator3D
from vistok.nn.patch import ConvStem, ConvUpsampleHead, PatchEmbed2D, unpatchify

__all__ = [
    "Attention",
    "ConvStem",
    "ConvUpsampleHead",
    "MLP",
    "NLayerDiscriminator",
    "NLayerDiscriminator3D",
    "PatchEmbed2D",
    "Transformer",
    "TransformerBlock",
    "key_padding_mask",
    "unpatchify",
]
