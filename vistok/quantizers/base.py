"""The one quantizer interface every tokenizer uses (docs/architecture.md#encoder-decoder-and-quantizer-contracts).

Quantization runs in fp32 even under autocast: `torch.autocast(device_type=..., enabled=False)` for the
input's own device type (vector-quantize-pytorch's own guard only disables *CUDA* autocast, so on a CPU
bf16 run it would quantize in bf16).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from vistok.metrics.codebook import code_counts, usage_from_counts


@dataclass
class QuantizerOutput:
    codes: torch.Tensor  # (B, N, d) quantized vectors fed to the decoder
    indices: torch.Tensor  # (B, N) int64 codebook ids
    loss: torch.Tensor  # scalar auxiliary loss (commitment, entropy); 0 for FSQ
    codebook_size: int | None = None  # for the usage metrics; None: no metrics
    _metrics: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def metrics(self) -> dict[str, torch.Tensor]:
        """Codebook usage and perplexity of this batch, computed when first read: training logs them, while
        encoding (`Tokenizer.encode`, a server's batches) never reads them and does not pay for the histogram."""
        if self._metrics is None:
            self._metrics = usage_metrics(self.indices, self.codebook_size) if self.codebook_size else {}
        return self._metrics


@contextmanager
def fp32(device: torch.device):
    with torch.autocast(device_type=device.type, enabled=False):
        yield


class Quantizer(nn.Module):
    """Base class: subclasses implement `quantize`, `indices_to_codes` and `codebook_size`."""

    dim: int  # size of the vectors going in and coming out
    # A continuous bottleneck (`vistok.quantizers.gaussian`) has no codebook and no ids: `Tokenizer.encode` /
    # `decode`, exports and token shards refuse it. `loss_name`: the name of `QuantizerOutput.loss` as a loss term.
    continuous: bool = False
    loss_name: str = "quantizer"

    @property
    def codebook_size(self) -> int:
        raise NotImplementedError

    def quantize(self, z: torch.Tensor) -> QuantizerOutput:
        raise NotImplementedError

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, N) int64 -> (B, N, d) float32, equal to `forward(z).codes` for the same indices."""
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        # z: (B, N, d) in any dtype -> codes (B, N, d) fp32, indices (B, N) int64
        with fp32(z.device):
            out = self.quantize(z.float())
        out.indices = out.indices.long()
        return out

    @torch.no_grad()
    def codes(self) -> torch.Tensor:
        """The full (V, d) float32 table, implicit codebooks (FSQ, LFQ) included."""
        ids = torch.arange(self.codebook_size, device=self._device())
        with fp32(ids.device):
            return self.indices_to_codes(ids[None])[0].float()

    def check_indices(self, indices: torch.Tensor) -> None:
        if indices.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"token ids must be an integer tensor, got {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(
                f"token ids must lie in [0, {self.codebook_size - 1}] (codebook size {self.codebook_size}); "
                f"got min {int(indices.min())}, max {int(indices.max())}"
            )

    def _device(self) -> torch.device:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")


def usage_metrics(indices: torch.Tensor, codebook_size: int) -> dict[str, torch.Tensor]:
    """Share of codes used and perplexity of the code histogram for one batch (`vistok.metrics.codebook`)."""
    # Clamped: NaN inputs give meaningless (even negative) ids, and these metrics must not fail before the
    # training loop's NaN check can name the loss term (no device sync, unlike filtering).
    stats = usage_from_counts(code_counts(indices.long().clamp(0, codebook_size - 1), codebook_size))
    return {"usage": stats["usage"].float(), "perplexity": stats["perplexity"].float()}
