"""The documentation runs as written: every fenced ```python block of README.md and docs/*.md executes.

Each block runs on its own (a fresh namespace, in a temporary working folder, offline), so a block must be
self-contained: random backbones, tiny tensors, no files it does not make. Blocks in other languages (bash,
yaml, text) are not executed. The same pages are also held to the README's promises: local links resolve,
the README stays short, and no page but the history speaks of rounds of work.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
README_MAX_LINES = 250


def python_blocks() -> list[tuple[str, str]]:
    """(`page:line`, code) of every ```python block of the pages."""
    blocks = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == "python":
                line = text.count("\n", 0, match.start()) + 1
                blocks.append((f"{page.relative_to(ROOT)}:{line}", match.group(2)))
    return blocks


BLOCKS = python_blocks()


def test_the_pages_hold_python_examples():
    assert len(BLOCKS) >= 3, [where for where, _ in BLOCKS]


@pytest.mark.parametrize("code", [code for _, code in BLOCKS], ids=[where for where, _ in BLOCKS])
def test_python_block_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})


def test_fence_parsing_finds_only_python_blocks():
    text = "a\n```bash\necho no\n```\n```python\nx = 1\n```\n```text\nno\n```\n"
    assert [(m.group(1), m.group(2)) for m in FENCE.finditer(text)] == [("bash", "echo no\n"), ("python", "x = 1\n"), ("text", "no\n")]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_local_links_resolve(page):
    """Every relative link and picture of a page names a file or folder of the repository."""
    text = FENCE.sub("", page.read_text())
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    missing = [
        target for target in targets
        if not re.match(r"[a-z]+://|#|mailto:", target) and not (page.parent / target.split("#")[0]).exists()
    ]
    assert not missing, f"{page.name}: links to missing files {missing}"


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; keep it to {README_MAX_LINES} (the rest goes in docs/)"


def test_only_the_history_speaks_of_rounds_of_work():
    """The product speaks of itself (STYLE.md §16): dates and versions live in docs/history.md alone."""
    rounds = re.compile(r"\b[Ss]tops? [0-9]+")
    found = [
        f"{page.relative_to(ROOT)}:{number}: {line.strip()}"
        for page in PAGES if page.name != "history.md"
        for number, line in enumerate(page.read_text().splitlines(), 1) if rounds.search(line)
    ]
    assert not found, found


def test_readme_commands_match_ci():
    """README's test command installs and runs what .ci/run does."""
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    for step in ('pip install -e ".[dev]"', "pytest -q"):
        assert step in ci.replace("-q -e", "-e") and step in readme, step
    assert "pip install -e . && videoanyup demo" in readme
