"""Hand a PNG the run wrote (a reconstruction grid) to the loggers that show images: Weights & Biases and
TensorBoard. CSV and other loggers have no image channel; the PNG on disk is the record for them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def log_image(loggers: Iterable[Any], key: str, path: str | Path, step: int) -> list[str]:
    """Log the image file at `path` under `key` to every image-capable logger; returns their class names."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    done = []
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(path)], step=step)
        elif isinstance(logger, TensorBoardLogger):
            with Image.open(path) as im:
                pixels = np.asarray(im.convert("RGB"))  # (H, W, 3) uint8
            logger.experiment.add_image(key, pixels, global_step=step, dataformats="HWC")
        else:
            continue
        done.append(type(logger).__name__)
    return done
