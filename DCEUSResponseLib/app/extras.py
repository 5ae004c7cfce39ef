"""The optional extras of the package (``pyproject.toml``), checked before the work that needs them."""
from __future__ import annotations

import importlib.util

from DCEUSResponseLib.errors import InputError


def require_extra(module: str, extra: str, purpose: str, path: str | None = None) -> None:
    """InputError naming the extra to install when ``module`` cannot be imported.

    Checked with :func:`importlib.util.find_spec` (nothing is imported), so a missing extra is one
    line before the analysis starts, not an internal error at the end of it.
    """
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise InputError(f"{purpose} needs the '{extra}' extra ({module} is not installed): "
                         f'pip install "DCEUSResponse[{extra}]"', path)
