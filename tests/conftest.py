import os

os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402
import torch  # noqa: E402

from vistok.data.sample import SamplePhotoCrops  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def photo_batch(n: int = 8, size: int = 32, split: str = "val", seed: int = 0) -> torch.Tensor:
    """n real crops (B, 3, size, size) in [-1, 1] from the bundled photos."""
    ds = SamplePhotoCrops(split, size, n, seed=seed, flip=False)
    ds.fixed = True
    return torch.stack([ds[i]["image"] for i in range(n)])


@pytest.fixture
def photos() -> torch.Tensor:
    return photo_batch()
