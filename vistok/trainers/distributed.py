"""What a multi-process run must switch on once the process group exists.

Model code is built before Lightning starts the processes, so anything decided at construction from
`torch.distributed` (vector-quantize-pytorch's codebook all-reduce) sees a single process. The training system
calls `sync_quantizers` from its `setup` hook, where the group exists, and again with `False` in `teardown`.
"""

from __future__ import annotations

import torch.distributed as dist
from torch import nn


def is_multiprocess() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def sync_quantizers(module: nn.Module, enabled: bool) -> int:
    """Call `set_distributed(enabled)` on every submodule that has it (VQ codebooks with EMA statistics);
    returns how many now all-reduce. FSQ/LFQ have no learned state to keep in sync and define nothing."""
    return sum(bool(m.set_distributed(enabled)) for m in module.modules() if hasattr(m, "set_distributed"))
