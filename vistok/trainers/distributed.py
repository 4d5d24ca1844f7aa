"""What a multi-process run must switch on once the process group exists.

Model code is built before Lightning starts the processes, so anything decided at construction from
`torch.distributed` (vector-quantize-pytorch's codebook all-reduce) sees a single process. The training system
calls `sync_quantizers` from its `setup` hook, where the group exists, and again with `False` in `teardown`.
"""

from __future__ import annotations

from torch import nn


def sync_quantizers(module: nn.Module, enabled: bool) -> int:
    """Call `set_distributed(enabled)` on every submodule that has it (VQ codebooks with EMA statistics);
    returns how many now all-reduce. FSQ/LFQ have no learned state to keep in sync and define nothing."""
    return sum(bool(m.set_distributed(enabled)) for m in module.modules() if hasattr(m, "set_distributed"))


def allow_partial_backward(trainer) -> bool:
    """An adversarial step runs two backward passes per batch, each through only part of the model (the
    generator's loss leaves the discriminator idle before its start step; the discriminator's loss sees
    detached reconstructions). Lightning prepares DDP's reducer before each manual backward, which works only
    when DDP looks for unused parameters, so a plain `ddp` strategy is switched to that mode here: in the
    LightningModule's `setup`, before the strategy wraps the model. Returns True when it changed the strategy."""
    from lightning.pytorch.strategies import DDPStrategy

    strategy = trainer.strategy
    if not isinstance(strategy, DDPStrategy):
        return False
    kwargs = strategy._ddp_kwargs  # the DistributedDataParallel arguments, read when the model is wrapped
    if kwargs.get("find_unused_parameters") or kwargs.get("static_graph"):
        if kwargs.get("static_graph"):
            raise ValueError("a discriminator under DDP needs find_unused_parameters=True, not static_graph: use "
                             "--trainer.strategy ddp_find_unused_parameters_true")
        return False
    kwargs["find_unused_parameters"] = True
    return True
