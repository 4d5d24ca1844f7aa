"""What a multi-process run must switch on once the process group exists, and which parameters a step leaves
idle.

Model code is built before Lightning starts the processes, so anything decided at construction from
`torch.distributed` (vector-quantize-pytorch's codebook all-reduce) sees a single process. The training system
calls `sync_quantizers` from its `setup` hook, where the group exists, and again with `False` in `teardown`.

DDP registers every parameter that requires a gradient when it wraps the model and, unless told to look for
unused ones (a second pass over the autograd graph on every step), fails at the next step when one got no
gradient. So a parameter that no step can reach must stop requiring a gradient *before* the wrap (the
LightningModule's `setup`, or its constructor): frozen weights (`lr_scales` 0) and the later-frame weights of
a video tokenizer trained on images only (`video_only_parameters`). Only a model whose steps differ in the
parts they reach (adversarial steps; joint image + video batches) needs `allow_partial_backward`.
"""

from __future__ import annotations

from torch import nn


def sync_quantizers(module: nn.Module, enabled: bool) -> int:
    """Call `set_distributed(enabled)` on every submodule that has it (VQ codebooks with EMA statistics; FSQ's
    input norm, whose batch statistics then cover the global batch); returns how many now all-reduce. LFQ has
    no learned state to keep in sync and defines nothing."""
    return sum(bool(m.set_distributed(enabled)) for m in module.modules() if hasattr(m, "set_distributed"))


def freeze_zero_lr(module: nn.Module, lr_scales: dict[str, float] | None) -> int:
    """Stop the gradient of every parameter whose name contains an `lr_scales` fragment mapped to 0 (the
    first matching fragment decides, as in `TokenizerSystem.configure_optimizers`); returns how many. Done
    when the system is built: Lightning wraps the model in DDP before it asks for the optimizers, and a
    parameter frozen after the wrap is one DDP still waits a gradient for."""
    n = 0
    for name, p in module.named_parameters():
        if next((v for k, v in (lr_scales or {}).items() if k in name), 1.0) == 0:
            p.requires_grad_(False)
            n += 1
    return n


def video_only_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters that only clips reach (the later-frame patch embeddings, heads and linear paths of the
    grid video tokenizers, `vistok.nn.patch3d`): a one-frame image never touches them."""
    return [p for m in module.modules() if hasattr(m, "video_only_parameters") for p in m.video_only_parameters()]


def allow_partial_backward(trainer, why: str = "a discriminator") -> bool:
    """Switch a plain `ddp` strategy to look for unused parameters, for a model whose steps reach different
    parts of it. An adversarial step runs two backward passes per batch, each through only part of the model
    (the generator's loss leaves the discriminator idle before its start step; the discriminator's loss sees
    detached reconstructions), and Lightning prepares DDP's reducer before each manual backward, which works
    only in that mode; joint image + video training alternates batches that do and do not reach the
    later-frame weights. Called in the LightningModule's `setup`, before the strategy wraps the model; `why`
    names the reason in the error for a `static_graph` strategy. Returns True when it changed the strategy."""
    from lightning.pytorch.strategies import DDPStrategy

    strategy = trainer.strategy
    if not isinstance(strategy, DDPStrategy):
        return False
    kwargs = strategy._ddp_kwargs  # the DistributedDataParallel arguments, read when the model is wrapped
    if kwargs.get("find_unused_parameters") or kwargs.get("static_graph"):
        if kwargs.get("static_graph"):
            raise ValueError(f"{why} under DDP needs find_unused_parameters=True, not static_graph: use "
                             "--trainer.strategy ddp_find_unused_parameters_true")
        return False
    kwargs["find_unused_parameters"] = True
    return True
