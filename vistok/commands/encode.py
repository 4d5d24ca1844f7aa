"""`vistok encode`: images or videos -> webdataset token shards with a manifest (`vistok.shards.writer`)."""

from __future__ import annotations

import os

from vistok.commands.args import (
    add_device,
    add_model,
    frame_rate,
    non_negative_int,
    parser,
    positive_float,
    positive_int,
)


def main(argv: list[str]) -> None:
    from vistok.data.images import MAX_PIXELS

    p = parser("vistok encode", "Encode images (or, with a video model, videos) into webdataset token shards with "
               "a manifest.json; rerun the same command to resume an interrupted job or repair damaged shards.")
    add_model(p)
    p.add_argument("--input", required=True, nargs="+",
                   help="image (or video: mp4/webm/gif/...) folder (recursive) or webdataset urls (brace patterns "
                        "allowed); a video model takes videos and images (one-frame videos)")
    p.add_argument("--output", required=True, help="directory for the shards and manifest.json")
    k = p.add_mutually_exclusive_group()
    k.add_argument("--num-tokens", type=positive_int, default=None, help="tokens per image (default: all)")
    k.add_argument("--target-psnr", type=positive_float, default=None,
                   help="shortest prefix reaching this PSNR (dB)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--shard-size", type=positive_int, default=1000, help="samples per output shard")
    p.add_argument("--workers", type=non_negative_int, default=2, help="DataLoader workers decoding images")
    add_device(p)
    p.add_argument("--strict", action="store_true", help="an unreadable input is fatal instead of skipped")
    p.add_argument("--max-pixels", type=non_negative_int, default=MAX_PIXELS,
                   help=f"skip images with more pixels, read from the header (default {MAX_PIXELS}; 0: no limit)")
    p.add_argument("--labels-from-folders", action="store_true",
                   help="label each image by its class subfolder (FOLDER/cat/x.png -> index of 'cat' among the "
                        "sorted subfolders); labels.json beside the shards maps names to indices")
    p.add_argument("--augment", choices=("none", "flip", "tencrop"), default="none",
                   help="also encode augmented views, each its own sample and key: flip (centre crop and its "
                        "mirror) or tencrop (corners and centre of a 1.1x crop, and their mirrors), as the "
                        "pretokenization scripts of LlamaGen and TiTok")
    p.add_argument("--fps", type=frame_rate, default=None,
                   help="video models: read videos at this frame rate (default: each file's own)")
    p.add_argument("--max-frames", type=positive_int, default=None,
                   help="video models: read at most this many frames of each video (default 129; each frame is "
                        "resized as it is decoded, so memory grows with frames x the model's size, not the file's)")
    p.add_argument("--chunk", type=positive_int, default=None,
                   help="grid video models: encode this many latent frames at a time (bounded memory, same ids)")
    p.add_argument("--format", choices=("packed", "per-sample"), default="packed", dest="shard_format",
                   help="packed (default): all samples of a shard in one member (token array, lengths, labels, "
                        "records), about the size of the tokens; per-sample: a tokens.npy and a json member per "
                        "sample (~4 KB each). `TokenDataset`, verify and decode read both")
    a = p.parse_args(argv)

    import torch.distributed as dist

    from vistok.devices import resolve_device
    from vistok.shards.writer import encode_to_shards

    device = resolve_device(a.device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():  # torchrun
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    summary = encode_to_shards(a.model, a.input, a.output, a.num_tokens, a.target_psnr, a.batch_size,
                               a.shard_size, a.workers, device, a.strict, max_pixels=a.max_pixels or None,
                               labels_from_folders=a.labels_from_folders, augment=a.augment, fps=a.fps,
                               max_frames=a.max_frames, chunk=a.chunk, shard_format=a.shard_format)
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(summary.line())
