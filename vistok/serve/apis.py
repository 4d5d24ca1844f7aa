"""The two litserve APIs, run in the inference workers: batches of already-validated jobs (see `gate.py`).

`EncodeAPI` encodes a batch of images once and gives each request its own prefix (requests with a token count)
or runs `encode_adaptive` per target (requests with a target PSNR). `DecodeAPI` groups a batch by sampler
arguments (steps, guidance_scale, seed) and decodes each group in one call, ragged token lengths included
(`Tokenizer.decode` takes a list of 1-D tensors). With `max_batch_size=1` (batching off) litserve passes one job
instead of a list; both APIs take either.

No `from __future__ import annotations` here: litserve reads `decode_request`'s annotation as the endpoint's
request type, which must be the class itself, not a string.
"""

import base64
import io
import math
import os
from collections import defaultdict
from typing import Any

import litserve as ls
from fastapi import Response
from fastapi.responses import JSONResponse

from vistok.serve.facts import ModelFacts
from vistok.serve.requests import DecodeJob, EncodeJob

BATCH_HEADER = "X-Vistok-Batch-Size"  # how many requests the worker ran together with this one (itself included)


def _finite(x: float) -> float | None:
    """JSON has no infinity (a perfect reconstruction has an infinite PSNR)."""
    return x if math.isfinite(x) else None


class _TokenizerAPI(ls.LitAPI):
    def __init__(self, model: str, facts: ModelFacts, threads: int, max_batch_size: int, batch_timeout: float,
                 api_path: str) -> None:
        from vistok.serve.batching import QueueDelayBatchedLoop

        # batching on: our gathering (a busy worker starts at once; see batching.py); off: litserve's single loop
        loop = QueueDelayBatchedLoop() if max_batch_size > 1 else "auto"
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path=api_path, loop=loop)
        self.model, self.facts, self.threads = model, facts, threads
        self.parent_pid = os.getpid()  # the process that starts the workers; a worker dies with it

    def setup(self, device: str) -> None:
        import torch

        from vistok.serve.lifecycle import die_with_parent

        if os.getpid() != self.parent_pid:  # a worker process (not a test calling setup in its own process)
            die_with_parent(self.parent_pid)

        torch.set_num_threads(self.threads)  # workers must not oversubscribe the cores
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set in this process
            pass
        from vistok.tokenizers.tokenizer import Tokenizer

        self.tok = Tokenizer.from_pretrained(self.model, map_location=device).eval()

    def batch(self, inputs: list[Any]) -> list[Any]:
        return list(inputs)

    def unbatch(self, outputs: list[Any]) -> list[Any]:
        return list(outputs)

    def predict(self, x: Any) -> Any:
        if isinstance(x, list):
            return self.predict_batch(x)
        return self.predict_batch([x])[0]

    def predict_batch(self, jobs: list[Any]) -> list[Any]:
        raise NotImplementedError


class EncodeAPI(_TokenizerAPI):
    def __init__(self, model: str, facts: ModelFacts, threads: int = 1, max_batch_size: int = 16,
                 batch_timeout: float = 0.0) -> None:
        super().__init__(model, facts, threads, max_batch_size, batch_timeout, "/v1/encode")

    def decode_request(self, request: EncodeJob) -> EncodeJob:
        return request

    def predict_batch(self, jobs: list[EncodeJob]) -> list[dict[str, Any]]:
        import numpy as np
        import torch

        from vistok.data.images import pil_to_tensor  # the one uint8 -> [-1, 1] conversion

        s = self.facts.image_size
        if self.facts.video:
            return self._encode_videos(jobs)
        images = torch.stack([pil_to_tensor(np.frombuffer(base64.b64decode(j.pixels), dtype=np.uint8).reshape(s, s, 3))
                              for j in jobs]).to(self.tok.device)  # (B, 3, S, S)
        out: list[dict[str, Any] | None] = [None] * len(jobs)
        fixed = [i for i, j in enumerate(jobs) if j.target_psnr is None]
        if fixed:
            ids = self.tok.encode(images[fixed]).cpu()  # (b, N): a prefix of all N is the K-token encoding
            for row, i in enumerate(fixed):
                out[i] = {"tokens": ids[row, : jobs[i].num_tokens].tolist()}
        targets: dict[float, list[int]] = defaultdict(list)
        for i, j in enumerate(jobs):
            if j.target_psnr is not None:
                targets[j.target_psnr].append(i)
        for psnr, idx in targets.items():
            adaptive = self.tok.encode_adaptive(images[idx], psnr)
            for row, i in enumerate(idx):
                out[i] = {"tokens": adaptive[row].cpu().tolist(), "target_psnr": psnr,
                          "psnr": _finite(float(adaptive.psnr[row])), "reached": not bool(adaptive.unreachable[row])}
        for o, j in zip(out, jobs):
            o["source"] = j.source
        return [(o, len(jobs)) for o in out]

    def _encode_videos(self, jobs: list[EncodeJob]) -> list[tuple[dict[str, Any], int]]:
        """A video model: each clip encoded on its own (clip lengths differ); tokens flat, time-major, with their
        grid ((T', h, w) for a grid model, (K,) for a 1D one)."""
        import numpy as np
        import torch

        from vistok.data.images import pil_to_tensor

        s, out = self.facts.image_size, []
        for j in jobs:
            frames = np.frombuffer(base64.b64decode(j.pixels), dtype=np.uint8).reshape(j.frames, s, s, 3)
            clip = torch.stack([pil_to_tensor(f) for f in frames], dim=1)[None].to(self.tok.device)  # (1,3,T,S,S)
            ids = self.tok.encode(clip, num_tokens=j.num_tokens)[0].cpu()
            grid = ([ids.numel() // self.facts.frame_tokens, *self.facts.token_grid[1:]]
                    if self.facts.frame_tokens else [ids.numel()])
            out.append(({"tokens": ids.tolist(), "token_grid": grid, "source": j.source}, len(jobs)))
        return out

    def encode_response(self, output: tuple[dict[str, Any], int]) -> Response:
        out, batch = output
        k, f = len(out["tokens"]), self.facts
        body = {**out, "num_tokens": k, "codebook_size": f.codebook_size, "vocab_size": f.vocab_size,
                "bytes": f.token_bytes(k), "resized": bool(out["source"]["resized"] or out["source"]["cropped"])}
        return JSONResponse(body, headers={BATCH_HEADER: str(batch)})


class DecodeAPI(_TokenizerAPI):
    def __init__(self, model: str, facts: ModelFacts, threads: int = 1, max_batch_size: int = 16,
                 batch_timeout: float = 0.0) -> None:
        super().__init__(model, facts, threads, max_batch_size, batch_timeout, "/v1/decode")

    def decode_request(self, request: DecodeJob) -> DecodeJob:
        return request

    def predict_batch(self, jobs: list[DecodeJob]) -> list[tuple[bytes, DecodeJob, int]]:
        import torch
        from PIL import Image

        from vistok.data.images import tensor_to_uint8

        if self.facts.video:
            return [(self._decode_video(j), j, len(jobs)) for j in jobs]
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, j in enumerate(jobs):
            groups[(j.steps, j.guidance_scale, j.seed)].append(i)
        out: list[Any] = [None] * len(jobs)
        for (steps, guidance, seed), idx in groups.items():
            seqs = [torch.tensor(jobs[i].tokens, dtype=torch.long) for i in idx]  # ragged: one 1-D tensor each
            images = self.tok.decode(seqs, steps=steps, guidance_scale=guidance, seed=seed)  # (b, 3, H, W)
            for row, i in enumerate(idx):
                buf = io.BytesIO()
                Image.fromarray(tensor_to_uint8(images[row])).save(buf, format="PNG")
                out[i] = (buf.getvalue(), jobs[i], len(jobs))
        return out

    def _decode_video(self, job: DecodeJob) -> bytes:
        """One clip's tokens -> an H.264 mp4 (at `job.fps`), or a PNG of its frames side by side ("png")."""
        import tempfile
        from pathlib import Path

        import torch
        from PIL import Image

        from vistok.data.images import to_uint8
        from vistok.data.video_io import write_video

        ids = torch.tensor(job.tokens, dtype=torch.long)[None]
        video = to_uint8(self.tok.decode(ids)[0]).permute(1, 2, 3, 0).cpu().numpy()  # (T, H, W, 3)
        if job.format == "png":  # the frames in a row
            buf = io.BytesIO()
            Image.fromarray(video.transpose(1, 0, 2, 3).reshape(video.shape[1], -1, 3)).save(buf, format="PNG")
            return buf.getvalue()
        with tempfile.TemporaryDirectory() as d:
            return write_video(Path(d) / "clip.mp4", video, fps=job.fps).read_bytes()

    def encode_response(self, output: tuple[bytes, DecodeJob, int]) -> Response:
        png, job, batch = output
        headers = {BATCH_HEADER: str(batch), "X-Num-Tokens": str(len(job.tokens))}
        if self.facts.video:
            media = "image/png" if job.format == "png" else "video/mp4"
            if job.format == "base64":
                return JSONResponse({"video": base64.b64encode(png).decode(), "media_type": media,
                                     "num_tokens": len(job.tokens), "fps": job.fps}, headers=headers)
            return Response(content=png, media_type=media, headers=headers)
        if job.format == "base64":
            body = {"image": base64.b64encode(png).decode(), "media_type": "image/png",
                    "num_tokens": len(job.tokens), "steps": job.steps, "guidance_scale": job.guidance_scale,
                    "seed": job.seed}
            return JSONResponse(body, headers=headers)
        return Response(content=png, media_type="image/png", headers=headers)
