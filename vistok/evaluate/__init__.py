"""`vistok eval`: one entry for every model. `evaluate(EvalSettings(...))` measures an image model per token
count against JPEG and WebP (`vistok.evaluate.images`: rFID, PSNR, SSIM, LPIPS, codebook use) and a video model
on clips (`vistok.evaluate.videos`: per-frame PSNR / SSIM / LPIPS, flicker, rFVD); `summary(result)` is the table
either prints. Which one runs follows the model's input spec, read from its tokens.json (or the model itself).
"""

from __future__ import annotations

from typing import Any

from vistok.evaluate.settings import EvalSettings

__all__ = ["EvalSettings", "evaluate", "summary", "summary_table"]


def evaluate(settings: EvalSettings) -> dict[str, Any]:
    """Run the evaluation, write its files in `settings.output`, return what metrics.json (images) or
    video_metrics.json (videos) holds; the result's "kind" says which."""
    from pathlib import Path

    from vistok.evaluate.videos import is_video_model

    if Path(settings.model).exists() and is_video_model(settings.model):
        from vistok.evaluate.videos import evaluate_video

        return {**evaluate_video(settings), "kind": "video"}
    from vistok.evaluate.images import evaluate_images

    return {**evaluate_images(settings), "kind": "image"}


def summary(result: dict[str, Any], output: str) -> str:
    """What `vistok eval` prints: the table, then one line with the count, the time and the metrics file."""
    if result.get("kind") == "video":
        from vistok.evaluate.videos import video_summary

        return (f"{video_summary(result)}\n{result['clips']} clips in {result['wall_time_s']:.1f} s -> "
                f"{output}/video_metrics.json")
    from vistok.evaluate.images import summary_table

    return (f"{summary_table(result)}\n{result['num_images']} images in {result['wall_time_s']:.1f} s -> "
            f"{output}/metrics.json")


def summary_table(result: dict[str, Any]) -> str:
    """The per-token-count table of an image result (`vistok.evaluate.images.summary_table`)."""
    from vistok.evaluate.images import summary_table as table

    return table(result)
