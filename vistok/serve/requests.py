"""Parsing and validating one request into a canonical job, before it can join a batch.

Pure functions of (fields, model facts, limits) that either return a job or raise `RequestError` (4xx). The
gate (`gate.py`) calls them in the API server process, so an inference worker only ever sees jobs that cannot
fail: litserve fails *every* request of a batch when one of them raises inside it.

Encode job (JSON): {"pixels": base64 of uint8 (S, S, 3), "num_tokens": K | null, "target_psnr": dB | null,
"source": {"width", "height", "mode", "resized", "cropped"}}. For a video model the upload (field `video`, or
`image`) is a video file (or an image: a one-frame video) decoded here, and the job's pixels are (T, S, S, 3) with
`frames` = T, already the clip the model takes (`vistok.data.model_clips`). Decode job: {"tokens": [ids], "steps",
"guidance_scale", "seed", "format": "png" | "base64"}.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import warnings
from typing import Any

import numpy as np
from pydantic import BaseModel

from vistok.data.video_io import MAX_FPS, MIN_FPS
from vistok.serve.facts import ModelFacts
from vistok.serve.limits import Limits, RequestError

MAX_SEED = 2**63 - 1


class EncodeJob(BaseModel):
    pixels: str  # base64 of uint8 (S, S, 3), row-major; a video model's clip: (T, S, S, 3)
    frames: int = 1
    num_tokens: int | None = None
    target_psnr: float | None = None
    source: dict[str, Any] = {}


class DecodeJob(BaseModel):
    tokens: list[int]
    steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    format: str = "png"  # a video model: "mp4" (default), "base64" (of the mp4) or "png" (frames in a row)
    fps: float = 8.0  # a video model's mp4 frame rate


# --- field parsers: JSON values (typed) or text (query string, multipart form) --------------------------------

def _int_field(value: Any, name: str, text_ok: bool) -> int:
    if isinstance(value, str) and text_ok:
        try:
            return int(value.strip())
        except ValueError:
            raise RequestError(400, f"{name} must be an integer, got {_short(value)}", name) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(400, f"{name} must be an integer, got {type(value).__name__} {_short(value)}", name)
    return value


def _float_field(value: Any, name: str, text_ok: bool) -> float:
    if isinstance(value, str) and text_ok:
        try:
            value = float(value.strip())
        except ValueError:
            raise RequestError(400, f"{name} must be a number, got {_short(value)}", name) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(400, f"{name} must be a number, got {type(value).__name__} {_short(value)}", name)
    try:
        value = float(value)  # a JSON integer of 400 digits is too large for a float
    except OverflowError:
        raise RequestError(400, f"{name} must be a finite number, got an integer of {len(str(value))} digits",
                           name) from None
    if not math.isfinite(value):
        raise RequestError(400, f"{name} must be finite, got {value!r}", name)
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object, or a 400 naming what is wrong with it."""
    if not body:
        raise RequestError(400, "empty request body: send JSON or a multipart form")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RequestError(400, f"malformed JSON: {e}") from None
    except RecursionError:
        raise RequestError(400, "malformed JSON: nested too deeply") from None
    except ValueError as e:  # an integer of more than 4,300 digits (Python's int-to-string limit)
        raise RequestError(400, f"malformed JSON: {e}") from None
    if not isinstance(data, dict):
        raise RequestError(400, f"the JSON body must be an object, got {type(data).__name__}")
    return data


def _unknown(data: dict[str, Any], known: set[str]) -> None:
    extra = sorted(set(data) - known)
    if extra:
        raise RequestError(400, f"unknown field(s) {', '.join(map(repr, extra))}; expected some of "
                                f"{', '.join(sorted(known))}", extra[0])


def decode_base64(value: Any, name: str = "image") -> bytes:
    """base64 text (a `data:image/...;base64,` URL prefix is allowed) -> bytes."""
    if not isinstance(value, str):
        raise RequestError(400, f"{name} must be a base64 string, got {type(value).__name__}", name)
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        data = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(400, f"{name} is not valid base64 ({e})", name) from None
    if not data:
        raise RequestError(400, f"{name} is empty", name)
    return data


# --- encode ---------------------------------------------------------------------------------------------------

ENCODE_FIELDS = {"image", "video", "num_tokens", "target_psnr"}


def _upload_field(data: dict[str, Any], facts: ModelFacts, form: bool = False) -> str:
    """The field holding the upload: `image`, or for a video model `video` (or `image`); exactly one."""
    given = [f for f in ("image", "video") if f in data]
    if not facts.video and "video" in data:
        raise RequestError(400, "this model tokenizes images: send the file as 'image'", "video")
    if len(given) > 1:
        raise RequestError(400, "give either 'video' or 'image', not both", "video")
    if not given:
        if facts.video:
            raise RequestError(400, f"missing {'form ' if form else ''}field 'video' (a video file, or an image)",
                               "video")
        raise RequestError(400, "missing form field 'image' (the image file)" if form
                           else "missing field 'image' (base64 of an image file)", "image")
    return given[0]


def _merge(body: dict[str, Any], query: dict[str, str]) -> dict[str, tuple[Any, bool]]:
    """Fields from the body and the query string, each as (value, is_text); a field given twice is refused."""
    out = {k: (v, False) for k, v in body.items()}
    for k, v in query.items():
        if k not in ENCODE_FIELDS - {"image", "video"}:
            raise RequestError(400, f"unknown query parameter {k!r}; expected num_tokens or target_psnr", k)
        if k in out:
            raise RequestError(400, f"{k} is given twice (query string and body)", k)
        out[k] = (v, True)
    return out


def encode_from_json(body: bytes, query: dict[str, str], facts: ModelFacts, limits: Limits) -> dict[str, Any]:
    """JSON {"image": base64, "num_tokens": K} or {"image": ..., "target_psnr": dB}."""
    data = parse_json(body)
    _unknown(data, ENCODE_FIELDS)
    name = _upload_field(data, facts)
    fields = _merge(data, query)
    image = decode_base64(fields.pop(name)[0], name)
    return _encode(image, fields, facts, limits, name)


def encode_from_form(form: dict[str, Any], query: dict[str, str], facts: ModelFacts,
                     limits: Limits) -> dict[str, Any]:
    """multipart/form-data with a file field `image` (and optional text fields num_tokens / target_psnr).
    `form` maps names to text or to bytes (a file's content)."""
    _unknown(form, ENCODE_FIELDS)
    name = _upload_field(form, facts, form=True)
    image = form[name]
    if isinstance(image, str):
        raise RequestError(400, f"form field '{name}' must be a file upload (curl -F {name}=@"
                                f"{'clip.mp4' if name == 'video' else 'photo.jpg'})", name)
    fields = _merge({k: v for k, v in form.items() if k != name}, query)
    fields = {k: (v, True) for k, (v, _) in fields.items()}  # every form field is text
    if not image:
        raise RequestError(400, f"{name}: the uploaded file is empty", name)
    return _encode(image, fields, facts, limits, name)


def _encode(image: bytes, fields: dict[str, tuple[Any, bool]], facts: ModelFacts, limits: Limits,
            name: str = "image") -> dict[str, Any]:
    num_tokens, nt_text = fields.get("num_tokens", (None, False))
    target_psnr, tp_text = fields.get("target_psnr", (None, False))
    if facts.video:
        return video_encode_job(image, num_tokens, target_psnr, facts, limits, nt_text, name)
    return encode_job(image, num_tokens, target_psnr, facts, limits, nt_text, tp_text)


def video_encode_job(data: bytes, num_tokens: Any, target_psnr: Any, facts: ModelFacts, limits: Limits,
                     num_tokens_text: bool = False, name: str = "video") -> dict[str, Any]:
    """A video model's encode job: the upload decoded (at its own frame rate, at most `limits.max_frames`
    frames, each frame's pixel count checked from the stream header first) into the clip the model takes."""
    from vistok.data.images import to_uint8
    from vistok.data.model_clips import ClipTooLarge, load_model_clip
    from vistok.data.video_io import VideoError, probe_video
    from vistok.input_spec import InputSpec

    if target_psnr is not None:
        raise RequestError(400, "target_psnr is for image models; a video model encodes whole clips", "target_psnr")
    spec = InputSpec(facts.channels, facts.image_size, facts.image_size, facts.frames)
    try:
        info = probe_video(data, name, max_pixels=None)
        if info.width * info.height > limits.max_pixels:
            raise RequestError(413, f"{name}: {info.width}x{info.height} frames, more than the limit of "
                                    f"{limits.max_pixels / 1e6:g} megapixels per frame", name)
    except VideoError:
        pass  # not a video container: perhaps an image (a one-frame video), tried next
    try:
        clip = load_model_clip(data, spec, max_frames=limits.max_frames, name=name, max_pixels=limits.max_pixels)
    except ClipTooLarge as e:
        raise RequestError(413, f"{name}: {e}", name) from None
    except OSError as e:
        raise RequestError(415, f"{name}: not a readable video or image file ({e})", name) from None
    t = clip.frames
    k = None
    if num_tokens is not None:
        k = _int_field(num_tokens, "num_tokens", num_tokens_text)
        if facts.frame_tokens is not None:
            total = _grid_tokens(spec, t, facts)
            if k < 1 or k % facts.frame_tokens or k > total:
                raise RequestError(400, f"num_tokens must be whole latent frames: a multiple of {facts.frame_tokens} "
                                        f"up to {total} for this {t}-frame clip, got {k}", "num_tokens")
        elif not 1 <= k <= facts.max_tokens:
            raise RequestError(400, f"num_tokens must be in 1..{facts.max_tokens}, got {k}", "num_tokens")
    pixels = to_uint8(clip.video).permute(1, 2, 3, 0).numpy()  # (T, S, S, 3): exact, the clip came from uint8
    source = {"width": clip.size[0], "height": clip.size[1], "kind": clip.kind, "frames": t, "fps": clip.fps,
              "source_frames": clip.source_frames, "resized": min(clip.size) != facts.image_size,
              "cropped": clip.size[0] != clip.size[1], "size": [facts.image_size, facts.image_size]}
    return {"pixels": base64.b64encode(pixels.tobytes()).decode(), "frames": t, "num_tokens": k,
            "target_psnr": None, "source": source}


def _grid_tokens(spec: Any, frames: int, facts: ModelFacts) -> int:
    """Tokens of a grid model's clip of `frames` frames: latent frames (1 + (T - 1) / temporal patch) x h*w."""
    start_step = spec.frames.split("+")
    step = int(start_step[1].rstrip("k")) if len(start_step) > 1 else 0
    latent = 1 + (frames - 1) // step if step else facts.token_grid[0]
    return latent * facts.frame_tokens


# --- encode job -----------------------------------------------------------------------------------------------

def encode_job(image: bytes, num_tokens: Any, target_psnr: Any, facts: ModelFacts, limits: Limits,
               num_tokens_text: bool = False, target_psnr_text: bool = False) -> dict[str, Any]:
    """Validate the token budget and the image; returns the canonical encode job (a dict for `EncodeJob`)."""
    if num_tokens is not None and target_psnr is not None:
        raise RequestError(400, "give num_tokens or target_psnr, not both", "target_psnr")
    k = None
    if target_psnr is None:
        k = facts.max_tokens if num_tokens is None else _int_field(num_tokens, "num_tokens", num_tokens_text)
        if not 1 <= k <= facts.max_tokens:
            raise RequestError(400, f"num_tokens must be in 1..{facts.max_tokens}, got {k}", "num_tokens")
    psnr = None
    if target_psnr is not None:
        psnr = _float_field(target_psnr, "target_psnr", target_psnr_text)
        if psnr <= 0:
            raise RequestError(400, f"target_psnr must be > 0 dB, got {psnr:g}", "target_psnr")
    pixels, source = image_pixels(image, facts.image_size, limits.max_pixels)
    return {"pixels": base64.b64encode(pixels.tobytes()).decode(), "num_tokens": k, "target_psnr": psnr,
            "source": source}


def image_pixels(data: bytes, size: int, max_pixels: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Encoded image bytes -> uint8 (size, size, 3), resized and centre-cropped as `vistok.load_images` does.
    The pixel count is read from the header and checked before anything is decoded."""
    from PIL import Image

    from vistok.data.images import resize_crop, to_rgb  # the same preparation as the CLI and load_images

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            raise RequestError(413, f"image: {e}", "image") from None
        except Exception:
            raise RequestError(415, "image: not a readable image file (PNG, JPEG, WebP, BMP, GIF, TIFF ...)",
                               "image") from None
        with img:
            w, h = img.size
            if w * h > max_pixels:
                raise RequestError(413, f"image: {w}x{h} = {w * h / 1e6:.1f} megapixels, more than the limit of "
                                        f"{max_pixels / 1e6:g} megapixels", "image")
            if w < 1 or h < 1:
                raise RequestError(415, f"image: empty ({w}x{h})", "image")
            mode = img.mode
            try:
                img.load()
                rgb = to_rgb(img)
            except Exception as e:
                raise RequestError(415, f"image: damaged or truncated {img.format or ''} file ({e})".replace("  ", " "),
                                   "image") from None
    out = resize_crop(rgb, size)
    source = {"width": w, "height": h, "mode": mode, "resized": min(w, h) != size, "cropped": w != h,
              "size": [size, size]}
    return np.asarray(out, dtype=np.uint8).copy(), source


# --- decode ---------------------------------------------------------------------------------------------------

DECODE_FIELDS = {"tokens", "steps", "guidance_scale", "seed", "format"}
VIDEO_DECODE_FIELDS = {"tokens", "format", "fps"}


def video_decode_job(data: dict[str, Any], facts: ModelFacts, limits: Limits, want_json: bool) -> dict[str, Any]:
    """A video model's decode request: {"tokens": [ids] (whole latent frames of a grid model; 1..N of a 1D
    one), "format": "mp4" | "base64" | "png", "fps"}."""
    from vistok.input_spec import InputSpec

    _unknown(data, VIDEO_DECODE_FIELDS)
    tokens = data.get("tokens")
    if not isinstance(tokens, list) or not tokens:
        raise RequestError(400, "tokens must be a non-empty list of token ids", "tokens")
    if facts.frame_tokens is not None:
        spec = InputSpec(facts.channels, facts.image_size, facts.image_size, facts.frames)
        most = _grid_tokens(spec, max(spec.frame_counts(limits.max_frames) or [1]), facts)
        if len(tokens) % facts.frame_tokens or len(tokens) > most:
            raise RequestError(400, f"tokens: a clip is whole latent frames of {facts.frame_tokens} ids (up to {most}),"
                                    f" got {len(tokens)}", "tokens")
    elif len(tokens) > facts.max_tokens:
        raise RequestError(400, f"tokens: this model decodes 1..{facts.max_tokens} tokens, got {len(tokens)}", "tokens")
    for i, t in enumerate(tokens):
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < facts.codebook_size:
            raise RequestError(400, f"tokens[{i}] = {t!r} is not an id of the codebook 0..{facts.codebook_size - 1}",
                               "tokens")
    fmt = data.get("format", "base64" if want_json else "mp4")
    if fmt not in ("mp4", "base64", "png"):
        raise RequestError(400, f"format must be 'mp4', 'base64' or 'png', got {fmt!r}", "format")
    fps = 8.0 if data.get("fps") is None else _float_field(data["fps"], "fps", False)
    if not MIN_FPS <= fps <= MAX_FPS:
        raise RequestError(400, f"fps must be in [{MIN_FPS:g}, {MAX_FPS:g}] frames per second, got {fps:g}", "fps")
    return {"tokens": tokens, "format": fmt, "fps": fps}


def decode_job(data: dict[str, Any], facts: ModelFacts, limits: Limits, want_json: bool = False) -> dict[str, Any]:
    """Validate a decode request (a JSON object); returns the canonical decode job (a dict for `DecodeJob`)."""
    if facts.video:
        return video_decode_job(data, facts, limits, want_json)
    _unknown(data, DECODE_FIELDS)
    if "tokens" not in data:
        raise RequestError(400, "missing field 'tokens' (a list of token ids)", "tokens")
    tokens = data["tokens"]
    if not isinstance(tokens, list):
        raise RequestError(400, f"tokens must be a list of integers, got {type(tokens).__name__}", "tokens")
    if not 1 <= len(tokens) <= facts.max_tokens:
        raise RequestError(400, f"tokens: this model decodes 1..{facts.max_tokens} tokens, got {len(tokens)}", "tokens")
    for i, t in enumerate(tokens):
        if isinstance(t, bool) or not isinstance(t, int):
            raise RequestError(400, f"tokens[{i}] must be an integer, got {type(t).__name__} {t!r}", "tokens")
        if not 0 <= t < facts.codebook_size:
            raise RequestError(400, f"tokens[{i}] = {t} is outside the codebook 0..{facts.codebook_size - 1}",
                               "tokens")
    steps = data.get("steps")
    if steps is not None:
        steps = _int_field(steps, "steps", False)
        if not 1 <= steps <= limits.max_steps:
            raise RequestError(400, f"steps must be in 1..{limits.max_steps}, got {steps}", "steps")
    guidance = data.get("guidance_scale")
    if guidance is not None:
        guidance = _float_field(guidance, "guidance_scale", False)
        if abs(guidance) > limits.max_guidance:
            raise RequestError(400, f"guidance_scale must be within +-{limits.max_guidance:g}, got {guidance:g}",
                               "guidance_scale")
    seed = data.get("seed")
    if seed is not None:
        seed = _int_field(seed, "seed", False)
        if not 0 <= seed <= MAX_SEED:
            raise RequestError(400, f"seed must be in 0..2**63-1, got {seed}", "seed")
    fmt = data.get("format", "base64" if want_json else "png")
    if fmt not in ("png", "base64"):
        raise RequestError(400, f"format must be 'png' or 'base64', got {fmt!r}", "format")
    if facts.decoder == "pixel":  # a pixel decoder ignores sampler arguments: all its requests share a batch
        steps = guidance = seed = None
    else:  # the decoder's defaults made explicit, so that equal samplers group into one batch
        steps = facts.default_steps if steps is None else steps
        guidance = 1.0 if guidance is None else guidance
        seed = 0 if seed is None else seed
    return {"tokens": tokens, "steps": steps, "guidance_scale": guidance, "seed": seed, "format": fmt}
