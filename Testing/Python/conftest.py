"""Shared pytest configuration.

``--run-slow`` enables the long scientific checks (marked ``slow``). Tests that use Slicer's MRML
(``slicer-core``) are marked ``slicer`` automatically, so that ``Testing/run-tests.sh`` can run them a
second time against the Slicer version the extension targets (``pytest -m slicer``).
"""
import inspect
import pathlib
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

_USES_SLICER = re.compile(r"importorskip\(\s*[\"']slicer[\"']|^\s*import slicer\b|from DCEUSResponseLib\.scene\b",
                          re.M)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the long scientific checks marked slow")


def _uses_slicer(item) -> bool:
    module = getattr(item, "module", None)
    function = getattr(item, "function", None)
    try:
        module_source = inspect.getsource(module) if module is not None else ""
        # module level: a top-level importorskip or import of slicer / the scene rooms
        top_level = "\n".join(line for line in module_source.splitlines() if not line.startswith((" ", "\t")))
        if _USES_SLICER.search(top_level):
            return True
        return bool(function is not None and _USES_SLICER.search(inspect.getsource(function)))
    except (OSError, TypeError):
        return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _uses_slicer(item):
            item.add_marker(pytest.mark.slicer)
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow scientific check: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@dataclass
class DemoRun:
    """One run of ``python -m DCEUSResponseLib demo --out DIR``: its folder, exit status and output."""

    out: pathlib.Path
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    """The demo study run once for the whole session through its command line (it takes a minute or
    two); tests read its outputs and may only add files of their own beside them."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    run = subprocess.run([sys.executable, "-m", "DCEUSResponseLib", "demo", "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    return DemoRun(out, run.returncode, run.stdout, run.stderr)
