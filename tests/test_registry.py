"""The variant registry: builders register next to their family's code; a new family is a new file."""

import sys

import pytest

from vistok.tokenizers import VARIANTS, build_tokenizer, registry, variants

NAMES = {"titok-s-128", "titok-b-64", "titok-l-32", "titok-tiny", "titok-demo", "flextok-d12", "flextok-tiny",
         "rf-tiny", "rf-demo", "onedpiece-s-256", "onedpiece-tiny"}


def test_every_variant_is_registered_by_a_module_of_the_variants_package():
    assert NAMES <= set(VARIANTS)
    for name, builder in VARIANTS.items():
        assert builder.__module__.startswith("vistok.tokenizers.variants."), (name, builder.__module__)
    assert build_tokenizer("titok-tiny", num_tokens=4).max_tokens == 4
    with pytest.raises(ValueError, match="unknown tokenizer variant 'nope'.*titok-tiny"):
        build_tokenizer("nope")


def test_a_new_family_file_is_discovered_without_editing_the_registry(tmp_path, monkeypatch):
    (tmp_path / "extra_family.py").write_text(
        "from vistok.tokenizers.registry import register, build_tokenizer\n"
        "@register('extra-tiny')\n"
        "def extra_tiny(num_tokens: int = 2):\n"
        "    return build_tokenizer('titok-tiny', num_tokens=num_tokens)\n")
    monkeypatch.setattr(variants, "__path__", [*variants.__path__, str(tmp_path)])
    try:
        registry._import_variant_modules()
        assert build_tokenizer("extra-tiny").max_tokens == 2
    finally:
        VARIANTS.pop("extra-tiny", None)
        sys.modules.pop("vistok.tokenizers.variants.extra_family", None)


def test_one_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="'titok-tiny' is registered twice"):
        registry.register("titok-tiny")(lambda: None)
