"""The contract copies in docs/ hold the shared contracts (../shared/spec/) verbatim: the copies are
extended, in sections of their own, never edited inside the shared text.

The shared folder lies beside the repository on the project's machines, not in a clone: without it
there is nothing to compare and the test is skipped.
"""
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "spec"
CONTRACTS = ("quantification-contract.md", "fusion-and-follow-up-contract.md")


def _sections(text: str) -> list[str]:
    """The text cut before each level-2 heading: the parts a copy may interleave with its own."""
    parts, current = [], []
    for line in text.splitlines(keepends=True):
        if line.startswith("## ") and current:
            parts.append("".join(current))
            current = []
        current.append(line)
    parts.append("".join(current))
    return parts


@pytest.mark.parametrize("name", CONTRACTS)
def test_the_copy_holds_every_section_of_the_shared_contract_verbatim(name):
    shared = SHARED / name
    if not shared.is_file():
        pytest.skip(f"{shared} is not on this machine")
    copy = (ROOT / "docs" / name).read_text(encoding="utf-8")
    for section in _sections(shared.read_text(encoding="utf-8")):
        assert section.rstrip() in copy, f"docs/{name} no longer holds this shared section verbatim:\n{section[:300]}"
