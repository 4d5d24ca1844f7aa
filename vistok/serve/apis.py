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
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path=api_path)
        self.model, self.facts, self.threads = model, facts, threads

    def setup(self, device: str) -> None:
        import torch

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
                 batch_timeout: float = 0.01) -> None:
        super().__init__(model, facts, threads, max_batch_size, batch_timeout, "/v1/encode")

    def decode_request(self, request: EncodeJob) -> EncodeJob:
        return request

    def predict_batch(self, jobs: list[EncodeJob]) -> list[dict[str, Any]]:
        import numpy as np
        import torch

        from vistok.data.images import pil_to_tensor  # the one uint8 -> [-1, 1] conversion

        s = self.facts.image_size
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

    def encode_response(self, output: tuple[dict[str, Any], int]) -> Response:
        out, batch = output
        k, f = len(out["tokens"]), self.facts
        body = {**out, "num_tokens": k, "codebook_size": f.codebook_size, "vocab_size": f.vocab_size,
                "bytes": f.token_bytes(k), "resized": bool(out["source"]["resized"] or out["source"]["cropped"])}
        return JSONResponse(body, headers={BATCH_HEADER: str(batch)})


class DecodeAPI(_TokenizerAPI):
    def __init__(self, model: str, facts: ModelFacts, threads: int = 1, max_batch_size: int = 16,
                 batch_timeout: float = 0.01) -> None:
        super().__init__(model, facts, threads, max_batch_size, batch_timeout, "/v1/decode")

    def decode_request(self, request: DecodeJob) -> DecodeJob:
        return request

    def predict_batch(self, jobs: list[DecodeJob]) -> list[tuple[bytes, DecodeJob, int]]:
        import torch
        from PIL import Image

        from vistok.data.images import tensor_to_uint8

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

    def encode_response(self, output: tuple[bytes, DecodeJob, int]) -> Response:
        png, job, batch = output
        headers = {BATCH_HEADER: str(batch), "X-Num-Tokens": str(len(job.tokens))}
        if job.format == "base64":
            body = {"image": base64.b64encode(png).decode(), "media_type": "image/png",
                    "num_tokens": len(job.tokens), "steps": job.steps, "guidance_scale": job.guidance_scale,
                    "seed": job.seed}
            return JSONResponse(body, headers=headers)
        return Response(content=png, media_type="image/png", headers=headers)
