"""The MRML tests run against the Slicer the extension targets (5.12) as well as the newest
``slicer-core``: ``Testing/run-tests.sh`` runs ``pytest -m slicer`` a second time in a virtual
environment holding slicer-core 5.12.x and sets ``DCEUS_EXPECT_SLICER_CORE`` so that this test proves
which one was imported."""
import importlib.metadata
import os

import pytest

slicer = pytest.importorskip("slicer")


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2])


def test_the_imported_slicer_core_is_the_expected_one():
    installed = importlib.metadata.version("slicer-core")
    assert _version_tuple(installed) >= (5, 12), f"slicer-core {installed}: the extension targets Slicer 5.12+"
    expected = os.environ.get("DCEUS_EXPECT_SLICER_CORE")
    if expected:
        assert installed.startswith(expected + "."), f"expected slicer-core {expected}.x, imported {installed}"
    # the module imported is the one of that distribution, not another copy on sys.path
    files = importlib.metadata.distribution("slicer-core").locate_file("")
    assert os.path.realpath(slicer.__file__).startswith(os.path.realpath(str(files)))
