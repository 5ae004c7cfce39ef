"""Reading and checking a study's ``MANIFEST.csv`` (one row per clip) and its ``OUTCOMES.csv``.

Every problem is one :class:`InputError` naming the file, the line (the header is line 1) and the
column, found before any clip is analysed. Paths in the cells are relative to the manifest. Rows with
the same ``patient, exam`` are repeated injections of one exam; the earliest exam of a patient is its
baseline and must be the only exam on that date.
"""
from __future__ import annotations

import csv
import datetime
import math
import os
from dataclasses import dataclass, field
from typing import Iterator

from DCEUSResponseLib.kinetics.registry import MODEL_CHOICES
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.longitudinal.records import ClipRow, Exam

REQUIRED_COLUMNS = ("patient", "exam", "date", "clip", "rois")
OPTIONAL_COLUMNS = ("reference", "dynamic_range_db", "injection_time_s", "model", "reference_frame", "ct",
                    "pet", "landmarks", "transform", "pet_segmentation")
OUTCOMES = ("responder", "non-responder")
# Patient and exam names become folder names (exams/<patient>/<exam>/): no separators, nothing that
# Windows refuses in a file name.
_FORBIDDEN_IN_NAMES = set('/\\:*?"<>|')


@dataclass(frozen=True)
class Manifest:
    """A checked manifest: its rows in file order and its exams, per patient in date order."""

    path: str
    rows: tuple[ClipRow, ...]
    exams: tuple[Exam, ...]

    @property
    def patients(self) -> tuple[str, ...]:
        """Patients in order of first appearance."""
        return tuple(dict.fromkeys(row.patient for row in self.rows))

    def exams_of(self, patient: str) -> tuple[Exam, ...]:
        """The patient's exams, baseline first, then by date."""
        return tuple(exam for exam in self.exams if exam.patient == patient)

    def exam_of(self, row: ClipRow) -> Exam:
        return next(e for e in self.exams if (e.patient, e.exam) == (row.patient, row.exam))

    def to_json(self) -> dict:
        """The manifest as read, for ``study.json``."""
        return {"path": self.path, "rows": [row.to_json() for row in self.rows],
                "exams": [{"patient": e.patient, "exam": e.exam, "date": e.date.isoformat(),
                           "days_from_baseline": e.days_from_baseline, "clips": [c.injection for c in e.clips]}
                          for e in self.exams]}


class _Row:
    """The cells of one line, and the one way a problem with them is reported."""

    def __init__(self, path: str, line: int, cells: dict[str, str]):
        self.path, self.line, self.cells = path, line, cells
        self.folder = os.path.dirname(os.path.abspath(path))

    def error(self, column: str | None, problem: str) -> InputError:
        where = f"line {self.line}" + (f", column {column!r}" if column else "")
        return InputError(f"{where}: {problem}", self.path)

    def text(self, column: str, required: bool = False) -> str | None:
        value = self.cells.get(column, "").strip()
        if not value:
            if required:
                raise self.error(column, "required cell is empty")
            return None
        return value

    def name(self, column: str) -> str:
        value = self.text(column, required=True)
        bad = sorted(set(value) & _FORBIDDEN_IN_NAMES) or [c for c in value if ord(c) < 32]
        if bad or value in (".", "..") or value.startswith("."):
            raise self.error(column, f"{value!r} cannot be a folder name (no {' '.join(_FORBIDDEN_IN_NAMES)}, "
                             "control characters or leading '.')")
        return value

    def path_cell(self, column: str, text: str, kind: str = "file") -> str:
        """``text`` resolved against the manifest's folder; it must exist (a file, folder, or either)."""
        resolved = os.path.normpath(os.path.join(self.folder, text))
        found = {"file": os.path.isfile, "folder": os.path.isdir, "any": os.path.exists}[kind](resolved)
        if not found:
            what = {"file": "file", "folder": "folder", "any": "file or folder"}[kind]
            raise self.error(column, f"{what} not found: {text!r} (paths are relative to the manifest)")
        return resolved

    def number(self, column: str, integer: bool = False, minimum: float | None = None,
               strictly: bool = False) -> float | int | None:
        text = self.text(column)
        if text is None:
            return None
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise self.error(column, f"{text!r} is not {'an integer' if integer else 'a number'}") from None
        if not math.isfinite(value) or (minimum is not None and (value <= minimum if strictly else value < minimum)):
            relation = ">" if strictly else ">="
            raise self.error(column, f"{text} is out of range (must be finite and {relation} {minimum:g})")
        return value


def _csv_lines(path: str) -> Iterator[tuple[int, list[str]]]:
    """``(line number of the record's first line, cells)`` for each non-blank record."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            reader = csv.reader(stream)
            start = 1
            try:
                for cells in reader:
                    if any(cell.strip() for cell in cells):
                        yield start, cells
                    start = reader.line_num + 1
            except csv.Error as error:
                raise InputError(f"line {reader.line_num}: not valid CSV ({error})", path) from None
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except UnicodeDecodeError as error:
        raise InputError(f"not UTF-8 text ({error.reason} at byte {error.start})", path) from None
    except IsADirectoryError:
        raise InputError("is a folder, not a CSV file", path) from None


def _records(path: str, required: tuple[str, ...], optional: tuple[str, ...]) -> Iterator[_Row]:
    lines = _csv_lines(path)
    first = next(lines, None)
    if first is None:
        raise InputError("empty file: no header line", path)
    header_line, header = first
    columns = [name.strip() for name in header]
    for k, name in enumerate(columns):
        if not name:
            raise InputError(f"line {header_line}: column {k + 1} has no name", path)
        if name in columns[:k]:
            raise InputError(f"line {header_line}, column {name!r}: the column appears twice", path)
        if name not in required + optional:
            raise InputError(f"line {header_line}, column {name!r}: unknown column (known: "
                             f"{', '.join(required + optional)})", path)
    for name in required:
        if name not in columns:
            raise InputError(f"line {header_line}: required column {name!r} is missing", path)
    for line, cells in lines:
        if len(cells) > len(columns):
            raise InputError(f"line {line}: {len(cells)} cells but the header has {len(columns)} columns", path)
        yield _Row(path, line, dict(zip(columns, cells)))


def _parse_date(row: _Row) -> datetime.date:
    text = row.text("date", required=True)
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(text).date()
    except ValueError:
        raise row.error("date", f"{text!r} is not an ISO 8601 date (YYYY-MM-DD)") from None


def _parse_rois(row: _Row) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """``(roi specs for analyze --roi, ROI names or None for a segmentation)``."""
    text = row.text("rois", required=True)
    if "=" not in text and text.lower().endswith(".seg.nrrd"):
        return (row.path_cell("rois", text),), None
    specs, names = [], []
    for entry in (part.strip() for part in text.split(";")):
        if not entry:
            continue
        name, sep, mask = (part.strip() for part in entry.partition("="))
        if not sep or not name or not mask:
            raise row.error("rois", f"{entry!r} is not NAME=MASK (give NAME=MASK;NAME=MASK or one .seg.nrrd)")
        if mask.lower().endswith(".seg.nrrd"):
            raise row.error("rois", f"{mask!r}: a .seg.nrrd must be the cell's only entry (its segments "
                            "name the ROIs)")
        if name in names:
            raise row.error("rois", f"lesion name {name!r} is used for two ROIs of this clip")
        names.append(name)
        specs.append(f"{name}={row.path_cell('rois', mask)}")
    if not specs:
        raise row.error("rois", "required cell is empty")
    return tuple(specs), tuple(names)


def _parse_series(row: _Row, column: str) -> str | None:
    """A DICOM series folder, optionally ``FOLDER::SeriesInstanceUID``."""
    text = row.text(column)
    if text is None:
        return None
    folder, sep, uid = text.partition("::")
    return row.path_cell(column, folder, kind="folder") + (sep + uid if sep else "")


def _parse_landmarks(row: _Row) -> tuple[str, str] | None:
    text = row.text("landmarks")
    if text is None:
        return None
    # A path may itself hold '=': take the split whose both sides are files.
    for k, char in enumerate(text):
        if char == "=":
            ceus, ct = text[:k].strip(), text[k + 1:].strip()
            if ceus and ct and all(os.path.isfile(os.path.join(row.folder, p)) for p in (ceus, ct)):
                return row.path_cell("landmarks", ceus), row.path_cell("landmarks", ct)
    raise row.error("landmarks", f"{text!r} is not CEUS_POINTS=CT_POINTS naming two existing files")


def _check_fusion(row: _Row, fusion: dict) -> None:
    if fusion["ct"] is None:
        for column in ("pet", "landmarks", "transform", "pet_segmentation"):
            if fusion[column] is not None:
                raise row.error(column, "needs a ct cell (fuse places the clip in the CT)")
        return
    if (fusion["landmarks"] is None) == (fusion["transform"] is None):
        raise row.error("landmarks" if fusion["landmarks"] else "ct",
                        "a row with a CT needs exactly one of landmarks or transform")
    if fusion["pet_segmentation"] is not None and fusion["pet"] is None:
        raise row.error("pet_segmentation", "needs a pet cell")


def _parse_row(row: _Row, injection: int) -> ClipRow:
    patient, exam, date = row.name("patient"), row.name("exam"), _parse_date(row)
    clip_text = row.text("clip", required=True)
    clip = row.path_cell("clip", clip_text, kind="any")
    roi_specs, roi_names = _parse_rois(row)
    reference = row.text("reference")
    if reference is not None and roi_names is not None and reference not in roi_names:
        raise row.error("reference", f"{reference!r} is not one of the clip's ROIs ({', '.join(roi_names)})")
    model = row.text("model")
    if model is not None and model not in MODEL_CHOICES:
        raise row.error("model", f"unknown model {model!r} (known: {', '.join(MODEL_CHOICES)})")
    fusion = {"ct": _parse_series(row, "ct"), "pet": _parse_series(row, "pet"), "landmarks": _parse_landmarks(row),
              "transform": row.text("transform") and row.path_cell("transform", row.text("transform")),
              "pet_segmentation": row.text("pet_segmentation")
              and row.path_cell("pet_segmentation", row.text("pet_segmentation"))}
    _check_fusion(row, fusion)
    return ClipRow(line=row.line, patient=patient, exam=exam, date=date, injection=injection, clip=clip,
                   clip_text=clip_text, roi_specs=roi_specs, roi_names=roi_names, reference=reference,
                   dynamic_range_db=row.number("dynamic_range_db", minimum=0, strictly=True),
                   injection_time_s=row.number("injection_time_s", minimum=0),
                   model=model, reference_frame=row.number("reference_frame", integer=True, minimum=0), **fusion)


def read_manifest(path: str) -> Manifest:
    """Read and check ``MANIFEST.csv``; every problem is a one-line :class:`InputError` naming the line."""
    path = os.path.abspath(path)
    rows: list[ClipRow] = []
    clip_lines: dict[str, int] = {}
    exam_rows: dict[tuple[str, str], list[ClipRow]] = {}
    for record in _records(path, REQUIRED_COLUMNS, OPTIONAL_COLUMNS):
        key = (record.name("patient"), record.name("exam"))
        row = _parse_row(record, injection=len(exam_rows.get(key, [])) + 1)
        identity = os.path.normcase(os.path.realpath(row.clip))
        if identity in clip_lines:
            raise record.error("clip", f"{row.clip_text!r} is already the clip of line {clip_lines[identity]} "
                               "(a repeated injection is a clip of its own)")
        clip_lines[identity] = row.line
        earlier = exam_rows.setdefault(key, [])
        if earlier and earlier[0].date != row.date:
            raise record.error("date", f"exam {row.exam!r} of patient {row.patient!r} is dated "
                               f"{earlier[0].date.isoformat()} on line {earlier[0].line}, here {row.date.isoformat()}")
        earlier.append(row)
        rows.append(row)
    if not rows:
        raise InputError("no clip rows after the header", path)
    return Manifest(path, tuple(rows), _exams(path, exam_rows))


def _exams(path: str, exam_rows: dict[tuple[str, str], list[ClipRow]]) -> tuple[Exam, ...]:
    exams: list[Exam] = []
    for patient in dict.fromkeys(p for p, _ in exam_rows):
        own = sorted((rows for (p, _), rows in exam_rows.items() if p == patient),
                     key=lambda rows: (rows[0].date, rows[0].line))
        baseline_date = own[0][0].date
        if len(own) > 1 and own[1][0].date == baseline_date:
            first, second = own[0][0], own[1][0]
            raise InputError(f"line {second.line}, column 'date': patient {patient!r} has no baseline: exams "
                             f"{first.exam!r} (line {first.line}) and {second.exam!r} are both on "
                             f"{baseline_date.isoformat()}, the earliest date (the baseline is the one earliest "
                             "exam)", path)
        for rows in own:
            exams.append(Exam(patient, rows[0].exam, rows[0].date, (rows[0].date - baseline_date).days, tuple(rows)))
    return tuple(exams)


@dataclass(frozen=True)
class Outcomes:
    """The reference standard: an outcome per patient, or per patient and lesion."""

    path: str
    by_patient: dict[str, str]
    by_lesion: dict[tuple[str, str], str]
    #: the file's line of each (patient, lesion) outcome, for messages about it
    lesion_lines: dict[tuple[str, str], int] = field(default_factory=dict)

    def outcome(self, patient: str, lesion: str) -> str | None:
        """The lesion's own outcome, else its patient's, else None."""
        return self.by_lesion.get((patient, lesion), self.by_patient.get(patient))


def read_outcomes(path: str, manifest: Manifest | None = None) -> Outcomes:
    """Read ``OUTCOMES.csv`` (``patient[, lesion], outcome``; outcome responder or non-responder)."""
    path = os.path.abspath(path)
    by_patient: dict[str, str] = {}
    by_lesion: dict[tuple[str, str], str] = {}
    lines: dict[tuple[str, str | None], int] = {}
    known = set(manifest.patients) if manifest is not None else None
    for row in _records(path, ("patient", "outcome"), ("lesion",)):
        patient, lesion = row.text("patient", required=True), row.text("lesion")
        outcome = row.text("outcome", required=True).lower()
        if outcome not in OUTCOMES:
            raise row.error("outcome", f"{outcome!r} is not responder or non-responder")
        if known is not None and patient not in known:
            raise row.error("patient", f"patient {patient!r} is not in the manifest {manifest.path}")
        if (patient, lesion) in lines:
            what = "this patient and lesion" if lesion else "this patient"
            raise row.error("lesion" if lesion else "patient",
                            f"an outcome for {what} is already on line {lines[(patient, lesion)]}")
        lines[(patient, lesion)] = row.line
        if lesion is None:
            by_patient[patient] = outcome
        else:
            by_lesion[(patient, lesion)] = outcome
    if not lines:
        raise InputError("no outcome rows after the header", path)
    return Outcomes(path, by_patient, by_lesion, {key: line for key, line in lines.items() if key[1] is not None})
