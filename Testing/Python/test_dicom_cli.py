"""``analyze --dicom``: the DICOM objects written with the other outputs, from a multi-frame clip and
from a single-frame series, equal to the analysis's own files, each passing dciodvfy; a clear
one-line refusal when highdicom is missing."""
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

hd = pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")
nrrd = pytest.importorskip("nrrd")

from DCEUSResponseLib.app.cli import main  # noqa: E402
from DCEUSResponseLib.catalogue import CATALOGUE, parameter_names  # noqa: E402
from DCEUSResponseLib.export.dicom_outputs import SEG_FILE, SR_FILE  # noqa: E402
from DCEUSResponseLib.synthetic.clips import make_clip, write_clip, write_roi_masks  # noqa: E402
from DCEUSResponseLib.synthetic.dicom_us import write_ultrasound_series  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DCIODVFY = shutil.which("dciodvfy")
REFERENCE_FRAME = 7


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """One synthetic clip as a multi-frame file and as a single-frame series, with its ROI masks."""
    folder = tmp_path_factory.mktemp("dicom-cli")
    clip = make_clip(panel_shape=(60, 80), n_frames=40, frame_interval_s=2.0, display="dual", seed=3)
    multiframe = str(folder / "clip.dcm")
    write_clip(clip, multiframe, timing="vector")
    series = folder / "series"
    uids = write_ultrasound_series(series, clip.frames, clip.frame_times_s, regions=clip.regions)
    masks = write_roi_masks(clip, str(folder / "rois"))
    return {"clip": clip, "multiframe": multiframe, "series": str(series), "series_uids": uids, "masks": masks}


def _analyze(clip_path, masks, out, *extra):
    argv = ["analyze", clip_path, "--roi", masks["__segmentation__"], "--reference", "liver",
            "--reference-frame", str(REFERENCE_FRAME), "--no-motion-compensation", *extra, "--out", str(out)]
    assert main(argv) == 0
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def multiframe_run(clips, tmp_path_factory):
    out = tmp_path_factory.mktemp("mf") / "baseline"
    results = _analyze(clips["multiframe"], clips["masks"], out, "--maps", "--map-binning", "4", "--dicom")
    return out, results


def _dciodvfy_errors(path):
    run = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def test_dicom_folder_holds_a_map_per_parameter_the_seg_and_the_sr(multiframe_run):
    out, results = multiframe_run
    names = sorted(os.listdir(out / "dicom"))
    maps = sorted(f"PM_{name}.dcm" for name in parameter_names("bolus"))
    assert names == sorted(maps + [SEG_FILE, SR_FILE])
    assert not [n for n in os.listdir(out) if n.startswith(".dceus-staging")]
    for name in parameter_names("bolus"):
        values, _ = nrrd.read(str(out / "maps" / f"{name}.nrrd"), index_order="C")
        stored = pydicom.dcmread(out / "dicom" / f"PM_{name}.dcm")
        np.testing.assert_array_equal(stored.pixel_array, values.astype(np.float32))  # bit-exact, NaN kept
        quantity = stored.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
        assert quantity.QuantityDefinitionSequence[0].ConceptCodeSequence[0].CodeValue == \
            CATALOGUE[name].quantity_code.value


def test_sr_holds_results_json_and_seg_the_roi_masks(multiframe_run, clips):
    out, results = multiframe_run
    report = hd.sr.MeasurementReport.from_sequence([hd.sr.srread(out / "dicom" / SR_FILE)])
    groups = {g.tracking_identifier: g for g in report.get_volumetric_roi_measurement_groups()}
    assert sorted(groups) == sorted(results["rois"])
    counted = 0
    for name, roi in results["rois"].items():
        absolute = {m.name.value: m.value for m in groups[name].get_measurements() if m.derivation is None}
        for parameter, value in roi["parameters"].items():
            if value is not None:
                assert absolute[CATALOGUE[parameter].quantity_code.value] == value
                counted += 1
        time_point = [item.TextValue for item in _walk(pydicom.dcmread(out / "dicom" / SR_FILE))
                      if item.get("ValueType") == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == "C2348792"]
        assert set(time_point) == {"baseline"}  # the --out folder's name
    assert counted >= 2 * 15
    seg = hd.seg.segread(out / "dicom" / SEG_FILE)
    source = pydicom.dcmread(clips["multiframe"], stop_before_pixels=True)
    numbers = {seg.get_segment_description(n).segment_label: n for n in seg.get_segment_numbers()}
    pixels = seg.get_pixels_by_source_frame(source.SOPInstanceUID, [REFERENCE_FRAME + 1],
                                            segment_numbers=list(numbers.values()))
    for index, name in enumerate(numbers):
        np.testing.assert_array_equal(pixels[0, :, :, index].astype(bool), clips["clip"].roi_masks[name])


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) not installed")
def test_every_object_of_the_command_line_passes_dciodvfy(multiframe_run):
    out, _ = multiframe_run
    for name in sorted(os.listdir(out / "dicom")):
        assert _dciodvfy_errors(out / "dicom" / name) == [], name


def test_single_frame_series_reference_each_instance(clips, tmp_path):
    """A clip given as a folder of single-frame files: the SEG and the maps derive from the reference
    frame's instance (no frame number: it has one frame), the SR lists every instance as evidence."""
    out = tmp_path / "series-exam"
    _analyze(clips["series"], clips["masks"], out, "--maps", "--map-binning", "8", "--dicom")
    reference_uid = clips["series_uids"][REFERENCE_FRAME]
    seg = pydicom.dcmread(out / "dicom" / SEG_FILE)
    pm = pydicom.dcmread(out / "dicom" / "PM_PE.dcm")
    for dataset in (seg, pm):
        derivation = dataset.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
        assert derivation.ReferencedSOPInstanceUID == reference_uid
        assert derivation.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.6.1"
        assert "ReferencedFrameNumber" not in derivation
    masks = hd.seg.Segmentation.from_dataset(seg).get_pixels_by_source_instance([reference_uid])
    assert masks.shape[0] == 1 and masks.any()
    sr = pydicom.dcmread(out / "dicom" / SR_FILE)
    evidence = [item.ReferencedSOPInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence]
    assert set(clips["series_uids"]) <= set(evidence) and len(clips["series_uids"]) == 40
    report = hd.sr.MeasurementReport.from_sequence([hd.sr.srread(out / "dicom" / SR_FILE)])
    for group in report.get_volumetric_roi_measurement_groups():
        image = group.referenced_segment.source_images_for_segmentation[0]
        assert image.referenced_sop_instance_uid == reference_uid and image.referenced_frame_numbers is None
    if DCIODVFY is not None:
        for name in (SEG_FILE, SR_FILE, "PM_PE.dcm"):
            assert _dciodvfy_errors(out / "dicom" / name) == [], name


def test_without_highdicom_one_line_names_the_extra_and_nothing_is_written(clips, tmp_path):
    out = tmp_path / "no-highdicom"
    # highdicom made unimportable in a fresh interpreter (None in sys.modules: the import raises ImportError)
    code = ("import sys; sys.modules['highdicom'] = None; from DCEUSResponseLib.app.cli import main; "
            f"sys.exit(main({['analyze', clips['multiframe'], '--roi', clips['masks']['__segmentation__'], '--dicom', '--out', str(out)]!r}))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300,
                         env={**os.environ, "PYTHONPATH": REPO})
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "highdicom" in lines[0] and "[dicom]" in lines[0], run.stderr
    assert not out.exists() or not (out / "results.json").exists()


def _walk(dataset):
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from _walk(item)


def test_outputs_are_utf8_whatever_the_clip_character_set(clips, tmp_path):
    """An ISO 2022 clip (an empty first value, as Japanese exports write it) crashed highdicom (exit 3),
    and ROI names beyond Latin-1 were written as '?' in objects without a character set (dciodvfy
    errors). Every object is ISO_IR 192: the names and the patient's name survive, the SR names the
    software version like the other objects."""
    source = pydicom.dcmread(clips["multiframe"])
    source.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    source.PatientName = "Yamada^Tarou=山田^太郎"
    clip_path = str(tmp_path / "jis.dcm")
    source.save_as(clip_path)
    liver, lesion = clips["masks"]["liver"], clips["masks"]["lesion"]
    out = tmp_path / "exam"
    argv = ["analyze", clip_path, "--roi", f"Leber-ü={liver}", "--roi", f"Läsion 1 (肝)={lesion}",
            "--reference", "Leber-ü", "--no-motion-compensation", "--dicom", "--out", str(out)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no library warning (pydicom's encoding, matplotlib's glyphs)
        assert main(argv) == 0
    seg = pydicom.dcmread(out / "dicom" / SEG_FILE)
    sr = pydicom.dcmread(out / "dicom" / SR_FILE)
    for dataset in (seg, sr):
        assert dataset.SpecificCharacterSet == "ISO_IR 192"
        assert str(dataset.PatientName) == "Yamada^Tarou=山田^太郎"
        assert dataset.SoftwareVersions == seg.SoftwareVersions and str(dataset.Manufacturer) == "DCEUSResponse"
    assert [item.SegmentLabel for item in seg.SegmentSequence] == ["Leber-ü", "Läsion 1 (肝)"]
    texts = {item.TextValue for item in _walk(sr) if "TextValue" in item}
    assert "Läsion 1 (肝)" in texts
    if DCIODVFY is not None:
        for name in (SEG_FILE, SR_FILE):
            assert _dciodvfy_errors(out / "dicom" / name) == [], name


def test_a_rerun_replaces_the_earlier_runs_dicom_objects(clips, tmp_path):
    """A --maps --dicom run, then --dicom without maps into the same folder, left the first run's 15
    Parametric Maps beside the new SEG and SR (a PACS push of dicom/ sent maps of another analysis),
    and a run without --dicom left the old SR beside the new results.json. The commit removes an
    earlier run's DICOM objects it does not write; other files in dicom/ are the user's and stay."""
    out = tmp_path / "exam"
    _analyze(clips["multiframe"], clips["masks"], out, "--maps", "--map-binning", "8", "--dicom")
    (out / "dicom" / "notes.txt").write_text("mine", encoding="utf-8")
    assert len([n for n in os.listdir(out / "dicom") if n.startswith("PM_")]) == len(
        [n for n in CATALOGUE if n in json.loads((out / "results.json").read_text())["maps"]["median_of_fitted"]])
    _analyze(clips["multiframe"], clips["masks"], out, "--dicom")
    assert sorted(os.listdir(out / "dicom")) == sorted([SEG_FILE, SR_FILE, "notes.txt"])
    assert (out / "maps" / "PE.nrrd").exists()  # maps/ stays (results.json says maps: null)
    _analyze(clips["multiframe"], clips["masks"], out)
    assert sorted(os.listdir(out / "dicom")) == ["notes.txt"]


def test_dicom_of_a_folder_takes_no_maps_that_results_json_does_not_name(clips, tmp_path):
    """write_dicom_outputs (and fuse --dicom) read maps/*.nrrd whatever results.json said, so the
    maps of an earlier --maps run became Parametric Maps of a later run without maps."""
    from DCEUSResponseLib.export.dicom_outputs import write_dicom_outputs

    out = tmp_path / "exam"
    _analyze(clips["multiframe"], clips["masks"], out, "--maps", "--map-binning", "8")
    _analyze(clips["multiframe"], clips["masks"], out)
    written = write_dicom_outputs(str(out), clips["multiframe"], str(tmp_path / "dicom"))
    assert sorted(os.path.basename(p) for p in written) == sorted([SEG_FILE, SR_FILE])
