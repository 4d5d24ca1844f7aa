"""An untrusted export is checked before it is built (issue 26): a config.json asking for more than its weights
hold, negative or absurd sizes, and malformed class specs are one ValueError naming the file, never an
allocation of gigabytes (the OOM killer) or a traceback from deep inside a constructor."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import pytest
import torch

from vistok.build_budget import BuildBudget, weights_budget
from vistok.loading import load_tokenizer
from vistok.tokenizers import build_tokenizer


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return build_tokenizer("titok-tiny").save_pretrained(tmp_path_factory.mktemp("untrusted") / "m")


def tampered(export: Path, tmp_path: Path, edit) -> Path:
    out = tmp_path / "bad"
    out.mkdir()
    for f in export.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    config = json.loads((export / "config.json").read_text())
    edit(config["model"])
    (out / "config.json").write_text(json.dumps(config))
    return out


def enc(model: dict) -> dict:
    return model["init_args"]["encoder"]["init_args"]


def dec(model: dict) -> dict:
    return model["init_args"]["decoder"]["init_args"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("name,edit,words", [
    ("width 20,000", lambda m: enc(m).update(width=20_000), "more memory than its weights"),
    ("depth 10**6", lambda m: enc(m).update(depth=10**6), "more memory than its weights"),
    ("patch 10**9 in the decoder", lambda m: dec(m).update(image_size=10**9, patch_size=1),
     "more memory than its weights|cannot build"),
    ("levels of 10**9", lambda m: m["init_args"]["quantizer"]["init_args"].update(levels=[10**9, 10**9]),
     "more memory than its weights|cannot build"),
    ("negative width", lambda m: enc(m).update(width=-64), "negative|cannot build"),
    ("width 10**30", lambda m: enc(m).update(width=10**30), "more memory than its weights|cannot build"),
    ("list class_path", lambda m: m["init_args"]["encoder"].update(class_path=["vistok.tokenizers.titok.TiTokEncoder"]),
     "class_path: expected a class name"),
    ("list init_args", lambda m: m["init_args"]["encoder"].update(init_args=[1, 2]), "init_args: expected an object"),
])
def test_a_tampered_config_is_refused_before_anything_large_is_built(export, tmp_path, name, edit, words):
    import re

    bad = tampered(export, tmp_path, edit)
    before, start = peak_rss_mb(), time.monotonic()
    with pytest.raises(ValueError) as err:
        load_tokenizer(bad)
    assert re.search(words, str(err.value)), (name, str(err.value))
    assert "config.json" in str(err.value), str(err.value)
    assert time.monotonic() - start < 20, name
    assert peak_rss_mb() - before < 300, f"{name}: the process grew by {peak_rss_mb() - before:.0f} MB"


def test_the_untampered_export_still_loads_bit_identically(export):
    a, b = load_tokenizer(export), load_tokenizer(export)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert v.equal(w), k


def test_every_registered_variant_builds_within_the_budget_its_weights_set():
    """The budget is the weights' fp32 bytes x 2 + 64 MiB: building allocates ~1.0x (measured for every variant)."""
    for name in ("titok-tiny", "omni-tiny", "flextok-tiny", "larp-tiny", "rf-tiny", "onedpiece-tiny"):
        model = build_tokenizer(name)
        elements = sum(v.numel() for v in model.state_dict().values())
        budget = BuildBudget(10**15, name)
        with budget:
            build_tokenizer(name)
        assert budget.used <= 1.1 * 4 * elements + (1 << 20), name
        assert budget.used < weights_budget(elements)


def test_the_budget_counts_each_factory_before_it_allocates():
    with pytest.raises(ValueError, match="more memory"):
        with BuildBudget(1 << 20, "x"):
            torch.empty(1 << 30)  # 4 GiB: refused before allocation
    with pytest.raises(ValueError, match="negative"):
        with BuildBudget(1 << 20, "x"):
            torch.zeros(4, -3)
    with BuildBudget(1 << 20, "x") as b:
        torch.zeros(16, 16), torch.arange(10), torch.full((4, 4), 2.0), torch.tensor([1, 2, 3])
    assert 16 * 16 * 4 + 16 * 4 + 10 * 4 <= b.used <= 16 * 16 * 4 + 16 * 4 + 10 * 8  # (arange counted at 4 or 8 B)
