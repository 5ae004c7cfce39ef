"""Landmark point files: Slicer markups (``.mrk.json``) and CSV (``label,x,y,z`` or ``label,row,column``).

Markups files are read as Slicer writes them (markups schema v1.0.x): every control point of every
markup with a defined position, in the file's ``coordinateSystem`` (``LPS``, the schema's default,
or ``RAS``, converted to LPS with F = diag(-1, -1, 1)) and ``coordinateUnits`` (``mm`` or ``um``).
CEUS points placed in Slicer on the frame volume are then in CEUS frame mm, since the frame volume
lies at LPS (c dx, r dy, 0). Read only.
"""
from __future__ import annotations

import csv
import json
import math
import os

import numpy as np

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.spatial.registration import Landmarks

_UNIT_TO_MM = {"mm": 1.0, "um": 1e-3}
_CSV_HEADERS = {("label", "x", "y", "z"): "mm", ("label", "row", "column"): "pixel"}


def read_landmarks(path: str | os.PathLike, allow_pixels: bool = False) -> Landmarks:
    """The labelled points of ``path`` (``.mrk.json`` or ``.csv``); pixels only if ``allow_pixels``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError("landmark file not found", path)
    if path.lower().endswith(".json"):
        return read_markups_json(path)
    if path.lower().endswith(".csv"):
        points = read_landmarks_csv(path)
        if points.unit == "pixel" and not allow_pixels:
            raise InputError("patient landmarks must be label,x,y,z in LPS mm (row/column pixels are for CEUS "
                             "points)", path)
        return points
    raise InputError("landmark files must be Slicer markups (.mrk.json) or CSV (.csv)", path)


def read_markups_json(path: str) -> Landmarks:
    """Control points of a Slicer ``.mrk.json`` file as LPS mm."""
    try:
        with open(path, encoding="utf-8") as stream:
            document = json.load(stream)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"not a readable markups JSON file ({error})", path) from None
    markups = document.get("markups") if isinstance(document, dict) else None
    if not isinstance(markups, list) or not markups:
        raise InputError("no 'markups' list: not a Slicer markups file", path)
    labels: list[str] = []
    points: list[list[float]] = []
    for markup in markups:
        system = str(markup.get("coordinateSystem", "LPS")).upper()
        if system not in ("LPS", "RAS"):
            raise InputError(f"unknown coordinateSystem {system!r} (LPS or RAS)", path)
        unit = markup.get("coordinateUnits", "mm")
        unit = unit if isinstance(unit, str) else "mm"  # the schema also allows a UCUM object; mm is Slicer's
        if unit not in _UNIT_TO_MM:
            raise InputError(f"unknown coordinateUnits {unit!r} (mm or um)", path)
        flip = np.array([-1.0, -1.0, 1.0]) if system == "RAS" else np.ones(3)
        for point in markup.get("controlPoints", []) or []:
            if point.get("positionStatus", "defined") != "defined":
                continue  # a placeholder not placed yet: its partner's absence is reported by the pairing
            position = point.get("position")
            label = str(point.get("label", "")).strip()
            if not label:
                raise InputError(f"control point {point.get('id', len(labels) + 1)} has no label", path)
            if not (isinstance(position, list) and len(position) == 3
                    and all(isinstance(v, (int, float)) and math.isfinite(v) for v in position)):
                raise InputError(f"control point {label!r} has no finite 3D position", path)
            labels.append(label)
            points.append((np.asarray(position, dtype=float) * flip * _UNIT_TO_MM[unit]).tolist())
    if not labels:
        raise InputError("the markups file holds no defined control points", path)
    return Landmarks(tuple(labels), np.array(points, dtype=float), "mm", path)


def read_landmarks_csv(path: str) -> Landmarks:
    """A CSV with a header ``label,x,y,z`` (LPS / frame mm) or ``label,row,column`` (full-frame pixels)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as stream:
            rows = [row for row in csv.reader(stream) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"not a readable CSV file ({error})", path) from None
    if not rows:
        raise InputError("empty landmark file (expected a header label,x,y,z or label,row,column)", path)
    header = tuple(cell.strip().lower() for cell in rows[0])
    unit = _CSV_HEADERS.get(header)
    if unit is None:
        raise InputError(f"header {','.join(header)!r} is neither label,x,y,z nor label,row,column", path)
    labels, points = [], []
    for line_number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise InputError(f"line {line_number}: {len(row)} cells, expected {len(header)}", path)
        label = row[0].strip()
        if not label:
            raise InputError(f"line {line_number}: empty label", path)
        try:
            values = [float(cell) for cell in row[1:]]
        except ValueError:
            raise InputError(f"line {line_number}: coordinates {row[1:]} are not numbers", path) from None
        if not all(math.isfinite(value) for value in values):
            raise InputError(f"line {line_number}: coordinates must be finite", path)
        labels.append(label)
        points.append(values)
    if not labels:
        raise InputError("the landmark file has a header but no points", path)
    return Landmarks(tuple(labels), np.array(points, dtype=float), unit, path)
