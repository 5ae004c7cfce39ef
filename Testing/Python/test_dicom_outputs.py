"""DICOM outputs (Parametric Maps, SEG, TID 1500 SR, Spatial Registration) of the demo patient's two exams.

Every object must pass dciodvfy without errors, read back through highdicom to exactly the values
of the analysis files (maps/*.nrrd, results.json, fusion.json), keep the lesions' tracking
identifiers across the exams, and load into slicer-core nodes on the clip's geometry.
"""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

hd = pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")
nrrd = pytest.importorskip("nrrd")

from DCEUSResponseLib.app.demo import EXAMS  # noqa: E402
from DCEUSResponseLib.errors import InputError  # noqa: E402
from DCEUSResponseLib.catalogue import (  # noqa: E402
    CATALOGUE,
    RELATIVE_DERIVATION,
    SEGMENT_ROLE_CODES,
    parameter_names,
)
from DCEUSResponseLib.export.dicom_common import ceus_frame_of_reference_uid, read_source_header  # noqa: E402
from DCEUSResponseLib.export.dicom_outputs import REG_FILE, SEG_FILE, SR_FILE, write_dicom_outputs  # noqa: E402
from DCEUSResponseLib.export.dicom_registration import build_spatial_registration  # noqa: E402
from DCEUSResponseLib.io.masks import read_roi_masks  # noqa: E402

DCIODVFY = shutil.which("dciodvfy")
# (code value, scheme, meaning, UCUM unit) of each quantity, from the catalogue (the one table of codes)
PARAMETER_CODES = {name: (*CATALOGUE[name].quantity_code, CATALOGUE[name].ucum)
                   for name in parameter_names("bolus", "replenishment")}
FUSION_CODES = {f"{section}.{name}": (*CATALOGUE[name].quantity_code, CATALOGUE[name].ucum)
                for section in ("pet", "ct", "pet3d") for name in parameter_names(section)}
CT_FRAME_OF_REFERENCE = "1.2.826.0.1.3680043.8.498.777"
ANGLE = np.deg2rad(25.0)
CEUS_TO_PATIENT = np.array([[np.cos(ANGLE), 0.0, np.sin(ANGLE), -101.25],
                            [0.0, 1.0, 0.0, 37.5],
                            [-np.sin(ANGLE), 0.0, np.cos(ANGLE), 1204.125],
                            [0.0, 0.0, 0.0, 1.0]])
# fusion.json of the baseline exam as the fusion contract writes it (values chosen, not computed).
FUSION = {"ct": {"frame_of_reference_uid": CT_FRAME_OF_REFERENCE},
          "registration": {"method": "landmarks", "ceus_to_patient_lps": CEUS_TO_PATIENT.tolist()},
          "rois": {"lesion1": {"pet": {"SUVmax": 23.4375, "SUVmean": 11.0625, "SUVpeak": 18.8125, "voxels": 57,
                                       "TLR": 4.21875},
                               "ct": {"HU_mean": 61.5},
                               "pet3d": {"SUVmax": 25.5, "SUVmean": 10.25, "SUVpeak": 19.0, "volume_ml": 14.75,
                                         "TLU": 151.1875, "distance_mm": 0.0}},
                   "liver": {"pet": {"SUVmax": 7.5, "SUVmean": 5.25, "SUVpeak": 6.125, "voxels": 80, "TLR": None},
                             "ct": {"HU_mean": 48.25}, "pet3d": None}}}


@pytest.fixture(scope="module")
def demo(demo_run, tmp_path_factory):
    """The demo study analysed (the session's demo run), and the DICOM outputs of both exams (baseline
    with a fusion.json), written beside the analyses in folders of this test's own."""
    assert demo_run.returncode == 0, demo_run.stderr
    root = demo_run.out
    fusion_path = tmp_path_factory.mktemp("dicom-fusion") / "fusion.json"
    fusion_path.write_text(json.dumps(FUSION), encoding="utf-8")
    exams = {}
    for order, exam in enumerate(EXAMS, start=1):
        analysis = root / exam
        results = json.loads((analysis / "results.json").read_text(encoding="utf-8"))
        clip_path = root / "study" / exam / "clip.dcm"
        rois = read_roi_masks([str(root / "study" / exam / "rois" / "rois.seg.nrrd")],
                              (results["clip"]["rows"], results["clip"]["columns"]),
                              tuple(results["clip"]["pixel_spacing_mm"]))
        out = tmp_path_factory.mktemp(f"dicom-{exam}") / "dicom"
        paths = write_dicom_outputs(str(analysis), str(clip_path), str(out), rois=rois, time_point=exam,
                                    time_point_order=order,
                                    fusion_path=str(fusion_path) if exam == "baseline" else None)
        exams[exam] = {"analysis": analysis, "clip": clip_path, "results": results, "rois": rois, "out": out,
                       "paths": paths}
    return exams


def _sr_groups(path):
    report = hd.sr.MeasurementReport.from_sequence([hd.sr.srread(path)])
    return {group.tracking_identifier: group for group in report.get_volumetric_roi_measurement_groups()}


def test_outputs_are_written_staged_and_complete(demo):
    for exam in demo.values():
        names = sorted(os.listdir(exam["out"]))
        maps = sorted(f"PM_{os.path.basename(p)[:-5]}.dcm" for p in os.listdir(exam["analysis"] / "maps")
                      if p.endswith(".nrrd") and p != "status.nrrd")
        expected = sorted(maps + [SEG_FILE, SR_FILE] + ([REG_FILE] if exam is demo["baseline"] else []))
        assert names == expected  # no staging folder left behind
        assert len(maps) == 15


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) not installed")
def test_every_object_passes_dciodvfy_without_errors(demo):
    for exam in demo.values():
        for path in exam["paths"]:
            run = subprocess.run([DCIODVFY, path], capture_output=True, text=True, timeout=120)
            errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
            assert errors == [], f"{os.path.basename(path)}: {errors}"


def test_parametric_maps_hold_the_nrrd_values_and_geometry(demo):
    exam = demo["baseline"]
    source = read_source_header(str(exam["clip"]))
    frame_of_reference = ceus_frame_of_reference_uid(source.SOPInstanceUID)
    for name, code in PARAMETER_CODES.items():
        nrrd_path = exam["analysis"] / "maps" / f"{name}.nrrd"
        if not nrrd_path.exists():
            continue
        values, header = nrrd.read(str(nrrd_path), index_order="C")
        pm = hd.pm.ParametricMap.from_dataset(pydicom.dcmread(exam["out"] / f"PM_{name}.dcm"))
        stored = pydicom.dcmread(exam["out"] / f"PM_{name}.dcm").pixel_array  # Float Pixel Data
        assert stored.dtype == np.float32 and stored.shape == values.shape
        np.testing.assert_array_equal(stored, values.astype(np.float32))  # NaN where not fitted, bit-exact
        mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
        assert (float(mapping.RealWorldValueSlope), float(mapping.RealWorldValueIntercept)) == (1.0, 0.0)
        assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == code[3]
        quantity = mapping.QuantityDefinitionSequence[0].ConceptCodeSequence[0]
        assert (quantity.CodeValue, quantity.CodingSchemeDesignator) == code[:2]
        shared = pm.SharedFunctionalGroupsSequence[0]
        position = pm.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
        assert [float(v) for v in position] == pytest.approx([*header["space origin"], 0.0], abs=1e-9)
        assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == pytest.approx(
            [header["space directions"][1][1], header["space directions"][0][0]], abs=1e-12)
        assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert pm.FrameOfReferenceUID == frame_of_reference
        derivation = pm.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
        assert derivation.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert int(derivation.ReferencedFrameNumber) == exam["results"]["clip"]["reference_frame"] + 1
        assert pm.PatientID == source.PatientID and pm.StudyInstanceUID == source.StudyInstanceUID


def test_segmentation_holds_the_rois_on_the_reference_frame(demo):
    exam = demo["baseline"]
    source = read_source_header(str(exam["clip"]))
    seg = hd.seg.segread(exam["out"] / SEG_FILE)
    assert seg.FrameOfReferenceUID == ceus_frame_of_reference_uid(source.SOPInstanceUID)
    numbers = {seg.get_segment_description(n).segment_label: n for n in seg.get_segment_numbers()}
    assert sorted(numbers) == sorted(roi.name for roi in exam["rois"])
    frame = exam["results"]["clip"]["reference_frame"] + 1
    pixels = seg.get_pixels_by_source_frame(source.SOPInstanceUID, [frame], segment_numbers=list(numbers.values()))
    roles = {"liver": "reference", "necrosis": "necrosis", "lesion1": "lesion", "lesion2": "lesion"}
    for index, roi in enumerate(sorted(exam["rois"], key=lambda r: numbers[r.name])):
        np.testing.assert_array_equal(pixels[0, :, :, index].astype(bool), roi.mask)
        description = seg.get_segment_description(numbers[roi.name])
        category, kind = SEGMENT_ROLE_CODES[roles[roi.name]]
        assert (description.segmented_property_category.value, description.segmented_property_type.value) == \
            (category[0], kind[0])
    assert seg.get_source_image_uids() == [(source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID)]


def test_sr_holds_the_parameter_table_exactly_with_codes_and_references(demo):
    exam = demo["followup"]
    groups = _sr_groups(exam["out"] / SR_FILE)
    assert sorted(groups) == sorted(exam["results"]["rois"])
    seg = pydicom.dcmread(exam["out"] / SEG_FILE)
    sr = pydicom.dcmread(exam["out"] / SR_FILE)
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    evidence = {item.ReferencedSOPInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
    assert {seg.SOPInstanceUID, read_source_header(str(exam["clip"])).SOPInstanceUID} <= evidence
    segment_numbers = {str(item.SegmentLabel): int(item.SegmentNumber) for item in seg.SegmentSequence}
    counted = 0
    for name, roi in exam["results"]["rois"].items():
        group = groups[name]
        reference = group.referenced_segment
        assert reference.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert reference.referenced_segment_numbers == [segment_numbers[name]]
        source_frames = reference.source_images_for_segmentation[0].referenced_frame_numbers
        assert source_frames == [exam["results"]["clip"]["reference_frame"] + 1]
        absolute = {m.name.value: m for m in group.get_measurements()
                    if m.derivation is None and m.method is not None}
        relative = {m.name.value: m for m in group.get_measurements()
                    if m.derivation is not None and m.derivation.value == RELATIVE_DERIVATION[0]}
        for parameter, value in roi["parameters"].items():
            code = PARAMETER_CODES[parameter]
            if value is None:
                assert code[0] not in absolute
                continue
            measurement = absolute[code[0]]
            assert measurement.value == value  # FloatingPointValue: the double of results.json
            assert (measurement.name.scheme_designator, measurement.unit.value) == (code[1], code[3])
            counted += 1
        for parameter, value in roi["relative"].items():
            if value is not None:
                assert relative[PARAMETER_CODES[parameter][0]].value == value
                assert relative[PARAMETER_CODES[parameter][0]].unit.value == "{ratio}"
    assert counted >= 3 * 15  # three fitted ROIs, 15 parameters each
    ttp = PARAMETER_CODES["TTP"]
    assert ttp[:2] == ("113069", "DCM") and PARAMETER_CODES["WiR"][:2] == ("126375", "DCM")
    assert PARAMETER_CODES["QOF"] == ("DCEUS0015", "99DCEUS", "Quality of fit", "%")


def test_sr_holds_the_fusion_measures_exactly(demo):
    groups = _sr_groups(demo["baseline"]["out"] / SR_FILE)
    for name, roi in FUSION["rois"].items():
        found = {}
        for measurement in groups[name].get_measurements():
            method = measurement.method.meaning if measurement.method else ""
            derivation = measurement.derivation.meaning if measurement.derivation else ""
            found[(measurement.name.value, method, derivation)] = measurement.value
        for group_name, values in roi.items():
            for measure, value in (values or {}).items():
                if value is None:
                    continue
                code = FUSION_CODES[f"{group_name}.{measure}"]
                matches = [v for (concept, method, derivation), v in found.items()
                           if concept == code[0] and (group_name == "pet3d") == ("3D" in method)
                           and (group_name == "ct") == ("CT" in method)
                           and (derivation or "") == {"SUVmax": "Maximum", "SUVmean": "Mean", "HU_mean": "Mean",
                                                      "SUVpeak": "Peak Value Within ROI"}.get(measure, "")]
                assert matches == [value], (name, group_name, measure)
    assert not any(m.method and "footprint" in m.method.meaning
                   for m in _sr_groups(demo["followup"]["out"] / SR_FILE)["lesion1"].get_measurements())


def test_lesion_tracking_identifiers_match_across_exams(demo):
    baseline, followup = (_sr_groups(demo[exam]["out"] / SR_FILE) for exam in EXAMS)
    assert sorted(baseline) == sorted(followup)
    for name in baseline:
        assert baseline[name].tracking_uid == followup[name].tracking_uid
    assert len({group.tracking_uid for group in baseline.values()}) == len(baseline)
    segs = [hd.seg.segread(demo[exam]["out"] / SEG_FILE) for exam in EXAMS]
    tracking = [{seg.get_segment_description(n).segment_label: seg.get_segment_description(n).tracking_uid
                 for n in seg.get_segment_numbers()} for seg in segs]
    assert tracking[0] == tracking[1] == {name: group.tracking_uid for name, group in baseline.items()}
    points = [pydicom.dcmread(demo[exam]["out"] / SR_FILE) for exam in EXAMS]
    texts = [[item.TextValue for item in _walk(sr) if item.get("ValueType") == "TEXT"
              and item.ConceptNameCodeSequence[0].CodeValue == "C2348792"] for sr in points]
    assert set(texts[0]) == {"baseline"} and set(texts[1]) == {"followup"}


def _walk(dataset):
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from _walk(item)


def test_spatial_registration_maps_the_ceus_frame_into_the_ct_frame(demo):
    exam = demo["baseline"]
    source = read_source_header(str(exam["clip"]))
    reg = pydicom.dcmread(exam["out"] / REG_FILE)
    assert reg.Modality == "REG" and reg.FrameOfReferenceUID == CT_FRAME_OF_REFERENCE
    items = {item.FrameOfReferenceUID: item for item in reg.RegistrationSequence}
    ceus = ceus_frame_of_reference_uid(source.SOPInstanceUID)
    assert set(items) == {CT_FRAME_OF_REFERENCE, ceus}
    assert ceus == pydicom.dcmread(exam["out"] / "PM_PE.dcm").FrameOfReferenceUID

    def matrix(item):
        sequence = item.MatrixRegistrationSequence[0].MatrixSequence[0]
        assert sequence.FrameOfReferenceTransformationMatrixType == "RIGID"
        return np.array([float(v) for v in sequence.FrameOfReferenceTransformationMatrix]).reshape(4, 4)

    np.testing.assert_allclose(matrix(items[ceus]), CEUS_TO_PATIENT, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(matrix(items[CT_FRAME_OF_REFERENCE]), np.eye(4))


def test_spatial_registration_refuses_a_matrix_that_is_not_rigid(demo):
    source = read_source_header(str(demo["baseline"]["clip"]))
    scaled = CEUS_TO_PATIENT.copy()
    scaled[:3, :3] *= 1.01
    with pytest.raises(InputError, match="not rigid"):
        build_spatial_registration(scaled, CT_FRAME_OF_REFERENCE, "1.2.3", source,
                                   series_instance_uid="1.2.3.4", sop_instance_uid="1.2.3.5")


def test_a_clip_that_is_not_the_analysed_one_is_refused(demo):
    with pytest.raises(InputError, match="results.json was made from clip"):
        write_dicom_outputs(str(demo["baseline"]["analysis"]), str(demo["followup"]["clip"]),
                            str(demo["baseline"]["analysis"] / "dicom-wrong"), rois=demo["baseline"]["rois"])
    assert not (demo["baseline"]["analysis"] / "dicom-wrong").exists()


@pytest.mark.slicer
def test_seg_and_maps_load_into_slicer_nodes_on_the_clip_geometry(demo):
    """SEG -> segmentation node on the clip's contrast volume, PM -> volume node; both where the clip is."""
    pytest.importorskip("slicer")
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData

    from DCEUSResponseLib.ceus.layout import find_layout
    from DCEUSResponseLib.clip import RoiMask
    from DCEUSResponseLib.io.dicom_us import read_clip
    from DCEUSResponseLib.scene.application import create_headless_application
    from DCEUSResponseLib.scene.clip_nodes import add_clip_sequences
    from DCEUSResponseLib.scene.nodes import add_new_node, volume_ijk_to_ras, vtk_matrix
    from DCEUSResponseLib.scene.segmentation import add_roi_segmentation, rois_from_segmentation

    exam = demo["baseline"]
    clip = read_clip(str(exam["clip"]))
    seg = hd.seg.segread(exam["out"] / SEG_FILE)
    numbers = seg.get_segment_numbers()
    frame = exam["results"]["clip"]["reference_frame"] + 1
    pixels = seg.get_pixels_by_source_frame(clip.uids["SOPInstanceUID"], [frame], segment_numbers=numbers)
    rois = [RoiMask(seg.get_segment_description(n).segment_label, pixels[0, :, :, i].astype(bool), "SEG")
            for i, n in enumerate(numbers)]
    # The SEG's own plane geometry is the clip's frame geometry (LPS -> RAS flips x and y).
    shared = seg.SharedFunctionalGroupsSequence[0]
    dy, dx = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    assert (dy, dx) == clip.frame_spacing_mm
    with create_headless_application() as app:
        nodes = add_clip_sequences(app.scene, clip, find_layout(clip))
        segmentation = add_roi_segmentation(app.scene, rois, clip, nodes.contrast_volume)
        back = {roi.name: roi.mask for roi in rois_from_segmentation(segmentation, clip)}
        for roi in exam["rois"]:
            np.testing.assert_array_equal(back[roi.name], roi.mask)

        pm = hd.pm.ParametricMap.from_dataset(pydicom.dcmread(exam["out"] / "PM_PE.dcm"))
        values = np.ascontiguousarray(pydicom.dcmread(exam["out"] / "PM_PE.dcm").pixel_array)
        row_mm, col_mm = (float(v) for v in pm.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing)
        x, y, z = (float(v) for v in pm.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient)
        ijk_to_ras = np.array([[-col_mm, 0, 0, -x], [0, -row_mm, 0, -y], [0, 0, 1, z], [0, 0, 0, 1]])
        volume = add_new_node(app.scene, "vtkMRMLScalarVolumeNode", "PE map from DICOM")
        volume.SetIJKToRASMatrix(vtk_matrix(ijk_to_ras))
        image = vtkImageData()
        image.SetDimensions(values.shape[1], values.shape[0], 1)
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(values.reshape(-1), deep=True))
        volume.SetAndObserveImageData(image)
        # The map's first pixel lies on the contrast panel's pixel origin_px of results.json.
        origin_row, origin_col = exam["results"]["maps"]["origin_px"]
        panel = volume_ijk_to_ras(nodes.contrast_volume)
        region = exam["results"]["clip"]["contrast_region"]
        expected = panel @ np.array([origin_col - region["x0"], origin_row - region["y0"], 0, 1])
        np.testing.assert_allclose(volume_ijk_to_ras(volume) @ np.array([0, 0, 0, 1]), expected, atol=1e-9)
        stored = numpy_support.vtk_to_numpy(volume.GetImageData().GetPointData().GetScalars()).reshape(values.shape)
        map_values, _ = nrrd.read(str(exam["analysis"] / "maps" / "PE.nrrd"), index_order="C")
        np.testing.assert_array_equal(stored, map_values.astype(np.float32))
