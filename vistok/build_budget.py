"""A memory budget for building a model from an untrusted config, checked before each tensor is allocated.

An export's config.json decides how large the model is; its weights file only says so later. A config asking
for an encoder of width 20,000 (or a codebook of 10**9 codes) made the loader allocate and initialise gigabytes
before the weights were ever compared with it, and the system's OOM killer ended the process. `BuildBudget` is a
torch function mode active while the model is built: every tensor factory call (`torch.empty`, `zeros`, `randn`,
`arange`, ... : what `torch.device(...)` as a context intercepts) states its size before allocating, and the
running total may not exceed the budget; the loader sets it from the weights' own sizes, read from the safetensors
header without loading them (`weights_budget`). A negative or absurd size is refused the same way.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from vistok.configurable import BudgetExceeded

SLACK_BYTES = 64 << 20  # beyond the weights: non-persistent buffers (masks, position tables) and temporaries
WEIGHTS_FACTOR = 2  # building allocated 1.00-1.03x the weights' fp32 bytes for every registered variant


def weights_budget(weight_elements: int) -> int:
    """The bytes a model may allocate while it is built, given how many numbers its weights hold (counted as fp32:
    a half-precision file builds an fp32 model)."""
    return WEIGHTS_FACTOR * 4 * weight_elements + SLACK_BYTES


def _factories() -> set[Any]:
    from torch.utils._device import _device_constructors

    return set(_device_constructors())


def _numel(func: Any, args: tuple, kwargs: dict) -> int | None:
    """Elements a factory call asks for, from its arguments; None when they do not say (e.g. `torch.tensor(data)`,
    whose data is already in memory)."""
    name = getattr(func, "__name__", "")
    if name in ("arange", "range"):
        nums = [a for a in args if isinstance(a, (int, float))]
        if not nums:
            return None
        start, end = (0, nums[0]) if len(nums) == 1 else (nums[0], nums[1])
        step = nums[2] if len(nums) > 2 else kwargs.get("step", 1) or 1
        return max(0, math.ceil((end - start) / step))
    if name in ("linspace", "logspace"):
        steps = args[2] if len(args) > 2 else kwargs.get("steps")
        return steps if isinstance(steps, int) else None
    if name in ("eye",):
        n = args[0] if args else kwargs.get("n")
        m = args[1] if len(args) > 1 and isinstance(args[1], int) else n
        return n * m if isinstance(n, int) and isinstance(m, int) else None
    if name in ("tensor", "as_tensor", "asarray", "scalar_tensor", "from_file", "frombuffer", "sparse_coo_tensor",
                "sparse_csr_tensor", "sparse_compressed_tensor", "sparse_bsr_tensor", "sparse_bsc_tensor",
                "sparse_csc_tensor"):
        return None
    size = kwargs.get("size", args[0] if args else None)
    if isinstance(size, (list, tuple, torch.Size)):
        dims = list(size)
    elif isinstance(size, int):
        dims = [a for a in args if isinstance(a, int)] if "size" not in kwargs else [size]
        if name in ("full", "randint") and len(dims) > 1:  # full(size, fill); randint(low, high, size)
            return None
    else:
        return None
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        return None
    if any(d < 0 for d in dims):
        raise ValueError(f"a tensor of negative size {tuple(dims)}")
    return math.prod(dims)


class BuildBudget(TorchFunctionMode):
    """Refuse, with a `BudgetExceeded` (a ValueError) naming `where`, any tensor allocation that takes the total
    past `limit` bytes."""

    def __init__(self, limit: int, where: str) -> None:
        super().__init__()
        self.limit, self.where, self.used = limit, where, 0
        self.factories = _factories()

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in self.factories:
            try:
                numel = _numel(func, args, kwargs)
            except ValueError as e:
                raise BudgetExceeded(f"{self.where}: the config asks for {e}") from None
            if numel is not None:
                dtype = kwargs.get("dtype") or torch.get_default_dtype()
                nbytes = numel * (dtype.itemsize if isinstance(dtype, torch.dtype) else 8)
                if self.used + nbytes > self.limit:
                    raise BudgetExceeded(
                        f"{self.where}: the config asks for more memory than its weights justify (a tensor of "
                        f"{numel:,} elements would take the model past {self.limit / 2**20:,.0f} MiB while it is "
                        "built); the sizes in the config do not match the weights file")
                self.used += nbytes
        return func(*args, **kwargs)
