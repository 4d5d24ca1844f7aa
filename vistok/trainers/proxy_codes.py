"""TiTok's stage 1 (Yu et al. 2024, bytedance/1d-tokenizer `ReconstructionLoss_Stage1`): the encoder, quantizer
and the decoder ViT with its proxy-code head learn to predict, for every 16 px patch, the code a frozen
MaskGIT-VQGAN gives it ("proxy codes"); the objective is the cross-entropy between the head's logits over the
1024-entry MaskGIT codebook and those codes, plus the quantizer's own loss. No pixels are decoded in training.

`ProxyCodeSettings` (`proxy_codes:` in a config) names the MaskGIT-VQGAN weights: a plain state dict such as
the released `maskgit-vqgan-imagenet-f16-256.bin` (`encoder.*`, `decoder.*`, `quantize.embedding.weight`),
read with `weights_only=True`. Its architecture is read from the shapes (so a small one works in tests); only
its encoder and codebook are the target (`ProxyCodeTarget`), held outside the module tree as the perceptual
networks are, so it never lands in a checkpoint or an optimizer. With `load_decoder` (default) its codebook and
conv decoder are also copied into the proxy head (`decoder.head.codebook`, `decoder.head.pixel_decoder`), so the
stage-1 model decodes pixels in validation and its checkpoint is what stage 2 starts from; the official stage 2
loads the same tensors from the same file (`pixel_quantize`, `pixel_decoder`). Either way those head parts get
no gradient from the cross-entropy and are frozen in stage 1.

Departure: the official stage-1 model has no pixel decoder at all; here the proxy head always carries one (the
same model class in both stages), frozen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vistok.decoders.maskgit_vqgan import MaskGITVQGAN, nearest_codes
from vistok.decoders.proxy_head import ProxyCodeHead
from vistok.trainers.perceptual import _FrozenNet

TERM = "proxy_codes"  # the loss term's name in `TokenizerOutput.losses` and `loss_weights`
RELEASED_NAME = "maskgit-vqgan-imagenet-f16-256.bin"


@dataclass
class ProxyCodeSettings:
    """`path`: the MaskGIT-VQGAN state dict (the released `maskgit-vqgan-imagenet-f16-256.bin`); `load_decoder`:
    copy its codebook and conv decoder into the proxy head (they must then have the same shapes)."""

    path: str | None = None
    load_decoder: bool = True


def read_maskgit_state(path: str | Path | None) -> tuple[dict[str, torch.Tensor], dict[str, object], Path]:
    """(state dict, MaskGITVQGAN arguments read from its shapes, path); every problem names the file and key."""
    if not path:
        raise ValueError(f"proxy_codes.path is not set: stage 1 needs the frozen MaskGIT-VQGAN weights whose codes it "
                         f"learns to predict (the released {RELEASED_NAME})")
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"proxy_codes.path {path}: no such file (the MaskGIT-VQGAN weights, e.g. the released "
                                f"{RELEASED_NAME})")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file, a pickle of objects
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"proxy_codes.path {path}: not a state dict readable with weights_only=True ({why})") from None
    if not isinstance(state, dict):
        raise ValueError(f"proxy_codes.path {path}: holds a {type(state).__name__}, not a state dict")

    def need(key: str) -> torch.Tensor:
        if key not in state or not isinstance(state[key], torch.Tensor):
            raise ValueError(f"proxy_codes.path {path}: missing key {key!r}: not a MaskGIT-VQGAN state dict")
        return state[key]

    codebook = need("quantize.embedding.weight")
    conv_in = need("encoder.conv_in.weight")
    hidden = int(conv_in.shape[0])
    levels = sorted({int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.(\d+)\.", k))})
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))}
    if not levels or not blocks:
        raise ValueError(f"proxy_codes.path {path}: no encoder.down.*.block.* keys: not a MaskGIT-VQGAN state dict")
    mult = tuple(int(need(f"encoder.down.{i}.block.0.conv1.weight").shape[0]) // hidden for i in levels)
    arch = {"channels": int(conv_in.shape[1]), "hidden_channels": hidden, "channel_mult": mult,
            "num_res_blocks": len(blocks), "z_channels": int(codebook.shape[1]),
            "codebook_size": int(codebook.shape[0])}
    return state, arch, path


def build_maskgit(state: dict[str, torch.Tensor], arch: dict[str, object], path: Path) -> MaskGITVQGAN:
    model = MaskGITVQGAN(**arch)
    own = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(own[k].shape)})" for k, v in state.items()
             if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if wrong or missing or unexpected:
        raise ValueError(f"proxy_codes.path {path}: not a MaskGIT-VQGAN state dict of one architecture (missing keys "
                         f"{missing[:8]}, unexpected keys {unexpected[:8]}, wrong shapes {wrong[:8]})")
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)


class ProxyCodeTarget(_FrozenNet):
    """The frozen MaskGIT-VQGAN encoder and codebook: [-1, 1] pixels (B, 3, H, W) -> int64 codes (B, H/s * W/s),
    row-major, s its stride (16 for the released one)."""

    def __init__(self, encoder: nn.Module, codebook: torch.Tensor) -> None:
        super().__init__()
        holder = nn.Module()
        holder.encoder = encoder
        holder.codebook = nn.Parameter(codebook.detach().clone(), requires_grad=False)
        self._set_net(holder)
        self.codebook_size = int(codebook.shape[0])

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        net = self._net_on(images.device)
        with torch.autocast(images.device.type, enabled=False):  # nearest codes in fp32, as the released code
            z = net.encoder((images.float() + 1) / 2).float()  # MaskGIT computes on [0, 1]
        b, c, h, w = z.shape
        return nearest_codes(z.permute(0, 2, 3, 1).reshape(-1, c), net.codebook.float()).view(b, h * w)


def proxy_head(tokenizer: nn.Module) -> ProxyCodeHead:
    head = getattr(tokenizer.decoder, "head", None)
    if not isinstance(head, ProxyCodeHead):
        raise ValueError(f"proxy_codes: stage 1 trains the proxy-code head (ViTPixelDecoder(head='proxy')); this "
                         f"tokenizer's decoder is a {type(tokenizer.decoder).__name__} with "
                         f"{type(head).__name__ if head is not None else 'no'} head")
    return head


def build_target(settings: ProxyCodeSettings, tokenizer: nn.Module) -> ProxyCodeTarget:
    """Read the MaskGIT-VQGAN file, check it against the tokenizer's proxy head, optionally copy its codebook and
    decoder into the head, freeze the head's codebook and conv decoder, and return the frozen target."""
    head = proxy_head(tokenizer)
    state, arch, path = read_maskgit_state(settings.path)
    vocab = int(head.codebook.shape[0])
    if arch["codebook_size"] != vocab:
        raise ValueError(f"proxy_codes.path {path}: quantize.embedding.weight has {arch['codebook_size']} codes; the "
                         f"proxy head predicts {vocab} (decoder proxy_codebook_size)")
    maskgit = build_maskgit(state, arch, path)
    if settings.load_decoder:
        own = {"codebook": head.codebook, **{f"pixel_decoder.{k}": v
                                             for k, v in head.pixel_decoder.state_dict().items()}}
        theirs = {"codebook": maskgit.codebook, **{f"pixel_decoder.{k}": v
                                                   for k, v in maskgit.decoder.state_dict().items()}}
        def name(k: str) -> str:  # the key's name in the MaskGIT-VQGAN file
            return "quantize.embedding.weight" if k == "codebook" else k.replace("pixel_decoder.", "decoder.", 1)

        wrong = [f"{name(k)} {tuple(theirs[k].shape) if k in theirs else '(absent)'} -> decoder.head.{k} "
                 f"{tuple(v.shape)}" for k, v in own.items() if k not in theirs or theirs[k].shape != v.shape]
        if wrong:
            raise ValueError(f"proxy_codes.path {path}: its codebook / decoder do not fit the proxy head "
                             f"(load_decoder): {wrong[:6]}")
        with torch.no_grad():
            head.codebook.copy_(maskgit.codebook)
            head.pixel_decoder.load_state_dict(maskgit.decoder.state_dict())
    head.codebook.requires_grad_(False)  # the cross-entropy never reaches them: frozen (DDP waits for no gradient)
    head.pixel_decoder.requires_grad_(False)
    return ProxyCodeTarget(maskgit.encoder, maskgit.codebook)


def proxy_code_forward(tokenizer: nn.Module, target: ProxyCodeTarget, images: torch.Tensor):
    """One stage-1 forward: `TokenizerOutput` with no reconstruction and the terms `quantizer` and `proxy_codes`
    (the mean cross-entropy over every patch of the batch, as the official loss)."""
    from vistok.model_output import TokenizerOutput

    tokenizer.input_spec.check(images)
    quant = tokenizer.quantizer(tokenizer.encoder(images))
    codes, valid = quant.codes, None
    if tokenizer.token_dropout is not None:  # One-D-Piece: its tail drop in stage 1 too
        codes, valid = tokenizer.token_dropout(codes)
    logits = tokenizer.decoder.proxy_logits(codes, valid)  # (B, L, V)
    want = target(images)  # (B, L)
    if want.shape != logits.shape[:2]:
        raise ValueError(f"proxy_codes: the MaskGIT-VQGAN gives {want.shape[1]} codes per image, the decoder has "
                         f"{logits.shape[1]} patches (their strides differ)")
    ce = F.cross_entropy(logits.float().flatten(0, 1), want.flatten())
    return TokenizerOutput(None, quant, valid, {"quantizer": quant.loss, TERM: ce})
