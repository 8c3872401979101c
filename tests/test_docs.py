"""The documents the code cites ship with it.

Why: comments, help texts and reports cite the contracts for their reasons (the shard format, the
degradation, the exported model, the quality protocol). They pointed at ../shared/CONTRACTS.md, a
file outside the repository that a fresh clone lacks; they now cite docs/contracts.md, and this
keeps every cited docs/ path real and stops citations of the outside copy coming back.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

# a docs/ path, optionally reached through ../ from the citing file; not part of a URL or path
# ending in docs/ (".../pytorch.org/docs/stable" is no citation of this repository's docs)
DOCS_PATH = re.compile(r"(?<![\w./-])((?:\.\./)*docs/[\w./-]*\w)")
OUTSIDE_CONTRACTS = re.compile(r"shared/CONTRACTS\.md|(?<![\w/])CONTRACTS(?:\.md)?\s*§")


def _repository_texts() -> dict[Path, str]:
    """Tracked and not-ignored files of the checkout, text only."""
    if not (PROJECT_ROOT / ".git").exists():
        pytest.skip("not a git checkout: the repository's file list is unknown")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=PROJECT_ROOT, capture_output=True, check=True).stdout.decode()
    texts = {}
    for name in filter(None, listed.split("\0")):
        path = PROJECT_ROOT / name
        if not path.is_file():  # deleted in the working tree, not yet in the index
            continue
        data = path.read_bytes()
        if b"\0" not in data[:8192]:
            texts[Path(name)] = data.decode("utf-8", errors="replace")
    return texts


def test_every_cited_docs_path_exists():
    texts = _repository_texts()
    citations = [(name, cited) for name, text in texts.items() for cited in DOCS_PATH.findall(text)]
    assert len(citations) > 20  # the contracts are cited throughout; a broken pattern finds none
    missing = []
    for name, cited in citations:
        base = (PROJECT_ROOT / name).parent if cited.startswith("../") else PROJECT_ROOT
        if not (base / cited).resolve().exists():
            missing.append(f"{name}: {cited}")
    assert not missing, "cited but not in the repository:\n" + "\n".join(missing)


def test_nothing_cites_the_contracts_outside_the_repository():
    texts = _repository_texts()
    offenders = [f"{name}:{line_no}: {line.strip()}" for name, text in texts.items()
                 if name != Path("tests/test_docs.py")
                 for line_no, line in enumerate(text.splitlines(), 1) if OUTSIDE_CONTRACTS.search(line)]
    assert not offenders, "cite docs/contracts.md instead:\n" + "\n".join(offenders)


def test_the_contracts_have_their_five_sections():
    text = (PROJECT_ROOT / "docs" / "contracts.md").read_text()
    headings = re.findall(r"^## (\d)\. ", text, flags=re.MULTILINE)
    assert headings == ["1", "2", "3", "4", "5"]
