"""Where vistok runs: the one `--device` rule of every command (eval, encode, ladder, decode, reconstruct), and
whether this is one of several processes.

"auto" (the default) is CUDA when available, else the CPU; under torchrun, "auto" and "cuda" mean the rank's own
GPU (`cuda:$LOCAL_RANK`). Anything else must be a device torch knows and this machine has.
"""

from __future__ import annotations

import os

AUTO = "auto"
HELP = "cpu, cuda, cuda:1 ... (default auto: cuda when available, else cpu)"


def resolve_device(device: str | None = AUTO) -> str:
    """'auto' / None / a device name -> a concrete device string; a ValueError names a bad or absent device."""
    import torch

    name = AUTO if device is None else str(device).strip()
    if name == AUTO:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"--device {device!r} is not a device ({e}); {HELP}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available on this machine")
        if dev.index is None and "LOCAL_RANK" in os.environ:  # torchrun: one GPU per rank
            return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return name


def is_multiprocess() -> bool:
    """One of several processes of a torch.distributed group (DDP, FSDP, torchrun)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
