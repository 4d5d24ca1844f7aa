"""A frozen diffusers `AutoencoderKL` as the latent space of a rectified-flow decoder (FlexTok, SD3).

Loaded with `from_pretrained` from a local directory only (nothing is downloaded). Its weights are kept out of
the decoder's `state_dict` (so out of checkpoints and exports, like the FID Inception): an export records the
path, and reloading it needs the same VAE directory.

Latents are `(mean - shift) * scale` with `scale`/`shift` from the VAE config (`scaling_factor`,
`shift_factor`) unless given, optionally cached by content (`vistok.decoders.latent_cache`).

`sample_posterior`: FlexTok draws a sample of the posterior, `mean + std * N(0, 1)`, with torch's RNG (or a
given generator) exactly as diffusers' `DiagonalGaussianDistribution.sample` does; then a cache keeps the
posterior's mean and log-variance and the sample is drawn after the lookup, so caching changes no draw. Without
it (the default of our own latent-space decoders) the latent is the posterior mean, a deterministic function
of the image.
"""

from __future__ import annotations

from pathlib import Path

import torch


class FrozenVAE:
    """Not an `nn.Module` on purpose: it must not appear in parameters, state_dict or the optimizer."""

    def __init__(self, path: str | Path, scaling_factor: float | None = None,
                 shift_factor: float | None = None, cache: str | Path | None = None,
                 sample_posterior: bool = False) -> None:
        """`cache`: None, "memory" or a directory for a `LatentCache` of `encode`'s results."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"no diffusers AutoencoderKL at {str(path)!r} (expected a directory with config.json and weights, "
                "as written by AutoencoderKL.save_pretrained); set the decoder's vae_path to a local VAE "
                "directory, or vae_path: null to run the flow in pixel space"
            )
        from diffusers import AutoencoderKL

        self.path = str(path)
        self.vae = AutoencoderKL.from_pretrained(str(path)).eval().requires_grad_(False)
        cfg = self.vae.config
        self.scale = float(cfg.scaling_factor if scaling_factor is None else scaling_factor)
        self.shift = float((getattr(cfg, "shift_factor", None) or 0.0) if shift_factor is None else shift_factor)
        self.channels = int(cfg.latent_channels)
        self.downsample = 2 ** (len(cfg.block_out_channels) - 1)
        self.sample_posterior = bool(sample_posterior)
        self.cache = None
        if cache is not None:
            from vistok.decoders.latent_cache import LatentCache

            mode = "moments" if self.sample_posterior else "mean"
            identity = {"vae": str(path.resolve()), "scale": self.scale, "shift": self.shift, "mode": mode}
            self.cache = LatentCache(cache, identity)

    def check_channels(self, expected: int | None, owner: str) -> None:
        """A config that states its latent channels (FlexTok's released models: 16) refuses a VAE with other
        latents, naming both numbers, rather than failing later in a shape mismatch or training on the wrong VAE."""
        if expected is not None and expected != self.channels:
            raise ValueError(f"{owner}: the VAE at vae_path {self.path} has {self.channels} latent channels "
                             f"(its config.json latent_channels), the config states latent_channels: {expected}; "
                             "point vae_path at a VAE with that many channels, or change latent_channels")

    def _on(self, x: torch.Tensor) -> torch.Tensor:
        if next(self.vae.parameters()).device != x.device:
            self.vae.to(x.device)
        return x.to(next(self.vae.parameters()).dtype)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, C, H/f, W/f) scaled latents, fp32, no gradient (cached if asked).
        With `sample_posterior`, the sample's noise comes from `generator` (None: torch's global RNG)."""
        if not self.sample_posterior:
            return self.cache.encode(images, self._encode) if self.cache is not None else self._encode(images)
        moments = self.cache.encode(images, self._moments) if self.cache is not None else self._moments(images)
        mean, logvar = moments.chunk(2, dim=1)  # (B, C, h, w) each
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + torch.exp(0.5 * logvar) * noise
        return ((z - self.shift) * self.scale).float()

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=images.device.type, enabled=False):
            z = self.vae.encode(self._on(images)).latent_dist.mode()
        return ((z - self.shift) * self.scale).float()

    def _moments(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> the posterior's (mean, clamped log-variance) stacked on channels (B, 2C, h, w)."""
        with torch.autocast(device_type=images.device.type, enabled=False):
            dist = self.vae.encode(self._on(images)).latent_dist
        return torch.cat([dist.mean, dist.logvar], dim=1).float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) scaled latents -> (B, 3, h*f, w*f) pixels (unclamped)."""
        with torch.autocast(device_type=latents.device.type, enabled=False):
            x = self.vae.decode(self._on(latents / self.scale + self.shift)).sample
        return x.float()
