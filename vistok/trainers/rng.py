"""The random state of a training run, so that a resumed run draws exactly what an uninterrupted one would.

Model code draws its training randomness (token-dropout lengths; rectified-flow noise, sigma and condition
dropout) from a `generator` attribute of the module that draws (None: torch's global RNG). `TrainingRNG` gives
every such module its own generator, seeded from (torch's initial seed, rank, module name), on the device of the
module's parameters (the CPU for a module without any); their states, and the global torch / numpy / python
states as a catch-all for library code (e.g. k-means initialisation of a VQ codebook), go into each checkpoint,
per rank, and are put back when a run resumes. Validation draws from fresh generators with a fixed seed, so a
validation loss is the same noise every time and validating (or a resume skipping a validation) never moves
the training draws.

Besides the model (the tokenizer, whose modules keep their own names, so that older checkpoints resume), a
`TrainingRNG` covers other named models (the discriminators: `others={"discriminator": d}`), whose modules are
named `"discriminator.<name>"`, as in the training system, and other random modules of the training system (its
multi-resolution draw, `vistok.trainers.multiresolution`: `"system.multiresolution"`).
"""

from __future__ import annotations

import random
import zlib
from typing import Any

import numpy as np
import torch
from torch import nn

VALIDATION_SEED = 1234


def random_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The submodules that draw from a `generator` attribute, by name."""
    return {name: m for name, m in model.named_modules() if hasattr(m, "generator")}


def _device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _generator(module: nn.Module, seed: int) -> torch.Generator:
    device = _device(module)
    return torch.Generator(device=device).manual_seed(seed)


def _numpy_state() -> tuple:
    """numpy's global state as tensors and plain values (checkpoints load with torch.load(weights_only=True))."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)


class TrainingRNG:
    def __init__(self, model: nn.Module, others: dict[str, nn.Module | None] | None = None) -> None:
        self.model = model
        self.others = {k: m for k, m in (others or {}).items() if m is not None}
        self._saved: dict[str, torch.Generator | None] | None = None

    def modules(self) -> dict[str, nn.Module]:
        """The random modules of the model (by their names in it), then those of the others (prefixed)."""
        out = random_modules(self.model)
        for prefix, other in self.others.items():
            for name, m in random_modules(other).items():
                key = f"{prefix}.{name}" if name else prefix
                if key in out:  # would share a generator state in the checkpoint
                    raise ValueError(f"TrainingRNG: the random module {key!r} of {prefix} has the name of one of "
                                     "the model's")
                out[key] = m
        return out

    def seed(self, base: int, rank: int = 0) -> None:
        """Give every random module a generator seeded from (base, rank, its name)."""
        for name, m in self.modules().items():
            m.generator = _generator(m, (base * 1_000_003 + rank * 7919 + zlib.crc32(name.encode())) % 2**63)

    def state(self) -> dict[str, Any]:
        """This process's generator states and global RNG states (CPU tensors and plain objects)."""
        # During validation (a checkpoint saved at its end) the training generators are the swapped-out ones.
        gens = self._saved
        if gens is None:
            gens = {n: m.generator for n, m in self.modules().items()}
        out: dict[str, Any] = {
            "generators": {n: g.get_state() for n, g in gens.items() if g is not None},
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state(),
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out["cuda"] = torch.cuda.get_rng_state_all()
        return out

    def load(self, state: dict[str, Any]) -> None:
        """Put back what `state` returned (generators that exist on both sides; global states)."""
        modules = self.modules()
        for name, s in state.get("generators", {}).items():
            m = modules.get(name)
            if m is None:
                continue
            if m.generator is None:
                m.generator = _generator(m, 0)
            m.generator.set_state(s)
        torch.set_rng_state(state["torch"])
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    def enter_validation(self) -> None:
        """Swap in fixed-seed generators (same names); `leave_validation` puts the training ones back."""
        if self._saved is None:
            modules = self.modules()
            self._saved = {n: m.generator for n, m in modules.items()}
            for i, m in enumerate(modules.values()):
                m.generator = _generator(m, VALIDATION_SEED + i)

    def leave_validation(self) -> None:
        if self._saved is not None:
            for name, m in self.modules().items():
                m.generator = self._saved.get(name)
            self._saved = None
