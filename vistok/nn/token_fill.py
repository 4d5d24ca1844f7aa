"""How a decoder takes 1..N token codes in: projection, position embedding, and what stands in for the tokens
it does not get. Shared by `ViTPixelDecoder` and `FlowDecoder`, so both fill tokens the same way.

Two modes:
- `"mask"` (FlexTok): the decoder always sees N positions; a prefix K < N, nested-dropout drops and the padding
  of a variable-length batch become the learned `dropped` embedding (then the position embedding is added),
  exactly as in nested-dropout training;
- `"truncate"` (One-D-Piece, TiTok): the decoder sees only the K given tokens; the invalid positions of a
  variable-length batch are returned as a key-padding mask for attention (`vistok.nn.attention`).
"""

from __future__ import annotations

import torch
from torch import nn

MODES = ("mask", "truncate")


class TokenFill(nn.Module):
    def __init__(self, num_tokens: int, token_dim: int, width: int, mode: str = "mask") -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"token_fill must be 'truncate' or 'mask', got {mode!r}")
        self.num_tokens, self.token_dim, self.mode = num_tokens, token_dim, mode
        scale = width**-0.5
        self.proj = nn.Linear(token_dim, width)
        self.pos = nn.Parameter(scale * torch.randn(1, num_tokens, width))
        self.dropped = nn.Parameter(scale * torch.randn(1, 1, width)) if mode == "mask" else None

    def forward(self, codes: torch.Tensor, valid: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """codes (B, K, d), 1 <= K <= N; valid (B, K) bool, False where a token is dropped or padding.

        Returns (tokens, key_valid): "mask": (B, N, D) and None; "truncate": (B, K, D) and `valid` when some
        token is invalid (the caller masks those keys out of attention), else None."""
        b, k, _ = codes.shape
        if not 1 <= k <= self.num_tokens:
            raise ValueError(f"the decoder takes 1..{self.num_tokens} tokens, got {k}")
        tokens = self.proj(codes)  # (B, K, D)
        if self.mode == "truncate":
            key_valid = None if valid is None or bool(valid.all()) else valid.bool()
            return tokens + self.pos[:, :k], key_valid  # (B, K, D)
        keep = torch.ones(b, k, dtype=torch.bool, device=codes.device) if valid is None else valid.bool()
        if k < self.num_tokens:
            pad = self.num_tokens - k
            tokens = torch.cat([tokens, tokens.new_zeros(b, pad, tokens.shape[-1])], dim=1)
            keep = torch.cat([keep, keep.new_zeros(b, pad)], dim=1)
        tokens = torch.where(keep[..., None], tokens, self.dropped.to(tokens.dtype))
        return tokens + self.pos, None  # (B, N, D)


# Parameter names before the token filling moved into `TokenFill` (exports written by vistok <= 0.1.0).
def legacy_keys(dropped: str) -> dict[str, str]:
    """{old name: new name} for a decoder whose dropped-token embedding was called `dropped`."""
    return {"token_proj.weight": "token_fill.proj.weight", "token_proj.bias": "token_fill.proj.bias",
            "token_pos": "token_fill.pos", dropped: "token_fill.dropped"}
