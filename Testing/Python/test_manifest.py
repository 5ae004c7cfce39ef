"""MANIFEST.csv and OUTCOMES.csv: what is read, and one line naming the line and column for each bad input."""
import datetime
import os
import re

import pytest

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.longitudinal.manifest import read_manifest, read_outcomes

HEADER = "patient,exam,date,clip,rois,reference"
GOOD_ROWS = [
    "P1,baseline,2024-01-10,p1/b1.dcm,lesion1=p1/l1.png;liver=p1/liver.png,liver",
    "P1,C2,2024-03-10,p1/c2a.dcm,lesion1=p1/l1.png;liver=p1/liver.png,liver",
    "P1,C2,2024-03-10,p1/c2b.dcm,lesion1=p1/l1.png;liver=p1/liver.png,liver",
    "P2,baseline,2024-02-01,p2/b1.dcm,p2/rois.seg.nrrd,",
    "P2,C2,2024-03-28,p2/c2.dcm,p2/rois.seg.nrrd,",
]
FILES = ["p1/b1.dcm", "p1/c2a.dcm", "p1/c2b.dcm", "p1/l1.png", "p1/l2.png", "p1/liver.png", "p2/b1.dcm",
         "p2/c2.dcm", "p2/rois.seg.nrrd", "ct/slice1.dcm", "pet/slice1.dcm", "ceus.csv", "ct.csv", "reg.h5",
         "pet.seg.nrrd"]


@pytest.fixture
def study(tmp_path):
    for name in FILES:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return tmp_path


def _write(folder, lines, name="MANIFEST.csv"):
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _error(folder, lines, name="MANIFEST.csv", reader=read_manifest):
    path = _write(folder, lines, name)
    with pytest.raises(InputError) as caught:
        reader(path)
    message = str(caught.value)
    assert message.startswith(path + ": ") and "\n" not in message
    return message


def test_a_good_manifest_is_read_with_exams_injections_and_paths(study):
    manifest = read_manifest(_write(study, [HEADER, *GOOD_ROWS]))
    assert manifest.patients == ("P1", "P2")
    assert [row.line for row in manifest.rows] == [2, 3, 4, 5, 6]
    assert [row.injection for row in manifest.rows] == [1, 1, 2, 1, 1]
    assert [(e.patient, e.exam, e.days_from_baseline, len(e.clips)) for e in manifest.exams] == [
        ("P1", "baseline", 0, 1), ("P1", "C2", 60, 2), ("P2", "baseline", 0, 1), ("P2", "C2", 56, 1)]
    first = manifest.rows[0]
    assert first.clip == os.path.join(str(study), "p1", "b1.dcm") and first.clip_text == "p1/b1.dcm"
    assert first.roi_names == ("lesion1", "liver")
    assert first.roi_specs == (f"lesion1={study / 'p1' / 'l1.png'}", f"liver={study / 'p1' / 'liver.png'}")
    assert first.reference == "liver" and first.date == datetime.date(2024, 1, 10)
    assert manifest.rows[2].output_dir == os.path.join("exams", "P1", "C2", "2")
    assert manifest.rows[3].roi_names is None and manifest.rows[3].roi_specs == (str(study / "p2" / "rois.seg.nrrd"),)
    assert manifest.rows[3].reference is None
    options = first.analysis_options(maps=True)
    assert options.reference == "liver" and options.maps and options.dynamic_range_db is None \
        and options.resolved_dynamic_range_db == 60.0 and options.dynamic_range_source == "default"


def test_optional_columns_and_fusion_cells(study):
    lines = ["patient,exam,date,clip,rois,dynamic_range_db,injection_time_s,model,reference_frame,ct,pet,"
             "landmarks,transform,pet_segmentation",
             "P1,b,2024-01-10T09:30,p1/b1.dcm,a=p1/l1.png,45,3.5,gamma,12,ct::1.2.3,pet,ceus.csv=ct.csv,,pet.seg.nrrd",
             "P1,c,2024-02-10,p1/c2a.dcm,a=p1/l1.png,,,,,ct,,,reg.h5,"]
    rows = read_manifest(_write(study, lines)).rows
    assert rows[0].date == datetime.date(2024, 1, 10)
    assert (rows[0].dynamic_range_db, rows[0].injection_time_s, rows[0].model, rows[0].reference_frame) == \
        (45.0, 3.5, "gamma", 12)
    assert rows[0].ct == str(study / "ct") + "::1.2.3" and rows[0].pet == str(study / "pet")
    assert rows[0].landmarks == (str(study / "ceus.csv"), str(study / "ct.csv"))
    assert rows[0].pet_segmentation == str(study / "pet.seg.nrrd") and rows[0].fused
    assert rows[1].transform == str(study / "reg.h5") and rows[1].dynamic_range_db is None
    assert rows[1].analysis_options().dynamic_range_source == "default"


def _where(message):
    found = re.search(r": line (\d+)(?:, column '([a-z_]+)')?: ", message)
    assert found, message
    return int(found.group(1)), found.group(2)


@pytest.mark.parametrize("lines, line, column, words", [
    ([HEADER + ",scanner", *GOOD_ROWS], 1, "scanner", "unknown column"),
    (["patient,exam,date,clip", *GOOD_ROWS], 1, None, "required column 'rois' is missing"),
    (["patient,exam,date,clip,rois,rois"], 1, "rois", "appears twice"),
    ([HEADER, *GOOD_ROWS[:2], "P1,C2,,p1/c2b.dcm,lesion1=p1/l1.png,"], 4, "date", "required cell is empty"),
    ([HEADER, GOOD_ROWS[0], ",C2,2024-03-10,p1/c2a.dcm,lesion1=p1/l1.png,"], 3, "patient", "required cell"),
    ([HEADER, GOOD_ROWS[0], "P1,C2,2024-03-10,p1/c2a.dcm,,"], 3, "rois", "required cell is empty"),
    ([HEADER, GOOD_ROWS[0], "P1,C2,10/03/2024,p1/c2a.dcm,lesion1=p1/l1.png,"], 3, "date", "not an ISO 8601 date"),
    ([HEADER, GOOD_ROWS[0], "P1,C2,2024-02-30,p1/c2a.dcm,lesion1=p1/l1.png,"], 3, "date", "not an ISO 8601 date"),
    ([HEADER, *GOOD_ROWS[:2], "P1,C2,2024-03-10,p1/b1.dcm,lesion1=p1/l1.png,"], 4, "clip",
     "already the clip of line 2"),
    ([HEADER, *GOOD_ROWS[:2], "P1,C2,2024-03-10,./p1/../p1/b1.dcm,lesion1=p1/l1.png,"], 4, "clip",
     "already the clip of line 2"),
    ([HEADER, GOOD_ROWS[0], "P1,screening,2024-01-10,p1/c2a.dcm,lesion1=p1/l1.png,"], 3, "date", "has no baseline"),
    ([HEADER, "P1,b,2024-01-10,p1/b1.dcm,lesion1=p1/l1.png;lesion1=p1/l2.png,"], 2, "rois",
     "lesion name 'lesion1' is used for two ROIs"),
    ([HEADER, GOOD_ROWS[0], "P1,baseline,2024-01-11,p1/c2a.dcm,lesion1=p1/l1.png,"], 3, "date", "is dated 2024-01-10"),
    ([HEADER, "P1,b,2024-01-10,p1/missing.dcm,lesion1=p1/l1.png,"], 2, "clip", "not found"),
    ([HEADER, "P1,b,2024-01-10,p1/b1.dcm,lesion1=p1/nothing.png,"], 2, "rois", "not found"),
    ([HEADER, "P1,b,2024-01-10,p1/b1.dcm,p1/l1.png,"], 2, "rois", "is not NAME=MASK"),
    ([HEADER, "P1,b,2024-01-10,p1/b1.dcm,lesion1=p1/l1.png,kidney"], 2, "reference", "not one of the clip's ROIs"),
    ([HEADER, "P1,../b,2024-01-10,p1/b1.dcm,lesion1=p1/l1.png,"], 2, "exam", "cannot be a folder name"),
    ([HEADER, "P1,b,2024-01-10,p1/b1.dcm,lesion1=p1/l1.png,,extra"], 2, None, "7 cells but the header has 6"),
    (["patient,exam,date,clip,rois,dynamic_range_db", "P1,b,2024-01-10,p1/b1.dcm,a=p1/l1.png,0"], 2,
     "dynamic_range_db", "out of range"),
    (["patient,exam,date,clip,rois,reference_frame", "P1,b,2024-01-10,p1/b1.dcm,a=p1/l1.png,1.5"], 2,
     "reference_frame", "not an integer"),
    (["patient,exam,date,clip,rois,model", "P1,b,2024-01-10,p1/b1.dcm,a=p1/l1.png,cubic"], 2, "model",
     "unknown model"),
    (["patient,exam,date,clip,rois,pet", "P1,b,2024-01-10,p1/b1.dcm,a=p1/l1.png,pet"], 2, "pet", "needs a ct"),
    (["patient,exam,date,clip,rois,ct", "P1,b,2024-01-10,p1/b1.dcm,a=p1/l1.png,ct"], 2, "ct",
     "exactly one of landmarks or transform"),
    (["patient,exam,date,clip,rois,ct,landmarks", "P1,b,2024-01-10,p1/b1.dcm,a=p1/l1.png,ct,ceus.csv"], 2,
     "landmarks", "CEUS_POINTS=CT_POINTS"),
    (["patient,exam,date,clip,rois,ct,transform", "P1,b,2024-01-10,p1/b1.dcm,a=p1/l1.png,nowhere,reg.h5"], 2,
     "ct", "folder not found"),
])
def test_bad_manifests_name_the_line_and_the_column(study, lines, line, column, words):
    message = _error(study, lines)
    assert _where(message) == (line, column)
    assert words in message


def test_line_numbers_count_blank_and_multiline_records(study):
    lines = [HEADER, GOOD_ROWS[0], "", 'P1,C2,2024-03-10,p1/c2a.dcm,"lesion1=p1/l1.png;', 'liver=p1/liver.png",liver',
             "P1,C2,2024-03-10,p1/c2b.dcm,lesion1=p1/l1.png,nowhere"]
    message = _error(study, lines)
    assert _where(message) == (6, "reference")


def test_empty_and_non_utf8_files(study):
    assert "no header line" in _error(study, [""])
    assert "no clip rows" in _error(study, [HEADER])
    path = study / "latin1.csv"
    path.write_bytes((HEADER + "\nP\xe9,b,2024-01-10,p1/b1.dcm,a=p1/l1.png,\n").encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_manifest(str(path))
    with pytest.raises(InputError, match="file not found"):
        read_manifest(str(study / "none.csv"))


def test_outcomes_by_patient_and_by_lesion(study):
    manifest = read_manifest(_write(study, [HEADER, *GOOD_ROWS]))
    path = _write(study, ["patient,lesion,outcome", "P1,,Responder", "P1,lesion2,non-responder",
                          "P2,,non-responder"], "OUTCOMES.csv")
    outcomes = read_outcomes(path, manifest)
    assert outcomes.outcome("P1", "lesion1") == "responder"
    assert outcomes.outcome("P1", "lesion2") == "non-responder"
    assert outcomes.outcome("P2", "lesion1") == "non-responder"
    assert outcomes.outcome("P3", "lesion1") is None


@pytest.mark.parametrize("lines, line, column, words", [
    (["patient,outcome,response"], 1, "response", "unknown column"),
    (["patient,outcome", "P1,stable"], 2, "outcome", "not responder or non-responder"),
    (["patient,outcome", "P1,responder", "P1,non-responder"], 3, "patient", "already on line 2"),
    (["patient,lesion,outcome", "P1,a,responder", "P1,a,responder"], 3, "lesion", "already on line 2"),
    (["patient,outcome", "P9,responder"], 2, "patient", "not in the manifest"),
    (["patient,outcome", "P1,"], 2, "outcome", "required cell is empty"),
])
def test_bad_outcomes_name_the_line_and_the_column(study, lines, line, column, words):
    manifest = read_manifest(_write(study, [HEADER, *GOOD_ROWS]))
    message = _error(study, lines, "OUTCOMES.csv", reader=lambda p: read_outcomes(p, manifest))
    assert _where(message) == (line, column)
    assert words in message
