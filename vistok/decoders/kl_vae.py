"""`KLAutoencoder`: a diffusers `AutoencoderKL` trained by vistok, the stage before FlexTok.

FlexTok (Bachmann et al. 2025) tokenizes the latents of a frozen KL-regularised VAE of its own (released as
`EPFL-VILAB/flextok_vae_c4 / _c8 / _c16`: diffusers `AutoencoderKL`s with 4, 8 or 16 latent channels and 8x
downsampling; its README gives these numbers). This module trains such a VAE with vistok's recipe: the
training system (`vistok.trainers.system.TokenizerSystem`) adds the pixel terms (L1 / L2), the perceptual loss
(LPIPS) and the optional GAN to the model's own term, `kl` (a named loss in `loss_weights`). What is trained
is the diffusers module itself (`self.vae`), so the export is `AutoencoderKL.save_pretrained`'s directory
(`save_diffusers`, `vistok export` of a checkpoint), which FlexTok configs take as their `vae_path`
(`vistok.decoders.latent.FrozenVAE`).

Where it departs from FlexTok: FlexTok released the VAE weights, not its training code or recipe. The
defaults here are the SDXL-VAE layout that overviews of the paper describe (channels 128/256/512/512, two
ResNet blocks per level, hence 8x downsampling) with 16 latent channels; the loss weights in
`configs/flextok_vae.yaml` are vistok's own (Stable Diffusion's KL-f8 recipe), not FlexTok's.

Not a `Tokenizer`: a VAE's latents are continuous (no codebook, no token ids, no tokens.json), so it does not
fit the encoder / quantizer / decoder contract; it is its own model with the same training forward
(`TokenizerOutput`: `recon`, `losses`) so one training system trains both.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from vistok.configurable import configurable
from vistok.input_spec import InputSpec
from vistok.model_output import TokenizerOutput


@configurable
class KLAutoencoder(nn.Module):
    """A trainable diffusers `AutoencoderKL` (`self.vae`). Shapes: images (B, C, H, W) in [-1, 1] ->
    posterior (B, latent_channels, H/f, W/f) with f = 2 ** (len(block_out_channels) - 1) -> images.

    `sample_posterior`: training decodes a posterior sample (the VAE's reparameterisation), evaluation the mean.
    `scaling_factor`: written into the exported config (diffusers' `scaling_factor`, what FlexTok multiplies the
    latents by); measure it after training as 1 / the latents' std if the latent model expects unit variance."""

    def __init__(
        self,
        image_size: int = 256,
        in_channels: int = 3,
        latent_channels: int = 16,
        block_out_channels: tuple[int, ...] = (128, 256, 512, 512),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        scaling_factor: float = 1.0,
        sample_posterior: bool = True,
    ) -> None:
        super().__init__()
        from diffusers import AutoencoderKL

        blocks = len(block_out_channels)
        factor = 2 ** (blocks - 1)
        if image_size % factor:
            raise ValueError(f"image_size {image_size} must be a multiple of the VAE's downsampling {factor} "
                             f"(2 ** (len(block_out_channels) - 1))")
        if any(c % norm_num_groups for c in block_out_channels):
            raise ValueError(f"block_out_channels {list(block_out_channels)} must be multiples of norm_num_groups "
                             f"{norm_num_groups}")
        self.input_spec = InputSpec(in_channels, image_size, image_size, "1")
        self.image_size, self.latent_channels, self.downsample = image_size, latent_channels, factor
        self.sample_posterior = sample_posterior
        self.vae = AutoencoderKL(
            in_channels=in_channels, out_channels=in_channels, latent_channels=latent_channels,
            down_block_types=("DownEncoderBlock2D",) * blocks, up_block_types=("UpDecoderBlock2D",) * blocks,
            block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups, sample_size=image_size, scaling_factor=scaling_factor,
        )
        self.generator: torch.Generator | None = None  # the posterior noise (vistok.trainers.rng seeds it)

    @property
    def decoder(self) -> nn.Module:
        """The pixel decoder, whose last conv the adaptive GAN weight is measured at."""
        return self.vae.decoder

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the posterior mean (B, latent_channels, H/f, W/f), unscaled."""
        return self.vae.encode(x).latent_dist.mean

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z).sample

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        """The training forward: reconstruction and the `kl` term (KL to N(0, I), summed over the latent's
        elements and averaged over the batch, as Stable Diffusion's VAE recipe weighs it)."""
        dist = self.vae.encode(x).latent_dist
        if self.training and self.sample_posterior:
            noise = torch.randn(dist.mean.shape, generator=self.generator, device=dist.mean.device,
                                dtype=dist.mean.dtype)
            z = dist.mean + dist.std * noise
        else:
            z = dist.mean
        kl = 0.5 * (dist.mean.float().pow(2) + dist.var.float() - 1.0 - dist.logvar.float()).flatten(1).sum(1).mean()
        return TokenizerOutput(recon=self.vae.decode(z).sample, quant=None, valid=None, losses={"kl": kl})

    def save_diffusers(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write `AutoencoderKL.save_pretrained`'s directory (config.json, diffusion_pytorch_model.safetensors),
        atomically: a temporary directory renamed into place; a non-empty `path` only with `overwrite`."""
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            if not overwrite:
                raise FileExistsError(f"{path} exists and is not empty; choose another output directory or pass "
                                      "--overwrite (overwrite=True) to replace it")
            if not (path / "config.json").is_file():
                raise FileExistsError(f"{path} is not a diffusers model directory; refusing to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        try:
            self.vae.save_pretrained(str(tmp), safe_serialization=True)
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o777 & ~mask)
            old = None
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                path.rename(old)
            tmp.rename(path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path
