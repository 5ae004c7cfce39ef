"""The module's PET/CT section on slicer-core (scene/pet_ct.py, scene/pet_ct_measure.py): the DICOM files
behind a volume node, SUV consistent with PETDICOMExtension, landmark pairs from Markups point lists,
Register (FRE, residuals, flagged pair, expected TRE), the CEUS nodes under the registration, and Measure
(fuse's numbers against the synthetic truth, its table and views on the user's nodes)."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pydicom
import pytest

slicer = pytest.importorskip("slicer")

from DCEUSResponseLib.app.demo import demo_landmarks  # noqa: E402
from DCEUSResponseLib.errors import InputError  # noqa: E402
from DCEUSResponseLib.fusion.inputs import read_analysis  # noqa: E402
from DCEUSResponseLib.fusion.pipeline import fuse  # noqa: E402
from DCEUSResponseLib.io.volumes import read_volume  # noqa: E402
from DCEUSResponseLib.pet.suv import suv_factor_of  # noqa: E402
from DCEUSResponseLib.scene import pet_ct, volume_sources  # noqa: E402
from DCEUSResponseLib.scene.application import create_headless_application  # noqa: E402
from DCEUSResponseLib.scene.clip_nodes import add_clip_sequences  # noqa: E402
from DCEUSResponseLib.scene.fusion_nodes import add_patient_volume  # noqa: E402
from DCEUSResponseLib.scene.fusion_views import ceus_plane_normal_ras  # noqa: E402
from DCEUSResponseLib.scene.nodes import numpy_matrix, vtk_matrix  # noqa: E402
from DCEUSResponseLib.scene.pet_ct_measure import LANDMARK_FILES, measure_pet_ct  # noqa: E402
from DCEUSResponseLib.scene.segmentation import add_roi_segmentation  # noqa: E402
from DCEUSResponseLib.synthetic.patient import DEMO_LESION_VALUES, LIVER_SUV  # noqa: E402

F = np.array([-1.0, -1.0, 1.0])
SPACING = (0.2, 0.2)


class FileIndex:
    """What the module asks of ``slicer.dicomDatabase`` (``fileForInstance``), over real files: slicer-core
    has no ctkDICOMDatabase."""

    def __init__(self, *folders):
        self.paths = {}
        for folder in folders:
            for name in sorted(os.listdir(folder)):
                path = os.path.join(folder, name)
                self.paths[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path

    def fileForInstance(self, uid):  # noqa: N802 (ctkDICOMDatabase's name)
        return self.paths.get(uid, "")


def _instance_uids(folder):
    """The series' SOP Instance UIDs in slice order (as DICOMScalarVolumePlugin writes the attribute)."""
    headers = [pydicom.dcmread(os.path.join(folder, n), stop_before_pixels=True) for n in os.listdir(folder)]
    headers.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    return " ".join(str(ds.SOPInstanceUID) for ds in headers)


def _volume_node(scene, name, folder, modality):
    volume = read_volume(folder, modality)
    node = add_patient_volume(scene, name, volume.values, volume.ijk_to_lps)
    node.SetAttribute(volume_sources.INSTANCE_UIDS_ATTRIBUTE, _instance_uids(folder))
    return node, volume


def _point_list(scene, name, labels, points_ras):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    node.CreateDefaultDisplayNodes()
    for label, point in zip(labels, points_ras):
        node.SetNthControlPointLabel(node.AddControlPoint(*map(float, point)), label)
    return node


def _lists(scene, noise_mm=0.0, seed=0):
    ceus, ct = demo_landmarks(noise_mm=noise_mm, seed=seed)
    labels = [label for label, _, _ in ceus]
    ceus_ras = np.array([[-column * SPACING[1], -row * SPACING[0], 0.0] for _, row, column in ceus])
    ct_ras = np.array([point for _, point in ct]) * F
    return _point_list(scene, "CEUS points", labels, ceus_ras), _point_list(scene, "CT points", labels, ct_ras)


@pytest.fixture(scope="module")
def inputs(fusion_case):
    return read_analysis(fusion_case["analysis"])


@pytest.fixture()
def app():
    with create_headless_application() as application:
        yield application


@pytest.fixture()
def scene_case(app, inputs, fusion_case):
    """The module's scene before PET/CT: the clip's browser, its ROI segmentation, the loaded CT and PET."""
    scene = app.scene
    clip_nodes = add_clip_sequences(scene, inputs.clip, inputs.layout)
    segmentation = add_roi_segmentation(scene, inputs.rois, inputs.clip, clip_nodes.contrast_volume)
    ct_node, ct_volume = _volume_node(scene, "CT", fusion_case["ct"], "CT")
    pet_node, pet_volume = _volume_node(scene, "PET", fusion_case["pet"], "PT")
    return {"scene": scene, "clip": clip_nodes, "segmentation": segmentation, "ct": ct_node, "pet": pet_node,
            "ct_volume": ct_volume, "pet_volume": pet_volume}


# -- the DICOM files behind a node --------------------------------------------------------------


def test_the_files_of_a_node_come_from_the_database_and_feed_fuse(scene_case, fusion_case, tmp_path):
    database = FileIndex(fusion_case["ct"], fusion_case["pet"])
    files = volume_sources.dicom_files(scene_case["ct"], database)
    assert sorted(files) == sorted(os.path.join(fusion_case["ct"], n) for n in os.listdir(fusion_case["ct"]))
    # the series' own folder holds nothing else: fuse reads it as it is
    assert volume_sources.series_source(files, str(tmp_path), "ct") == fusion_case["ct"]
    both = files + volume_sources.dicom_files(scene_case["pet"], database)
    # a subset of a folder (a series sharing its folder): the files are linked into a folder of their own
    subset = sorted(files)[1:]
    linked = volume_sources.series_source(subset, str(tmp_path), "ct")
    assert linked == str(tmp_path / "ct") and len(os.listdir(linked)) == len(files) - 1
    mixed = tmp_path / "mixed"  # CT and PET in one folder, as an export may hold them
    mixed.mkdir()
    for path in both:
        shutil.copyfile(path, mixed / f"{os.path.basename(os.path.dirname(path))}-{os.path.basename(path)}")
    ct_files = [str(mixed / f"ct-{os.path.basename(path)}") for path in files]
    selected = volume_sources.series_source(ct_files, str(tmp_path), "ct2")  # the folder and the CT's series UID
    assert selected == f"{mixed}::{scene_case['ct_volume'].series_uid}" and not (tmp_path / "ct2").exists()
    ct = read_volume(selected, "CT")
    assert np.array_equal(ct.values, scene_case["ct_volume"].values)
    # a volume with only part of its series' files in that folder (Slicer split the series) is linked
    assert volume_sources.series_source(ct_files[1:], str(tmp_path), "ct4") == str(tmp_path / "ct4")
    # a series spread over two folders (files referenced in place) is linked; its common parent is
    # never taken for the series (it would be walked, and hold the PET too)
    halves = [tmp_path / "spread" / "a", tmp_path / "spread" / "b"]
    spread = []
    for k, path in enumerate(sorted(files)):
        halves[k % 2].mkdir(parents=True, exist_ok=True)
        spread.append(shutil.copyfile(path, halves[k % 2] / os.path.basename(path)))
    assert volume_sources.series_source([str(p) for p in spread], str(tmp_path), "ct3") == str(tmp_path / "ct3")
    # the explicit folder wins (the fallback without a database)
    assert volume_sources.volume_source(scene_case["ct"], str(tmp_path), "ct", None, folder="X::1") == "X::1"


def test_the_file_lookup_names_what_is_missing(scene_case, fusion_case):
    with pytest.raises(InputError, match="no DICOM database"):
        volume_sources.dicom_files(scene_case["ct"], None)
    with pytest.raises(InputError, match="has no file for 1 of"):
        index = FileIndex(fusion_case["ct"])
        index.paths.pop(next(iter(index.paths)))
        volume_sources.dicom_files(scene_case["ct"], index)
    scene_case["ct"].RemoveAttribute(volume_sources.INSTANCE_UIDS_ATTRIBUTE)
    with pytest.raises(InputError, match="not loaded from the DICOM database"):
        volume_sources.dicom_files(scene_case["ct"], FileIndex(fusion_case["ct"]))


# -- SUV, consistent with PETDICOMExtension -----------------------------------------------------


def _mark_like_petdicom(node):
    units = slicer.vtkCodedEntry()
    units.SetValueSchemeMeaning(*pet_ct.SUVBW_UNITS)
    node.SetVoxelValueUnits(units)
    node.SetAttribute(pet_ct.RWV_ATTRIBUTE, "1.2.3.4")


def test_a_bq_per_ml_node_gets_one_suv_node_and_never_a_second(scene_case, fusion_case):
    scene, node, volume = scene_case["scene"], scene_case["pet"], scene_case["pet_volume"]
    factor = suv_factor_of(volume)
    assert factor.factor == pytest.approx(fusion_case["truth"].suv_factor, rel=1e-3)
    raw = pet_ct.pet_suv(node, volume, factor)
    assert not raw.node_is_suv and raw.node_factor == pytest.approx(1.0, abs=1e-6) and raw.warnings == []
    suv_node = pet_ct.suv_volume_node(scene, node, raw)
    assert suv_node is not node and suv_node.GetVoxelValueUnits().GetCodeValue() == "{SUVbw}g/ml"
    from vtkmodules.util import numpy_support

    values = numpy_support.vtk_to_numpy(suv_node.GetImageData().GetPointData().GetScalars())
    np.testing.assert_allclose(values, volume.values.ravel() * np.float32(factor.factor), rtol=1e-6)
    np.testing.assert_allclose(numpy_matrix(_ijk_to_ras(suv_node)), numpy_matrix(_ijk_to_ras(node)))
    again = pet_ct.pet_suv(suv_node, volume, factor)
    assert again.node_is_suv and again.marked_by == "DCEUSResponse" and again.warnings == []
    assert again.node_factor == pytest.approx(factor.factor, rel=1e-6)
    assert pet_ct.suv_volume_node(scene, suv_node, again) is suv_node  # not multiplied twice
    count = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    assert pet_ct.suv_volume_node(scene, node, raw) is suv_node  # a second Measure refills it
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == count


def _ijk_to_ras(node):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix


@pytest.mark.parametrize("scale, warned", [(1.0, False), (1.0005, False), (1.01, True)])
def test_a_petdicom_suv_node_is_used_as_it_is_and_a_differing_factor_is_reported(scene_case, scale, warned):
    scene, volume = scene_case["scene"], scene_case["pet_volume"]
    factor = suv_factor_of(volume)
    node = add_patient_volume(scene, "PET SUVbw (PETDICOM)", volume.values * (factor.factor * scale),
                              volume.ijk_to_lps)
    _mark_like_petdicom(node)
    check = pet_ct.pet_suv(node, volume, factor)
    assert check.node_is_suv and check.marked_by == "PETDICOMExtension"
    assert check.node_factor == pytest.approx(factor.factor * scale, rel=1e-5)
    assert bool(check.warnings) == warned
    if warned:
        assert "+1.00 %" in check.warnings[0]
    assert pet_ct.suv_volume_node(scene, node, check) is node


def test_a_node_in_other_units_is_reported(scene_case):
    scene, volume = scene_case["scene"], scene_case["pet_volume"]
    node = add_patient_volume(scene, "PET kBq", volume.values / 1000.0, volume.ijk_to_lps)
    check = pet_ct.pet_suv(node, volume, suv_factor_of(volume))
    assert not check.node_is_suv and "not in the series' BQML" in check.warnings[0]


# -- landmarks and Register ----------------------------------------------------------------------


def test_point_lists_register_exactly_as_fuse_does_from_the_files(scene_case, inputs, fusion_case):
    ceus_list, ct_list = _lists(scene_case["scene"], noise_mm=1.0, seed=3)
    result = pet_ct.register_point_lists(ceus_list, ct_list, inputs)
    engine = fuse(fusion_case["analysis"], fusion_case["ct"], None, landmarks=fusion_case["noisy"])
    np.testing.assert_allclose(result.registration.ceus_to_patient_lps, engine.registration.ceus_to_patient_lps,
                               atol=1e-9)
    assert result.panel == engine.registration_panel == "bmode"
    assert result.registration.fre_rms_mm == pytest.approx(engine.registration.fre_rms_mm, rel=1e-9)
    assert result.registration.tre_loo_rms_mm == pytest.approx(engine.registration.tre_loo_rms_mm, rel=1e-9)
    for name, roi in engine.rois.items():
        assert result.expected_tre_mm[name] == pytest.approx(roi.expected_tre_mm, rel=1e-9)
    assert 1.0 < result.registration.fre_rms_mm < 3.0 and result.flagged is None  # 1 mm per axis on the CT points
    table = pet_ct.add_pairs_table(scene_case["scene"], result)
    assert table.GetNumberOfRows() == 6
    assert float(table.GetAttribute("DCEUS.FRE_mm")) == pytest.approx(result.registration.fre_rms_mm)
    residuals = [float(table.GetCellText(row, 1)) for row in range(6)]
    np.testing.assert_allclose(residuals, [p.residual_mm for p in result.registration.landmarks], rtol=1e-5)
    assert "FRE" in result.summary() and "LOO TRE" in result.summary()


def test_a_misplaced_pair_is_flagged_and_coloured(scene_case, inputs):
    ceus_list, ct_list = _lists(scene_case["scene"])
    index = ct_list.GetControlPointIndexByLabel("upper_right")
    position = [0.0, 0.0, 0.0]
    ct_list.GetNthControlPointPosition(index, position)
    ct_list.SetNthControlPointPosition(index, position[0] + 8.0, position[1], position[2])
    result = pet_ct.register_point_lists(ceus_list, ct_list, inputs)
    assert result.flagged == "upper_right"
    residuals = {p.label: p.residual_mm for p in result.registration.landmarks}
    others = [r for label, r in residuals.items() if label != "upper_right"]
    assert residuals["upper_right"] == max(residuals.values())
    assert residuals["upper_right"] > pet_ct.FLAG_RATIO * np.sqrt(np.mean(np.square(others)))
    # the rigid fit spreads the 8 mm over the others: the residual is below 2 x FRE, which would miss it
    assert residuals["upper_right"] < 2.0 * result.registration.fre_rms_mm
    pet_ct.flag_pair([ceus_list, ct_list], result.flagged)
    for point_list in (ceus_list, ct_list):
        selected = [point_list.GetNthControlPointSelected(i) for i in range(point_list.GetNumberOfControlPoints())]
        assert selected.count(False) == 1 and not selected[point_list.GetControlPointIndexByLabel("upper_right")]
        assert point_list.GetDisplayNode().GetColor() == pytest.approx(pet_ct.FLAG_COLOUR)
    table = pet_ct.add_pairs_table(scene_case["scene"], result)
    flags = [table.GetCellText(row, 2) for row in range(table.GetNumberOfRows())]
    assert flags.count("1") == 1
    pet_ct.flag_pair([ceus_list, ct_list], None)
    assert all(ct_list.GetNthControlPointSelected(i) for i in range(ct_list.GetNumberOfControlPoints()))


def test_place_pair_alternates_ceus_then_its_ct_partner(scene_case, inputs):
    scene = scene_case["scene"]
    ceus_list = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "CEUS")
    ct_list = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "CT")
    placed = []
    for step in range(6):
        target, label, index = pet_ct.next_pair_point(ceus_list, ct_list)
        assert target.GetControlPointPlacementStartIndex() == index
        assert target.GetNthControlPointPositionStatus(index) == target.PositionUndefined
        placed.append((target.GetName(), label))
        target.SetNthControlPointPosition(index, float(step), 0.0, 0.0)  # the click in the view
    assert placed == [("CEUS", "P1"), ("CT", "P1"), ("CEUS", "P2"), ("CT", "P2"), ("CEUS", "P3"), ("CT", "P3")]
    # a cancelled placement is reused, not duplicated
    first = pet_ct.next_pair_point(ceus_list, ct_list)
    again = pet_ct.next_pair_point(ceus_list, ct_list)
    assert first[1:] == again[1:] == ("P4", 3) and ceus_list.GetNumberOfControlPoints() == 4
    assert pet_ct.point_list_landmarks(ceus_list, ceus=True).labels == ("P1", "P2", "P3")


def test_exact_pairs_flag_nothing(scene_case, inputs):
    result = pet_ct.register_point_lists(*_lists(scene_case["scene"]), inputs)
    assert result.registration.fre_rms_mm < 1e-6 and result.flagged is None


def test_bad_point_lists_are_one_line_errors(scene_case, inputs):
    scene = scene_case["scene"]
    ceus_list, ct_list = _lists(scene)
    ct_list.SetNthControlPointLabel(0, "elsewhere")
    with pytest.raises(InputError, match="no partner"):
        pet_ct.register_point_lists(ceus_list, ct_list, inputs)
    ct_list.SetNthControlPointLabel(0, "lesion1")
    ct_list.SetNthControlPointLabel(1, "lesion1")
    with pytest.raises(InputError, match="appears twice"):
        pet_ct.register_point_lists(ceus_list, ct_list, inputs)
    ceus_list.SetNthControlPointLabel(2, "")
    with pytest.raises(InputError, match="has no label"):
        pet_ct.point_list_landmarks(ceus_list, ceus=True)
    empty = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "empty")
    with pytest.raises(InputError, match="no placed control points"):
        pet_ct.point_list_landmarks(empty, ceus=False)
    # CEUS points on both panels of the dual display
    ceus_list, ct_list = _lists(scene)
    ceus_list.SetNthControlPointPosition(0, -300 * SPACING[1], -100 * SPACING[0], 0.0)
    with pytest.raises(InputError, match="not all on one panel"):
        pet_ct.register_point_lists(ceus_list, ct_list, inputs)


def test_the_ceus_nodes_stand_in_the_patient_and_a_point_placed_there_maps_to_its_pixel(scene_case, inputs):
    scene, clip_nodes = scene_case["scene"], scene_case["clip"]
    ceus_list, ct_list = _lists(scene)
    result = pet_ct.register_point_lists(ceus_list, ct_list, inputs)
    nodes = pet_ct.ceus_nodes_of_browser(clip_nodes.browser, scene_case["segmentation"], landmarks=ceus_list)
    assert nodes.contrast_volume is clip_nodes.contrast_volume and nodes.bmode_volume is clip_nodes.bmode_volume
    matrix = result.registration.ceus_to_patient_lps
    registration = pet_ct.place_ceus_nodes(scene, matrix, result.panel, inputs, nodes)
    assert ceus_list.GetTransformNodeID() == registration.GetID() == clip_nodes.bmode_volume.GetTransformNodeID()
    assert scene_case["segmentation"].GetTransformNodeID() is not None
    # the contrast panel's first pixel lands where the engine's panel matrix puts it
    engine = fuse(inputs.folder, scene_case["ct_volume"].source, None, landmarks=_files(inputs, result))
    for volume, panel in ((clip_nodes.contrast_volume, "contrast"), (clip_nodes.bmode_volume, "bmode")):
        world = _to_world(volume) @ numpy_matrix(_ijk_to_ras(volume)) @ [0.0, 0.0, 0.0, 1.0]
        region = inputs.layout.contrast if panel == "contrast" else inputs.layout.bmode
        frame = [region.x0 * SPACING[1], region.y0 * SPACING[0], 0.0, 1.0]
        np.testing.assert_allclose(world[:3] * F, (engine.panel_matrix(panel) @ frame)[:3], atol=1e-6)
    # a point placed on the registered B-mode panel, at the world position of pixel (row 100, column 60)
    pixel_world = (_to_world(clip_nodes.bmode_volume) @ [-60 * SPACING[1], -100 * SPACING[0], 0.0, 1.0])[:3]
    index = ceus_list.AddControlPoint(0.0, 0.0, 0.0)
    ceus_list.SetNthControlPointLabel(index, "placed")
    ceus_list.SetNthControlPointPositionWorld(index, *pixel_world)
    placed = pet_ct.point_list_landmarks(ceus_list, ceus=True)
    np.testing.assert_allclose(placed.points[placed.labels.index("placed")], [60 * 0.2, 100 * 0.2, 0.0], atol=1e-9)
    # Register again refills the same transform nodes
    again = pet_ct.place_ceus_nodes(scene, matrix, result.panel, inputs, nodes)
    assert again is registration and scene.GetNumberOfNodesByClass("vtkMRMLLinearTransformNode") == 2


def _to_world(node):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    parent = node.GetParentTransformNode()
    if parent is not None:
        parent.GetMatrixTransformToWorld(matrix)
    return numpy_matrix(matrix)


def _files(inputs, result):
    import tempfile

    folder = tempfile.mkdtemp(prefix="pet-ct-")
    ceus = os.path.join(folder, "ceus.csv")
    ct = os.path.join(folder, "ct.csv")
    with open(ceus, "w") as stream:
        stream.write("label,x,y,z\n" + "".join(f"{p.label},{p.ceus_mm[0]!r},{p.ceus_mm[1]!r},{p.ceus_mm[2]!r}\n"
                                                for p in result.registration.landmarks))
    with open(ct, "w") as stream:
        stream.write("label,x,y,z\n" + "".join(f"{p.label},{p.patient_mm[0]!r},{p.patient_mm[1]!r},"
                                                f"{p.patient_mm[2]!r}\n" for p in result.registration.landmarks))
    return f"{ceus}={ct}"


# -- Measure -------------------------------------------------------------------------------------


def test_measure_gives_fuses_numbers_the_truth_and_the_views_on_the_users_nodes(app, scene_case, inputs,
                                                                                fusion_case, tmp_path):
    scene = scene_case["scene"]
    ceus_list, ct_list = _lists(scene)
    nodes = pet_ct.ceus_nodes_of_browser(scene_case["clip"].browser, scene_case["segmentation"], landmarks=ceus_list)
    database = FileIndex(fusion_case["ct"], fusion_case["pet"])
    work = tmp_path / "work"
    ct_source = volume_sources.volume_source(scene_case["ct"], str(work), "ct", database)
    pet_source = volume_sources.volume_source(scene_case["pet"], str(work), "pet", database)
    out = tmp_path / "pet_ct"
    measured = measure_pet_ct(scene, fusion_case["analysis"], ct_source, pet_source, str(out), nodes,
                              scene_case["ct"], scene_case["pet"], ceus_list=ceus_list, patient_list=ct_list,
                              volume_rendering_logic=app.module_logic("VolumeRendering"))
    fusion = measured.fusion
    engine = fuse(fusion_case["analysis"], fusion_case["ct"], fusion_case["pet"], landmarks=fusion_case["exact"])
    for name, roi in engine.rois.items():
        assert fusion.rois[name].pet.SUVmax == pytest.approx(roi.pet.SUVmax, rel=1e-9)
        assert fusion.rois[name].pet.SUVmean == pytest.approx(roi.pet.SUVmean, rel=1e-9)
    # the synthetic truth: lesion1's rim 25, the liver 5.5 (uniform spheres on the voxel centres)
    lesion, liver = fusion.rois["lesion1"], fusion.rois["liver"]
    assert lesion.pet.SUVmax == pytest.approx(DEMO_LESION_VALUES["lesion1"][1], rel=0.02)
    assert liver.pet.SUVmean == pytest.approx(LIVER_SUV, rel=0.02)
    assert lesion.tlr == pytest.approx(DEMO_LESION_VALUES["lesion1"][1] / LIVER_SUV, rel=0.03)
    assert fusion.registration.fre_rms_mm < 1e-6
    # the files: landmarks, fuse's outputs
    for name in (*LANDMARK_FILES, "fusion.json", "fusion.csv", "fusion/suv_on_ceus.nrrd"):
        assert (out / name).is_file(), name
    # the table: one row per ROI, the engine's numbers
    table = measured.table
    assert table.GetNumberOfRows() == len(fusion.rois)
    column = table.GetTable().GetColumnByName("SUVmax")
    rows = [table.GetCellText(row, 0) for row in range(table.GetNumberOfRows())]
    assert column.GetValue(rows.index("lesion1")) == pytest.approx(lesion.pet.SUVmax, rel=1e-6)
    # the views: the user's CT, the PET in SUVbw made once, the CEUS plane
    assert measured.pet_node is not scene_case["pet"] and measured.suv.warnings == []
    views = measured.views
    composite = _composite(scene, "Red")
    assert composite.GetBackgroundVolumeID() == scene_case["ct"].GetID()
    assert composite.GetForegroundVolumeID() == measured.pet_node.GetID()
    normal = numpy_matrix(views.fused_slice.GetSliceToRAS())[:3, 2]
    assert np.degrees(np.arccos(min(1.0, abs(normal @ ceus_plane_normal_ras(fusion))))) < 0.1
    assert set(views.volume_rendering) == {"ct", "pet"}
    assert scene_case["clip"].contrast_volume.GetTransformNodeID() is not None


def _composite(scene, layout_name):
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        if node.GetLayoutName() == layout_name:
            return node
    raise AssertionError(layout_name)


def test_measure_needs_landmarks_or_a_transform(scene_case, fusion_case, tmp_path):
    nodes = pet_ct.ceus_nodes_of_browser(scene_case["clip"].browser)
    with pytest.raises(InputError, match="either both landmark point lists or a transform"):
        measure_pet_ct(scene_case["scene"], fusion_case["analysis"], fusion_case["ct"], None, str(tmp_path),
                       nodes, scene_case["ct"])
    assert not any(tmp_path.iterdir())


def test_place_pair_views_show_the_ceus_frame_in_its_plane_and_the_ct_axial(scene_case, inputs):
    """The left view shows the clip's frame in the frame's own plane (also once the frame is placed
    obliquely in the patient), the right view the CT axial with the PET over it."""
    from DCEUSResponseLib.scene.fusion_views import placement_views

    scene, clip = scene_case["scene"], scene_case["clip"]
    ceus = clip.bmode_volume if clip.bmode_volume is not None else clip.contrast_volume
    oblique = np.eye(4)
    oblique[:3, :3] = _rotation_deg(25.0, 10.0)
    oblique[:3, 3] = (-40.0, 120.0, -300.0)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "CEUS to patient")
    transform.SetMatrixTransformToParent(vtk_matrix(oblique))
    ceus.SetAndObserveTransformNodeID(transform.GetID())
    shown = placement_views(scene, ceus, scene_case["ct"], scene_case["pet"])
    assert shown == {"Red": "CEUS", "Yellow": "CT"}
    views = {}
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        views[node.GetLayoutName()] = node
    assert views["Red"].GetBackgroundVolumeID() == ceus.GetID() and views["Red"].GetForegroundVolumeID() is None
    assert views["Yellow"].GetBackgroundVolumeID() == scene_case["ct"].GetID()
    assert views["Yellow"].GetForegroundVolumeID() == scene_case["pet"].GetID()
    assert views["Yellow"].GetForegroundOpacity() == pytest.approx(0.45)
    slices = {scene.GetNthNodeByClass(i, "vtkMRMLSliceNode").GetLayoutName(): scene.GetNthNodeByClass(i, "vtkMRMLSliceNode")
              for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode"))}
    red = numpy_matrix(slices["Red"].GetSliceToRAS())
    frame_normal = oblique[:3, :3] @ np.array([0.0, 0.0, 1.0])  # the frame lies in its z = 0 plane
    assert abs(abs(float(red[:3, 2] @ frame_normal)) - 1.0) < 1e-6
    assert slices["Yellow"].GetOrientation() == "Axial"


def _rotation_deg(about_x: float, about_z: float) -> np.ndarray:
    a, c = np.radians(about_x), np.radians(about_z)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ rx
