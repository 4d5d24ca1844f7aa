"""The documentation is tested like code.

- Every ```python block of README.md and docs/*.md runs, in order, one namespace per page, in a temporary
  directory holding what the examples name: `runs/demo/export` (an untrained `titok-tiny` export), `a.jpg` and
  `b.png` (photos bundled with scikit-image), `images/` with both and `shards/` (their token shards). A block is
  skipped only when the line before it is `<!-- no-test: reason -->`.
- The command table of README.md lists exactly `vistok.commands.COMMANDS`, in order.
- Every relative link of README.md and docs/ points to a file that exists (and to a heading that exists, when it
  names one), and every `docs/....md` path named in the package, the configs and the scripts exists too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
NO_TEST = re.compile(r"^<!--\s*no-test:\s*\S.*-->\s*$")


def code_blocks(page: Path) -> list[tuple[int, str, str, bool]]:
    """(line of the opening fence, language, code, skipped) for every fenced block of a markdown page."""
    lines = page.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if j == len(lines):
            raise AssertionError(f"{page.relative_to(ROOT)}:{start + 1}: code block never closed")
        before = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        blocks.append((start + 1, lang, "\n".join(lines[start + 1:j]), bool(NO_TEST.match(before))))
        i = j + 1
    return blocks


def test_pages_exist():
    names = {p.name for p in PAGES if p.parent.name == "docs"}
    for name in ("README.md", "training.md", "flexible-length.md", "video.md", "token-shards.md", "evaluation.md",
                 "serving.md", "reliability.md", "architecture.md", "benchmarks.md", "pretrained.md"):
        assert name in names, f"docs/{name} is missing"


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory):
    """A working directory holding every file the examples name."""
    import numpy as np
    from PIL import Image
    from skimage import data

    from vistok.cli import main
    from vistok.tokenizers.registry import build_tokenizer

    root = tmp_path_factory.mktemp("docs")
    build_tokenizer("titok-tiny", dropout="nested").save_pretrained(root / "runs" / "demo" / "export")
    (root / "images").mkdir()
    for name, image in (("a.jpg", data.astronaut()), ("b.png", data.coffee())):
        Image.fromarray(np.asarray(image)).save(root / name)
        Image.fromarray(np.asarray(image)).save(root / "images" / name)
    main(["encode", "--model", str(root / "runs/demo/export"), "--input", str(root / "images"),
          "--output", str(root / "shards"), "--device", "cpu"])
    return root


@pytest.fixture
def restore_registries():
    """Examples that add a loss term, a variant or a class must not leak into other tests."""
    from vistok import configurable
    from vistok.tokenizers import registry
    from vistok.trainers import losses

    tables = [losses.PIXEL_TERMS, losses.DEFAULT_WEIGHTS, registry.VARIANTS, configurable._ALLOWED]
    saved = [dict(t) for t in tables]
    yield
    for table, copy in zip(tables, saved):
        table.clear()
        table.update(copy)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_python_examples_run(page, example_dir, monkeypatch, restore_registries):
    blocks = [b for b in code_blocks(page) if b[1] == "python"]
    if not blocks:
        pytest.skip(f"{page.relative_to(ROOT)} has no python example")
    monkeypatch.chdir(example_dir)
    namespace: dict = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for line, _, code, skipped in blocks:
        if skipped:
            continue
        where = f"{page.relative_to(ROOT)}:{line}"
        try:
            exec(compile(code, where, "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"the example at {where} fails: {type(e).__name__}: {e}") from e


def test_no_test_is_rare():
    skipped = [(p.name, line) for p in PAGES for line, lang, _, skip in code_blocks(p) if lang == "python" and skip]
    assert len(skipped) <= 8, f"too many python examples are not run: {skipped}"


def test_command_table_lists_every_command():
    from vistok.commands import COMMANDS

    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Commands", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"^\| `([a-z-]+)` \|", section, flags=re.M)
    assert names == [c.name for c in COMMANDS], "README's command table must list vistok.commands.COMMANDS in order"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def check_target(path: Path, anchor: str | None, where: str) -> None:
    assert path.exists(), f"{where}: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} does not exist"
    if anchor and path.suffix == ".md":
        assert anchor in anchors(path), f"{where}: {path.name} has no heading #{anchor}"


def test_relative_links_resolve():
    link = re.compile(r"\]\(([^)\s]+)\)")
    for page in PAGES:
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
        for target in link.findall(text):
            if re.match(r"^[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            check_target(path, anchor or None, f"{page.relative_to(ROOT)} links {target}")


def test_code_names_only_docs_that_exist():
    mention = re.compile(r"docs/([\w\-]+\.md)(?:#([\w\-]+))?")
    found = 0
    for folder in ("vistok", "configs", "scripts"):
        for file in sorted((ROOT / folder).rglob("*")):
            if file.suffix not in (".py", ".yaml", ".html", ".js") or not file.is_file():
                continue
            text = file.read_text()
            assert "DESIGN.md" not in text, f"{file.relative_to(ROOT)} cites DESIGN.md, which is not in the project"
            for name, anchor in mention.findall(text):
                found += 1
                check_target(ROOT / "docs" / name, anchor or None, str(file.relative_to(ROOT)))
    assert found, "no docs/ page is named anywhere: the pattern is wrong"
