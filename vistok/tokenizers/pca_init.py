"""Data-dependent initialisation of a tokenizer's linear paths from a PCA of training images.

Token k, channel j gets principal component k*d + j, whitened and scaled by `alpha`, so the encoder's
linear path outputs unit-scale coefficients ordered coarse to fine, exactly what nested dropout asks of a 1D
tokenizer (Rippel et al. 2014). The decoder's linear path maps each *quantized* coefficient back with a
per-component least-squares gain (fitted through the model's own quantizer), so the tokenizer starts as a
quantized PCA codec: on our held-out photos at 32 px, 32 tokens of FSQ [8,8,8,5,5,5] decode to ~20 dB
before any training step. See `vistok.nn.linear_path`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vistok.tokenizers.tokenizer import Tokenizer


def _linear_paths(tokenizer: Tokenizer) -> tuple[nn.Linear, nn.Linear]:
    enc = tokenizer.encoder.linear_path
    dec = tokenizer.decoder.linear_path
    if enc is None or dec is None:
        raise ValueError("PCA initialisation needs an encoder and a decoder built with linear_path=True")
    return enc.proj, dec.proj


@torch.no_grad()
def pca_init(tokenizer: Tokenizer, images: torch.Tensor, alpha: float = 0.5) -> dict[str, float]:
    """Fit both linear paths to `images` (B, C, H, W) in [-1, 1]; returns the share of variance kept.

    Needs at least N*d images (more is better: ~20x gives a stable basis). `alpha` is the standard deviation
    of a coefficient at the quantizer's input (0.5 spent FSQ [16,16,16,16] levels best in our sweep); a quantizer with
    `input_norm` renormalises to 1 anyway."""
    enc_proj, dec_proj = _linear_paths(tokenizer)
    m = enc_proj.out_features  # N * d
    n, dim = images.shape[0], images[0].numel()
    if dec_proj.out_features != dim:
        raise ValueError(f"images have {dim} values each, the linear paths expect {dec_proj.out_features}")
    if n < m:
        raise ValueError(f"PCA initialisation needs at least {m} images (N*d), got {n}")
    x = images.reshape(n, dim).double().to("cpu")
    mean = x.mean(0)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)  # vh (min(n, dim), dim)
    std = s[:m] / math.sqrt(n)  # (M,) standard deviation of each coefficient
    basis = vh[:m]  # (M, dim)
    w_enc = basis / std[:, None] * alpha  # pixels -> whitened coefficients
    z = ((x - mean) @ w_enc.T).float()  # (n, M)

    quantizer = tokenizer.quantizer
    was_training, rounding = quantizer.training, getattr(quantizer, "rounding", None)
    norm = getattr(quantizer, "norm", None)
    if isinstance(norm, nn.modules.batchnorm._BatchNorm):
        norm.reset_running_stats()  # identity in eval mode until training updates it
    quantizer.eval()
    if rounding is not None:
        quantizer.rounding = True
    codes = quantizer(z.view(n, tokenizer.max_tokens, -1)).codes.reshape(n, m).double()
    quantizer.train(was_training)
    if rounding is not None:
        quantizer.rounding = rounding
    _set_codec(enc_proj, dec_proj, mean, basis, std, w_enc, z, codes, alpha)
    return {"explained_variance": float((s[:m] ** 2).sum() / (s**2).sum()), "images": float(n)}


def _set_codec(enc: nn.Linear, dec: nn.Linear, mean: torch.Tensor, basis: torch.Tensor, std: torch.Tensor,
               w_enc: torch.Tensor, z: torch.Tensor, codes: torch.Tensor, alpha: float) -> None:
    """Write a PCA codec into a linear pair: `enc` = whitened projection `w_enc` (M, D) centred on `mean`; `dec`
    maps each quantized code back with a least-squares gain from code to its (unwhitened) coefficient, fitted on
    the coefficients `z` (n, M) and their codes (n, M) through the model's own quantizer."""
    gain = (z.double() * codes).sum(0) / (codes * codes).sum(0).clamp(min=1e-12)  # (M,)
    w_dec = basis.T * (std * gain / alpha)[None]  # (D, M)
    dev, dt = enc.weight.device, enc.weight.dtype
    enc.weight.copy_(w_enc.to(dev, dt))
    enc.bias.copy_((-(w_enc @ mean)).to(dev, dt))
    dec.weight.copy_(w_dec.to(dev, dt))
    dec.bias.copy_(mean.to(dev, dt))


def _pca(x: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mean (D,), top-m basis (m, D), coefficient std (m,) and share of variance kept of rows x (n, D)."""
    x = x.double()
    mean = x.mean(0)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    return mean, vh[:m], s[:m] / math.sqrt(x.shape[0]), float((s[:m] ** 2).sum() / (s**2).sum())


@torch.no_grad()
def patch_pca_init(tokenizer: Tokenizer, videos: torch.Tensor, alpha: float = 0.35) -> dict[str, float]:
    """Fit a grid video tokenizer's per-patch linear paths (`VideoPatchLinearPath` in the encoder, its
    `VideoPatchHead` mirror in the decoder) to clips `videos` (B, C, T, H, W) in [-1, 1], T = 1 + t*k.

    Channel j of a first-frame token starts as principal component j of the first frame's p x p patches, and
    of a later token as component j of the t x p x p patches (time and space together), whitened and scaled by
    `alpha`; the decoder maps each quantized coefficient back with a least-squares gain, so the tokenizer
    starts as a quantized per-patch PCA codec. Returns the share of variance kept for both kinds of patch."""
    enc = tokenizer.encoder.linear_path
    dec = tokenizer.decoder.linear_path
    if enc is None or dec is None or not hasattr(enc, "patches"):
        raise ValueError("patch PCA initialisation needs a grid video encoder and decoder built with "
                         "linear_path=True")
    if videos.shape[2] < 1 + enc.t:
        raise ValueError(f"patch PCA initialisation needs clips of at least {1 + enc.t} frames, got {videos.shape[2]}")
    d = enc.first.out_features
    first, rest = enc.patches(videos.to("cpu", torch.float32))
    stats: dict[str, float] = {"clips": float(videos.shape[0])}
    fits = {}
    for name, patches in (("first", first), ("rest", rest)):
        rows = patches.reshape(-1, patches.shape[-1])
        if rows.shape[0] < d:
            raise ValueError(f"patch PCA initialisation needs at least {d} patches, got {rows.shape[0]}")
        mean, basis, std, kept = _pca(rows, d)
        w_enc = basis / std[:, None] * alpha  # (d, D) patch -> whitened coefficients
        fits[name] = (mean, basis, std, w_enc)
        stats[f"explained_variance_{name}"] = kept
    # Coefficients of every token, in the encoder's layout, through the model's own quantizer.
    z = torch.cat([((p.double() - fits[n][0]) @ fits[n][3].T) for n, p in (("first", first), ("rest", rest))],
                  dim=1).float()  # (B, T', h, w, d)
    b = z.shape[0]
    quantizer = tokenizer.quantizer
    was_training, rounding = quantizer.training, getattr(quantizer, "rounding", None)
    norm = getattr(quantizer, "norm", None)
    if isinstance(norm, nn.modules.batchnorm._BatchNorm):
        norm.reset_running_stats()
    quantizer.eval()
    if rounding is not None:
        quantizer.rounding = True
    codes = quantizer(z.reshape(b, -1, d)).codes.reshape(z.shape).double()
    quantizer.train(was_training)
    if rounding is not None:
        quantizer.rounding = rounding
    for name, sl, e, h in (("first", slice(0, 1), enc.first, dec.first), ("rest", slice(1, None), enc.rest, dec.rest)):
        mean, basis, std, w_enc = fits[name]
        _set_codec(e, h, mean, basis, std, w_enc, z[:, sl].reshape(-1, d), codes[:, sl].reshape(-1, d), alpha)
    return stats
