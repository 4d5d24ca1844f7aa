"""Content-adaptive token counts: the shortest prefix whose reconstruction meets a quality target.

None of the anchors ship this; it is what nested dropout / tail drop make possible. Per image: try the
lengths 1, 2, 4, ..., N (batched over the images still searching), then bisect between the last length
that missed and the first that met the target. Images whose full-length reconstruction misses the target
are reported as unreachable and keep all N tokens. Each probe is one batched decode, so the cost is about
log2(N) + log2(N/2) decodes per image. PSNR need not be monotone in K; the result always meets the target
where any probed length did, and in particular wherever the full length does. Quality is
`vistok.metrics.psnr.per_image_psnr` (8-bit, capped at 100 dB), the PSNR `vistok eval` reports, so the PSNR
reported here is the one eval gives for the same image at the same K.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vistok.metrics.psnr import per_image_psnr
from vistok.tokenizers.dropout import pow2_lengths


@dataclass
class AdaptiveEncoding(Sequence):
    """One 1-D int64 token tensor per image (a `Sequence`: iterate or index it like a list; `Tokenizer.decode`
    takes it as it is) and what the search found."""

    tokens: list[torch.Tensor]
    lengths: torch.Tensor  # (B,) chosen K
    psnr: torch.Tensor  # (B,) PSNR at the chosen K
    unreachable: torch.Tensor  # (B,) bool: even N tokens miss the target
    target_psnr: float

    def __iter__(self):
        return iter(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.tokens[i]

    def histogram(self) -> dict[int, int]:
        return dict(sorted(Counter(int(k) for k in self.lengths).items()))


@torch.no_grad()
def encode_adaptive(tokenizer, images: torch.Tensor, target_psnr: float) -> AdaptiveEncoding:
    if (isinstance(target_psnr, bool) or not isinstance(target_psnr, numbers.Real) or not math.isfinite(target_psnr)
            or target_psnr <= 0):
        raise ValueError(f"target_psnr must be a finite number of dB > 0, got {target_psnr!r}")
    images = tokenizer.check_images(images)  # (B, C, H, W) float32 on the model's device
    if not len(images):
        raise ValueError("encode_adaptive got an empty batch: images of shape "
                         f"{tuple(images.shape)} hold no image")
    ids = tokenizer.encode(images)  # (B, N)
    b, n = ids.shape

    def quality(rows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        recon = tokenizer.decode([ids[r, : int(k)] for r, k in zip(rows.tolist(), lengths.tolist())])
        return per_image_psnr(recon, images[rows])

    chosen = torch.full((b,), n, dtype=torch.long)
    missed = torch.zeros(b, dtype=torch.long)  # longest length known to miss (0: none yet)
    met = torch.zeros(b, dtype=torch.bool)
    for k in pow2_lengths(n):
        rows = (~met).nonzero().flatten()
        if not len(rows):
            break
        ok = quality(rows, torch.full((len(rows),), k)).cpu() >= target_psnr
        chosen[rows[ok]] = k
        missed[rows[~ok]] = k
        met[rows[ok]] = True
    while True:
        rows = (met & (chosen - missed > 1)).nonzero().flatten()
        if not len(rows):
            break
        mid = (chosen[rows] + missed[rows]) // 2
        ok = quality(rows, mid).cpu() >= target_psnr
        chosen[rows[ok]] = mid[ok]
        missed[rows[~ok]] = mid[~ok]
    final = quality(torch.arange(b), chosen).cpu()
    return AdaptiveEncoding([ids[i, : int(chosen[i])].clone() for i in range(b)], chosen, final, ~met, target_psnr)
