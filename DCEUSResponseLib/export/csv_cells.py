"""CSV cells that a spreadsheet cannot execute, and the one way tables become CSV text.

A text cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read as a formula
by spreadsheet programs (CSV injection); such a cell gets a leading apostrophe, as the OWASP "CSV
Injection" page recommends. Numbers are written as numbers (``repr`` of the float, so they read back
exactly): only text is neutralised, so a negative change stays a number.
"""
from __future__ import annotations

import csv
import io
import math
from typing import Iterable, Sequence

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(text: str) -> str:
    """``text`` with a leading apostrophe when a spreadsheet would take it for a formula."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def csv_cell(value) -> str:
    """One cell: empty for None and non-finite numbers, ``true``/``false``, numbers exactly, text made safe."""
    if hasattr(value, "dtype") and hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return csv_safe(str(value))


def csv_text(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A header line and one line per row, every cell through :func:`csv_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([csv_safe(name) for name in header])
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
    return buffer.getvalue()
