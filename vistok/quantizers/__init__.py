"""Quantizers behind one interface: `forward(z) -> QuantizerOutput`, `indices_to_codes`, `codes()`; and a continuous
KL bottleneck behind the same `forward` (`gaussian.py`, no codebook)."""

from vistok.quantizers.base import Quantizer, QuantizerOutput
from vistok.quantizers.ema_codebook import EMACodebookQuantizer
from vistok.quantizers.fsq import FSQQuantizer
from vistok.quantizers.gaussian import DiagonalGaussianBottleneck
from vistok.quantizers.learned_vq import LearnedVQQuantizer
from vistok.quantizers.lfq import LFQQuantizer
from vistok.quantizers.stochastic_vq import StochasticVQQuantizer
from vistok.quantizers.vq import VQQuantizer

__all__ = ["DiagonalGaussianBottleneck", "EMACodebookQuantizer", "FSQQuantizer", "LearnedVQQuantizer", "LFQQuantizer",
           "Quantizer", "QuantizerOutput", "StochasticVQQuantizer", "VQQuantizer"]
