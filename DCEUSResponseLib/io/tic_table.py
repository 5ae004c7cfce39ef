"""A time-intensity curve given as a table (CSV or tab/semicolon separated text), for ``fit-tic``.

Users of other tools (VueBox, QLAB, scanner exports, spreadsheets) arrive with a TIC as two columns:
time and intensity. :func:`read_tic_table` finds the two columns (named, numbered, or recognised from
the header), checks every cell and returns the numbers; every problem is one
:class:`~DCEUSResponseLib.errors.InputError` naming the file, the row and the column. Rows are
numbered as a spreadsheet shows them (the header is row 1).
"""
from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass

import numpy as np

from DCEUSResponseLib.errors import InputError

#: Header names recognised as the time column (case-insensitive, units in brackets allowed).
TIME_NAMES = ("time_s", "time", "t", "t_s", "seconds", "sec", "s", "time_ms", "ms", "clip_time_s")
#: Header names recognised as the intensity column, in order of preference.
INTENSITY_NAMES = ("intensity", "mean_intensity", "mean", "tic", "signal", "echo_power", "power", "value",
                   "gray", "grey", "gray_level", "grey_level", "measured", "y")
#: Tables are small (one row per frame): anything larger than this is not a TIC.
MAX_TABLE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class TicTable:
    """The two columns of a TIC table: ``times_s`` (s, strictly increasing) and ``values`` (as given).

    ``time_column`` and ``intensity_column`` are the header names (or ``column N``); ``rows`` the
    spreadsheet row number of each sample; ``time_scale`` 1 for seconds, 0.001 for a column in ms.
    """

    source: str
    times_s: np.ndarray
    values: np.ndarray
    time_column: str
    intensity_column: str
    rows: tuple[int, ...]
    time_scale: float = 1.0


def _key(name: str) -> str:
    """A header cell reduced for matching: lower case, units in brackets or after '/' kept as a suffix."""
    text = name.strip().lower()
    unit = re.search(r"[\[(]\s*([a-z]+)\s*[\])]", text)
    text = re.sub(r"[\[(].*?[\])]", "", text).strip()
    text = re.sub(r"[^a-z0-9]+", "_", text).strip("_")
    if unit and unit.group(1) in ("s", "ms", "sec"):
        text = f"{text}_{'ms' if unit.group(1) == 'ms' else 's'}".replace("_s_s", "_s")
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_rows(path: str) -> list[list[str]]:
    if not os.path.isfile(path):
        raise InputError("TIC table not found (or not a regular file)", path)
    if os.path.getsize(path) > MAX_TABLE_BYTES:
        raise InputError(f"TIC table is larger than {MAX_TABLE_BYTES // 2**20} MB; a TIC has one row per frame",
                         path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            text = stream.read()
    except UnicodeDecodeError:
        raise InputError("TIC table is not UTF-8 text (give a CSV file)", path) from None
    except OSError as error:
        raise InputError(f"cannot read the TIC table ({error.strerror or error})", path) from None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise InputError("TIC table is empty", path)
    delimiter = max(("\t", ";", ","), key=lambda d: lines[0].count(d))
    if lines[0].count(delimiter) == 0:
        delimiter = None  # columns separated by spaces
    if delimiter is None:
        return [line.split() for line in lines]
    return [[cell.strip() for cell in row] for row in csv.reader(lines, delimiter=delimiter)]


def _choose(header: list[str], given: str | None, names: tuple[str, ...], what: str, option: str,
            path: str, exclude: int | None = None) -> int:
    """Index of the column ``given`` (a header name or a 1-based number), or the one recognised."""
    if given is not None:
        if given.strip().isdigit():
            index = int(given) - 1
            if not 0 <= index < len(header):
                raise InputError(f"{option} {given}: the table has columns 1..{len(header)}", path)
            return index
        matches = [i for i, name in enumerate(header) if name.strip().lower() == given.strip().lower()]
        if not matches:
            raise InputError(f"{option} {given!r} is not a column of the table ({', '.join(header)})", path)
        return matches[0]
    keys = [_key(name) for name in header]
    for name in names:
        for index, key in enumerate(keys):
            if index != exclude and key == name:
                return index
    others = [i for i in range(len(header)) if i != exclude]
    if exclude is not None and len(others) == 1:
        return others[0]
    raise InputError(f"cannot tell which column is the {what} ({', '.join(header) or 'no header'}); "
                     f"name it with {option}", path)


def read_tic_table(path: str, time_column: str | None = None, intensity_column: str | None = None,
                   min_rows: int = 2) -> TicTable:
    """Read a TIC table: a header row (optional when the table has exactly two columns), then one row
    per frame. Times are seconds (a column named ``*_ms`` or ``time (ms)`` is milliseconds).

    InputError (naming the file, and the row and column where there is one) for: a missing or
    unreadable file, unknown or ambiguous columns, a non-numeric, NaN or infinite cell, short rows,
    times that do not increase, fewer than ``min_rows`` rows.
    """
    rows = _read_rows(path)
    if all(_is_number(cell) for cell in rows[0]):
        header, first = [f"column {k + 1}" for k in range(len(rows[0]))], 0
        if len(header) != 2 and (time_column is None or intensity_column is None):
            raise InputError(f"the table has no header and {len(header)} columns; give --time-column N and "
                             "--intensity-column N (1-based)", path)
    else:
        header, first = rows[0], 1
    if first == 0 and len(header) == 2 and time_column is None:
        # No header, two columns: time then intensity, as the contract orders them, unless
        # --intensity-column names the first.
        intensity_index = _choose(header, intensity_column, INTENSITY_NAMES, "intensity", "--intensity-column",
                                  path) if intensity_column is not None else 1
        time_index = 1 - intensity_index
    else:
        time_index = _choose(header, time_column, TIME_NAMES, "time", "--time-column", path)
        intensity_index = _choose(header, intensity_column, INTENSITY_NAMES, "intensity", "--intensity-column",
                                  path, exclude=time_index)
    if intensity_index == time_index:
        raise InputError(f"--time-column and --intensity-column are the same column ({header[time_index]})", path)
    time_key = _key(header[time_index])
    scale = 0.001 if time_key.endswith("ms") else 1.0
    times, values, numbers = [], [], []
    for offset, row in enumerate(rows[first:]):
        line = first + offset + 1
        cells = []
        for index in (time_index, intensity_index):
            if index >= len(row) or row[index] == "":
                raise InputError(f"row {line}: no value in column {header[index]!r}", path)
            try:
                value = float(row[index])
            except ValueError:
                raise InputError(f"row {line}: {row[index][:40]!r} in column {header[index]!r} is not a number",
                                 path) from None
            if not math.isfinite(value):
                raise InputError(f"row {line}: {row[index]!r} in column {header[index]!r} is not a finite number",
                                 path)
            cells.append(value)
        if times and not cells[0] * scale > times[-1]:
            raise InputError(f"row {line}: time {row[time_index]} is not after the previous row's "
                             f"({times[-1] / scale:g}); times must increase", path)
        times.append(cells[0] * scale)
        values.append(cells[1])
        numbers.append(line)
    if len(times) < min_rows:
        raise InputError(f"the table has {len(times)} data rows; a TIC fit needs at least {min_rows}", path)
    return TicTable(path, np.asarray(times), np.asarray(values), header[time_index], header[intensity_index],
                    tuple(numbers), scale)
