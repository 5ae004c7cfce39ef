"""Parametric maps as Slicer volumes: values (NaN kept), geometry on the contrast panel, colour
tables, NaN transparency, and the scene bundle read back by Slicer's ``ReadFromMRB``."""
import json
import os
import zipfile

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from DCEUSResponseLib.scene.bundle import write_scene_bundle  # noqa: E402
from DCEUSResponseLib.scene.clip_nodes import add_clip_sequences  # noqa: E402
from DCEUSResponseLib.scene.map_volumes import _map_colour_node, add_parameter_maps, map_ijk_to_ras  # noqa: E402
from DCEUSResponseLib.scene.application import create_headless_application  # noqa: E402
from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze# noqa: E402
from DCEUSResponseLib.clip import Clip# noqa: E402
from DCEUSResponseLib.catalogue import colour_map as preview_colour_map, unit  # noqa: E402
from DCEUSResponseLib.export.map_files import sample_colour_map  # noqa: E402
from DCEUSResponseLib.ceus.maps import ParametricMaps  # noqa: E402
from DCEUSResponseLib.ceus.pixel_fits import STATUS_NAMES  # noqa: E402
from DCEUSResponseLib.kinetics.parameters import PARAMETER_NAMES# noqa: E402
from DCEUSResponseLib.clip import RoiMask# noqa: E402
from DCEUSResponseLib.synthetic.clips import make_clip# noqa: E402

PANEL = (60, 80)  # rows, columns of each display panel


def _exam(binning: int):
    """(clip, ROIs, analysis with maps) of a small dual-display exam (contrast panel right)."""
    synthetic = make_clip(panel_shape=PANEL, n_frames=120, frame_interval_s=1.0, display="dual", seed=5,
                          injection_time_s=0.5)
    clip = Clip("maps.dcm", synthetic.frames, synthetic.frame_times_s, regions=list(synthetic.regions),
                timing_source="Frame Time Vector")
    rois = [RoiMask(name, mask, "synthetic") for name, mask in synthetic.roi_masks.items()]
    options = AnalysisOptions(dynamic_range_db=50.0, injection_time_s=0.5, reference="liver", maps=True,
                              motion_compensation=False, map_binning=binning)
    return clip, rois, analyze(clip, rois, options)


@pytest.fixture(scope="module")
def exam():
    return _exam(1)


@pytest.fixture(scope="module")
def exam_binned():
    return _exam(2)


@pytest.fixture
def app():
    with create_headless_application() as application:
        yield application


def _array(volume_node) -> np.ndarray:
    from vtkmodules.util import numpy_support

    image = volume_node.GetImageData()
    columns, rows, planes = image.GetDimensions()
    assert planes == 1
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(rows, columns)


def _ijk_to_ras(volume_node) -> np.ndarray:
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _same_map(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_array_equal(actual[~np.isnan(actual)], expected[~np.isnan(expected)])


def _table_colours(colour_node) -> np.ndarray:
    colours = []
    for index in range(colour_node.GetNumberOfColors()):
        rgba = [0.0, 0.0, 0.0, 0.0]
        colour_node.GetColor(index, rgba)
        colours.append(rgba)
    return np.array(colours)


def _check_map_nodes(nodes, maps: ParametricMaps, *, saved: bool) -> None:
    """Every map as a volume with its values, colour table, window, threshold and attributes."""
    assert list(nodes) == [*PARAMETER_NAMES, "status"]
    for name, volume in nodes.items():
        assert volume.GetAttribute("DCEUS.Parameter") == name
        assert volume.GetAttribute("DCEUS.Model") == "lognormal"
        assert volume.GetAttribute("DCEUS.Binning") == str(maps.binning)
        display = volume.GetDisplayNode()
        colour_node = display.GetColorNode()
        assert colour_node is not None, name
        if name == "status":
            assert volume.IsA("vtkMRMLLabelMapVolumeNode")
            np.testing.assert_array_equal(_array(volume), maps.status)
            assert [colour_node.GetColorName(code) for code in range(colour_node.GetNumberOfColors())] == \
                [STATUS_NAMES[code] for code in sorted(STATUS_NAMES)]
            assert json.loads(volume.GetAttribute("DCEUS.StatusCodes")) == \
                {str(code): text for code, text in STATUS_NAMES.items()}
            # as a label layer it shows where pixels were not fitted: fitted and outside-image pixels
            # are transparent (they were opaque green and white over the clip)
            opacity = {STATUS_NAMES[code]: colour_node.GetLookupTable().GetTableValue(code)[3] for code in STATUS_NAMES}
            assert opacity == {"fitted": 0.0, "no_enhancement": 1.0, "poor_fit": 1.0, "not_mapped": 1.0,
                               "fit_failed": 1.0, "outside_image": 0.0}
            continue
        values = maps.values[name]
        _same_map(_array(volume), values)
        assert volume.GetAttribute("DCEUS.Unit") == unit(name)
        colour_map = preview_colour_map(name)
        base = colour_map.removesuffix("_r")
        assert volume.GetAttribute("DCEUS.ColourMap") == colour_map
        assert colour_node.GetAttribute("DCEUS.ColourMap") == base
        expected = sample_colour_map(base) / 255.0
        np.testing.assert_allclose(_table_colours(colour_node)[:, :3], expected, atol=1e-6 if not saved else 2e-3)
        assert display.GetInvertDisplayScalarRange() == colour_map.endswith("_r")
        finite = values[np.isfinite(values)].astype(np.float64)
        low, high = np.percentile(finite, [2, 98])
        rtol = 1e-5 if saved else 1e-9  # Slicer writes window and level with 6 significant digits
        np.testing.assert_allclose([display.GetWindowLevelMin(), display.GetWindowLevelMax()], [low, high],
                                   rtol=rtol, atol=rtol * abs(high - low))
        assert not display.GetAutoWindowLevel() and not display.GetInterpolate()
        # every finite value lies within the threshold (and so is drawn); NaN never does
        assert display.GetApplyThreshold()
        assert display.GetLowerThreshold() <= finite.min() and display.GetUpperThreshold() >= finite.max()


# ----------------------------------------------------------------------------------------------


def test_maps_become_volumes_with_values_colours_and_attributes(exam, app):
    _, _, analysis = exam
    maps = analysis.maps
    assert np.isnan(maps.values["PE"]).any() and np.isfinite(maps.values["PE"]).any()  # both kinds of pixel
    nodes = add_parameter_maps(app.scene, maps, "baseline ")
    assert nodes["PE"].GetName() == "baseline PE map" and nodes["status"].GetName() == "baseline status map"
    _check_map_nodes(nodes, maps, saved=False)
    # one colour table per colour map, shared by the maps and by a second set of maps
    tables = {nodes[name].GetDisplayNode().GetColorNodeID() for name in PARAMETER_NAMES}
    assert len(tables) == len({preview_colour_map(n).removesuffix("_r") for n in PARAMETER_NAMES})
    again = add_parameter_maps(app.scene, maps, "again ", ["TTP", "status"])
    assert list(again) == ["TTP", "status"]
    assert again["TTP"].GetDisplayNode().GetColorNodeID() == nodes["TTP"].GetDisplayNode().GetColorNodeID()
    assert again["status"].GetDisplayNode().GetColorNodeID() == nodes["status"].GetDisplayNode().GetColorNodeID()
    with pytest.raises(ValueError, match="no map named"):
        add_parameter_maps(app.scene, maps, parameters=["PE", "nonsense"])


def test_the_applications_own_colour_tables_are_preferred(exam, app):
    """In Slicer the Colors module provides Magma, Viridis, ...: maps use those instead of copies."""
    _, _, analysis = exam
    magma = app.scene.AddNewNodeByClass("vtkMRMLColorTableNode", "Magma")
    magma.SetTypeToUser()
    magma.SetNumberOfColors(2)
    magma.SetColor(0, "low", 0.0, 0.0, 0.0, 1.0)
    magma.SetColor(1, "high", 1.0, 1.0, 1.0, 1.0)
    nodes = add_parameter_maps(app.scene, analysis.maps, parameters=["PE", "WoR", "TTP"])
    assert nodes["PE"].GetDisplayNode().GetColorNode() is magma
    assert nodes["WoR"].GetDisplayNode().GetColorNode() is magma  # magma_r: Magma, inverted
    assert nodes["WoR"].GetDisplayNode().GetInvertDisplayScalarRange()
    assert nodes["TTP"].GetDisplayNode().GetColorNode().GetAttribute("DCEUS.ColourMap") == "viridis"
    # without range inversion (older Slicer), a reversed map gets a reversed table
    reversed_table, inverted = _map_colour_node(app.scene, "magma_r", can_invert=False)
    assert not inverted and reversed_table.GetAttribute("DCEUS.ColourMap") == "magma_r"
    np.testing.assert_allclose(_table_colours(reversed_table)[:, :3], sample_colour_map("magma_r") / 255.0, atol=1e-6)


def test_not_fitted_pixels_are_transparent_and_fitted_ones_opaque(exam, app):
    """The display node's own pipeline (what a slice view shows of a foreground volume): alpha 0
    exactly where the map is NaN."""
    from vtkmodules.util import numpy_support

    _, _, analysis = exam
    values = analysis.maps.values["PE"]
    volume = add_parameter_maps(app.scene, analysis.maps, parameters=["PE"])["PE"]
    display = volume.GetDisplayNode()
    display.SetInputImageDataConnection(volume.GetImageDataConnection())
    producer = display.GetOutputImageDataConnection().GetProducer()
    producer.Update()
    rgba = numpy_support.vtk_to_numpy(producer.GetOutputDataObject(0).GetPointData().GetScalars())
    alpha = rgba.reshape(values.shape + (4,))[..., 3]
    np.testing.assert_array_equal(alpha == 0, np.isnan(values))
    assert np.all(alpha[np.isfinite(values)] == 255)


@pytest.mark.parametrize("binned", [False, True])
def test_map_pixels_overlay_the_contrast_panel(binned, exam, exam_binned, app):
    clip, _, analysis = exam_binned if binned else exam
    maps = analysis.maps
    binning = 2 if binned else 1
    assert maps.binning == binning
    clip_nodes = add_clip_sequences(app.scene, clip, analysis.layout)
    contrast = _ijk_to_ras(clip_nodes.contrast_volume)
    nodes = add_parameter_maps(app.scene, maps, parameters=["PE", "status"])
    rows, columns = maps.status.shape
    assert (rows, columns) == (PANEL[0] // binning, PANEL[1] // binning)
    dy, dx = clip.frame_spacing_mm
    for volume in nodes.values():
        matrix = _ijk_to_ras(volume)
        np.testing.assert_allclose(matrix, map_ijk_to_ras(maps), atol=1e-12)
        assert volume.GetSpacing() == pytest.approx((dx * binning, dy * binning, 1.0))
        for j, i in [(0, 0), (0, columns - 1), (rows - 1, 0), (rows - 1, columns - 1), (rows // 2, columns // 3)]:
            # the contrast panel pixels map pixel (row j, column i) averages, and their centre
            panel_rows = np.arange(j * binning, (j + 1) * binning)
            panel_columns = np.arange(i * binning, (i + 1) * binning)
            centre = np.array([panel_columns.mean(), panel_rows.mean(), 0.0, 1.0])
            np.testing.assert_allclose(matrix @ [i, j, 0.0, 1.0], contrast @ centre, atol=1e-9)
            # and the full-frame pixel position of that centre, in the frame geometry
            frame_row, frame_column = analysis.layout.contrast.y0 + centre[1], analysis.layout.contrast.x0 + centre[0]
            np.testing.assert_allclose((matrix @ [i, j, 0.0, 1.0])[:3], [-frame_column * dx, -frame_row * dy, 0.0],
                                       atol=1e-9)
    # the map's corner pixels cover the panel's corner pixels
    assert maps.origin_px == (analysis.layout.contrast.y0 + (binning - 1) / 2, analysis.layout.contrast.x0
                              + (binning - 1) / 2)


def test_a_clip_spacing_given_places_maps_on_the_clip_grid(exam, app):
    """Maps of an uncalibrated contrast region (1 mm pixels) still lie on a calibrated clip's grid."""
    _, _, analysis = exam
    maps = analysis.maps
    uncalibrated = ParametricMaps(maps.values, maps.status, maps.model, 1, None, maps.origin_px)
    default = map_ijk_to_ras(uncalibrated)
    np.testing.assert_allclose(np.diag(default)[:3], [-1.0, -1.0, 1.0])
    placed = add_parameter_maps(app.scene, uncalibrated, parameters=["QOF"], frame_spacing_mm=(0.3, 0.25))
    matrix = _ijk_to_ras(placed["QOF"])
    np.testing.assert_allclose(matrix[:3, 3], [-maps.origin_px[1] * 0.25, -maps.origin_px[0] * 0.3, 0.0])
    np.testing.assert_allclose(np.diag(matrix)[:3], [-0.25, -0.3, 1.0])


def test_scene_bundle_keeps_the_maps_and_their_colour_tables(exam, tmp_path):
    clip, rois, analysis = exam
    path = write_scene_bundle(analysis, str(tmp_path / "maps.mrb"), rois=rois)
    with zipfile.ZipFile(path) as bundle:
        names = bundle.namelist()
    assert sum(name.endswith(" map.nrrd") for name in names) == len(PARAMETER_NAMES) + 1
    with create_headless_application() as application:
        scene = application.scene
        messages = slicer.vtkMRMLMessageCollection()
        assert scene.ReadFromMRB(path, False, messages), messages.GetAllMessagesAsString()
        volumes = [scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
                   for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]
        nodes = {v.GetAttribute("DCEUS.Parameter"): v for v in volumes if v.GetAttribute("DCEUS.Parameter")}
        nodes = {name: nodes[name] for name in [*PARAMETER_NAMES, "status"]}
        _check_map_nodes(nodes, analysis.maps, saved=True)
        for volume in nodes.values():
            np.testing.assert_allclose(_ijk_to_ras(volume), map_ijk_to_ras(analysis.maps), atol=1e-9)
            assert volume.GetAttribute("DCEUS.Source") == clip.source  # provenance of the analysis
        # the maps still sit on the contrast panel volume read back with them
        contrast = next(v for v in volumes if v.GetAttribute("DCEUS.Panel") == "contrast")
        np.testing.assert_allclose(_ijk_to_ras(contrast), _ijk_to_ras(nodes["PE"]), atol=1e-9)  # binning 1
        # and the scene opens with the PE map over the contrast panel in the Red view
        red = next(scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
                   for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))
                   if scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode").GetLayoutName() == "Red")
        assert red.GetForegroundVolumeID() == nodes["PE"].GetID() and red.GetForegroundOpacity() == 0.6


def test_scene_bundle_without_maps_has_no_map_volumes(exam, tmp_path):
    _, rois, analysis = exam
    from dataclasses import replace

    path = write_scene_bundle(replace(analysis, maps=None), str(tmp_path / "plain.mrb"))
    with zipfile.ZipFile(path) as bundle:
        assert not [name for name in bundle.namelist() if name.endswith(" map.nrrd") or "DCEUS " in name]
    assert os.listdir(tmp_path) == ["plain.mrb"]
