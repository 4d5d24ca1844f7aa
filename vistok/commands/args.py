"""Arguments shared by the commands: argparse number types, the parser factory and the common options."""

from __future__ import annotations

import argparse
import math
from typing import Any


def int_at_least(low: int):
    """An argparse type: an integer >= `low`, else a usage error that says so."""
    what = "a positive integer" if low == 1 else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def frame_rate(text: str) -> float:
    """An argparse type: frames per second within [MIN_FPS, MAX_FPS] (`vistok.data.video_io.check_fps`)."""
    from vistok.data.video_io import check_fps

    try:
        return check_fps(finite_float(text), "--fps")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """Every vistok command's parser: no prefix matching, so `--batch` never silently means `--batch-size`."""
    return argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False)


def add_model(p: argparse.ArgumentParser, help: str = "export directory or .ckpt") -> None:
    p.add_argument("--model", required=True, help=help)


def add_device(p: argparse.ArgumentParser) -> None:
    from vistok.devices import AUTO
    from vistok.devices import HELP as DEVICE_HELP

    p.add_argument("--device", default=AUTO, help=DEVICE_HELP)


def add_sampling(p: argparse.ArgumentParser) -> None:
    """`--steps --guidance --seed`: the sampler of a generative (rectified-flow) decoder; a pixel decoder ignores
    them."""
    p.add_argument("--steps", type=positive_int, default=None, help="sampler steps (generative decoders)")
    p.add_argument("--guidance", type=finite_float, default=None, help="guidance scale (generative decoders)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (generative decoders)")


def sampling(a: argparse.Namespace) -> dict[str, Any]:
    """The `Tokenizer.decode` keyword arguments of `add_sampling`'s options, those given."""
    return {k: v for k, v in dict(steps=a.steps, guidance_scale=a.guidance, seed=a.seed).items() if v is not None}


def load_model(a: argparse.Namespace) -> Any:
    """The `--model` of a command on its `--device` (resolved before the slow load, so a bad device fails first)."""
    from vistok.devices import resolve_device
    from vistok.loading import load_tokenizer

    device = resolve_device(a.device)
    return load_tokenizer(a.model, device)


def add_decode_options(p: argparse.ArgumentParser) -> None:
    """The options `decode` and `reconstruct` share: token count, sampler, batch, device, output handling."""
    p.add_argument("--num-tokens", type=positive_int, default=None,
                   help="decode the first K tokens of each sequence (default: all of them)")
    add_sampling(p)
    p.add_argument("--batch-size", type=positive_int, default=64)
    add_device(p)
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --output directory")
    p.add_argument("--format", choices=("mp4", "png"), default="mp4", dest="video_format",
                   help="video models: an mp4 per clip, or a folder of frame PNGs per clip")
    p.add_argument("--fps", type=frame_rate, default=None,
                   help="video models: frame rate of the written mp4 (decode: default the sample's, else 8; "
                        "reconstruct: also the rate the videos are read at, default each file's own)")


def load_decoding_model(a: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """`load_model` plus a check of `--num-tokens` against the model, and the sampler arguments."""
    tok = load_model(a)
    if a.num_tokens is not None and a.num_tokens > tok.max_tokens:
        raise ValueError(f"--num-tokens {a.num_tokens}: the model decodes 1..{tok.max_tokens} tokens")
    return tok, sampling(a)
