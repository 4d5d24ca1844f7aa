"""Stop a training run at the first NaN or infinite loss, and never write a checkpoint with such weights.

A non-finite loss poisons the weights at the next optimizer step and every checkpoint after it; training on
would only waste the run. `check_losses` is called before any backward of the step, so the weights in memory
(and `last.ckpt`) are still the last good ones when it raises; `check_weights` is the last line of defence at
checkpoint time (a finite loss can still come with an infinite gradient). Both raise a `ValueError` subclass,
which `vistok fit` prints as one line.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


class NonFiniteError(ValueError):
    pass


def check_losses(terms: Mapping[str, torch.Tensor], step: int, last_good: str | None = None) -> None:
    """Raise `NonFiniteError` naming the step and the first non-finite term. One device sync for all terms."""
    if not terms:
        return
    values = torch.stack([t.detach().float().reshape(()) for t in terms.values()])
    if bool(torch.isfinite(values).all()):
        return
    name, value = next((n, float(v)) for n, v in zip(terms, values.tolist()) if not torch.isfinite(torch.tensor(v)))
    where = f"; the last good checkpoint is {last_good}" if last_good else "; no checkpoint was written with it"
    raise NonFiniteError(f"training stopped at step {step}: the {name!r} loss is {value} (non-finite), before any "
                         f"weight was updated with it{where}. Lower the learning rate, check the data, or resume "
                         "from that checkpoint")


def check_weights(state: Mapping[str, torch.Tensor], step: int, what: str = "checkpoint") -> None:
    """Raise `NonFiniteError` naming the first floating tensor of `state` that holds NaN or inf."""
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            raise NonFiniteError(f"training stopped at step {step}: weight {name!r} holds NaN or infinite values; "
                                 f"the {what} was not written (the previous one is kept)")
