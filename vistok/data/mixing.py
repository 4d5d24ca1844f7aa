"""Image and video batches in turn (OmniTokenizer's joint stage): `MixedBatches` and its resume arithmetic."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def mix_position(batches: int, video_batches: int, image_batches: int) -> tuple[int, int]:
    """(video batches, image batches) among the first `batches` batches of the mixed stream."""
    cycle = video_batches + image_batches
    full, rest = divmod(batches, cycle)
    return full * video_batches + min(rest, video_batches), full * image_batches + max(0, rest - video_batches)


class _Samplers:
    """Forwards Lightning's `set_epoch` to every sampler of a `MixedBatches`."""

    def __init__(self, samplers: list) -> None:
        self.samplers = samplers

    def set_epoch(self, epoch: int) -> None:
        for s in self.samplers:
            s.set_epoch(epoch)


class MixedBatches:
    """`video_batches` batches of `videos`, then `image_batches` of `images`, repeated; `start` skips the
    first mixed batches (their loaders must already skip what those consumed: `mix_position`). Its length
    is the number of whole patterns both loaders can fill (unknown when either is an iterable source)."""

    def __init__(self, videos, images, video_batches: int = 1, image_batches: int = 1, start: int = 0) -> None:
        self.videos, self.images = videos, images
        self.video_batches, self.image_batches, self.start = video_batches, image_batches, start
        self.sampler = _Samplers([s for s in (getattr(videos, "sampler", None), getattr(images, "sampler", None))
                                  if callable(getattr(s, "set_epoch", None))])

    def __len__(self) -> int:
        cycles = min(len(self.videos) // self.video_batches, len(self.images) // self.image_batches)
        return cycles * (self.video_batches + self.image_batches)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        start, self.start = self.start, 0  # a resume offset applies to one pass only
        videos, images = iter(self.videos), iter(self.images)
        cycle = self.video_batches + self.image_batches
        try:
            end = len(self)
        except TypeError:  # an iterable source: until one runs out
            end = None
        n = start
        while end is None or n < end:
            try:
                yield next(videos) if n % cycle < self.video_batches else next(images)
            except StopIteration:
                return
            n += 1
