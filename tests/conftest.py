import os

os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.heap import release_freed_memory  # noqa: E402
from vistok.data.sample import SamplePhotoCrops  # noqa: E402

# Tests that assert a learned quality take their seed from here; each was checked with VISTOK_TEST_SEED=0..4,
# since numerics (AVX2 vs AVX-512, bf16 or not) differ between the machines that run them.
SEED = int(os.environ.get("VISTOK_TEST_SEED", "0"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(SEED)


def pytest_runtest_teardown(item, nextitem):
    release_freed_memory(collect_cycles=False)  # see tests/heap.py: the suite's process grew to 7.5 GB without


def photo_batch(n: int = 8, size: int = 32, split: str = "val", seed: int = 0) -> torch.Tensor:
    """n real crops (B, 3, size, size) in [-1, 1] from the bundled photos."""
    ds = SamplePhotoCrops(split, size, n, seed=seed, flip=False)
    ds.fixed = True
    return torch.stack([ds[i]["image"] for i in range(n)])


@pytest.fixture
def photos() -> torch.Tensor:
    return photo_batch()
