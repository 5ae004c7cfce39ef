"""The MRML layer: clips as volume sequences, ROIs as segmentations, results as tables and a chart,
and Slicer scene bundles read back by Slicer's own ``vtkMRMLScene.ReadFromMRB`` (``slicer-core``)."""
import csv
import io
import json
import math
import os
import zipfile

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from DCEUSResponseLib import SOFTWARE_NAME, __version__
from DCEUSResponseLib.scene.bundle import write_scene_bundle  # noqa: E402
from DCEUSResponseLib.scene.clip_nodes import add_clip_sequences, clip_from_browser, clip_from_sequence  # noqa: E402
from DCEUSResponseLib.scene.segmentation import add_roi_segmentation, rois_from_segmentation  # noqa: E402
from DCEUSResponseLib.scene.tables import ResultNodes, add_analysis_results  # noqa: E402
from DCEUSResponseLib.scene.application import create_headless_application  # noqa: E402
from DCEUSResponseLib.scene.nodes import ROI_COLOURS  # noqa: E402
from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze# noqa: E402
from DCEUSResponseLib.clip import Clip# noqa: E402
from DCEUSResponseLib.errors import InputError# noqa: E402
from DCEUSResponseLib.ceus.layout import find_layout# noqa: E402
from DCEUSResponseLib.export.staging import json_text
from DCEUSResponseLib.export.contract import parameters_csv, results_json  # noqa: E402
from DCEUSResponseLib.kinetics.parameters import PARAMETER_NAMES# noqa: E402
from DCEUSResponseLib.clip import RoiMask
from DCEUSResponseLib.io.masks import read_roi_masks# noqa: E402
from DCEUSResponseLib.synthetic.clips import GOLD_TINT, make_clip# noqa: E402

UIDS = {"StudyInstanceUID": "1.2.826.0.1.3680043.8.498.1", "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.2",
        "SOPInstanceUID": "1.2.826.0.1.3680043.8.498.3", "PatientID": "DEMO-001", "StudyDate": "20260101"}
PANEL = (64, 80)  # rows, columns of each display panel: small, so the file stays fast
OPTIONS = AnalysisOptions(dynamic_range_db=50.0, injection_time_s=0.5, reference="liver")
# Slicer writes table cells with 6 significant digits (vtkDelimitedTextWriter's default precision).
SAVED_TABLE_RTOL = 1e-5


def _case(kind: str):
    """(clip, full-frame ROIs) of a synthetic exam; ``kind`` names display, colour map and ROI panel."""
    display = "dual" if kind.startswith("dual") else "single"
    colour = "gold" if "gold" in kind else "gray"
    synthetic = make_clip(panel_shape=PANEL, n_frames=36, frame_interval_s=1.5, jitter=0.2, display=display,
                          colour=colour, rois_on_contrast=kind == "dual-gray-contrast-rois", seed=3)
    photometric = "RGB" if colour == "gold" else "MONOCHROME2"
    clip = Clip(f"{kind}.dcm", synthetic.frames, synthetic.frame_times_s, photometric=photometric,
                regions=list(synthetic.regions), timing_source="Frame Time Vector", uids=dict(UIDS),
                warnings=["a warning of the reader"])
    if kind == "palette":
        # the same gray levels shown through a gold palette: indices stored, colours in a table
        palette = np.outer(np.arange(256, dtype=np.float64), GOLD_TINT)
        clip = Clip(clip.source, synthetic.frames, synthetic.frame_times_s, photometric="PALETTE COLOR",
                    palette=palette, regions=clip.regions, uids=dict(UIDS))
    if kind == "uncalibrated":
        # no ultrasound regions, no spacing: the whole frame is the image, 1 mm pixels
        clip = Clip(clip.source, synthetic.frames, synthetic.frame_times_s, uids={})
    rois = [RoiMask(name, mask, "synthetic") for name, mask in synthetic.roi_masks.items()]
    return clip, rois


CASES = ["single-gray", "dual-gold", "dual-gray-contrast-rois", "palette", "uncalibrated"]


@pytest.fixture(scope="module", params=CASES)
def exam(request):
    clip, rois = _case(request.param)
    return request.param, clip, rois, analyze(clip, rois, OPTIONS)


@pytest.fixture(scope="module")
def dual_gold():
    clip, rois = _case("dual-gold")
    return clip, rois, analyze(clip, rois, OPTIONS)


@pytest.fixture
def app():
    with create_headless_application() as application:
        yield application


def _array(volume_node) -> np.ndarray:
    from vtkmodules.util import numpy_support

    image = volume_node.GetImageData()
    columns, rows, _ = image.GetDimensions()
    components = image.GetNumberOfScalarComponents()
    shape = (rows, columns) if components == 1 else (rows, columns, components)
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape)


def _panels(clip):
    layout = find_layout(clip)
    return layout, [("contrast", layout.contrast)] + ([("bmode", layout.bmode)] if layout.bmode else [])


def _inside_panels(clip) -> np.ndarray:
    inside = np.zeros((clip.rows, clip.columns), dtype=bool)
    for _, region in _panels(clip)[1]:
        inside[region.slices] = True
    return inside


def _same_analysis(first, second) -> None:
    assert list(first.rois) == list(second.rois)
    for name in first.rois:
        np.testing.assert_array_equal(first.rois[name].tic, second.rois[name].tic)
        assert first.rois[name].parameters == second.rois[name].parameters
        assert first.rois[name].relative == second.rois[name].relative


# ----------------------------------------------------------------------------------------------
# application


def test_headless_application_is_set_up_like_slicer_and_cleans_up(tmp_path):
    with create_headless_application() as application:
        scene = application.scene
        cache = application.cache_dir
        assert os.path.isdir(cache)
        for class_name in ("vtkMRMLSequenceNode", "vtkMRMLSequenceBrowserNode", "vtkMRMLSegmentationNode",
                           "vtkMRMLVolumeSequenceStorageNode", "vtkMRMLTableNode", "vtkMRMLPlotChartNode"):
            assert scene.IsNodeClassRegistered(class_name), class_name
        assert scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode") is not None
        assert scene.GetNodeByID("vtkMRMLColorTableNodeGrey") is not None  # default colour tables
        assert scene.GetDataIOManager().GetCacheManager().GetRemoteCacheDirectory() == cache
        assert application.module_logic("Sequences").GetMRMLScene() is scene
    assert not os.path.exists(cache)
    own = tmp_path / "cache"
    with create_headless_application(str(own)) as application:
        assert application.cache_dir == str(own)
    assert own.is_dir()  # a cache folder the caller gave is the caller's


# ----------------------------------------------------------------------------------------------
# clip <-> sequences


def test_sequences_hold_each_panel_with_its_geometry_times_and_uids(exam, app):
    kind, clip, _, _ = exam
    layout, panels = _panels(clip)
    nodes = add_clip_sequences(app.scene, clip, layout)
    assert (nodes.bmode_sequence is None) == (layout.bmode is None) == (nodes.bmode_volume is None)
    dy, dx = clip.frame_spacing_mm
    expected_spacing = (1.0, 1.0) if kind == "uncalibrated" else (0.2, 0.2)
    assert (dy, dx) == expected_spacing
    sequences = {"contrast": nodes.contrast_sequence, "bmode": nodes.bmode_sequence}
    proxies = {"contrast": nodes.contrast_volume, "bmode": nodes.bmode_volume}
    volume_class = "vtkMRMLVectorVolumeNode" if clip.is_colour else "vtkMRMLScalarVolumeNode"
    for panel, region in panels:
        sequence = sequences[panel]
        assert sequence.GetIndexName() == "time" and sequence.GetIndexUnit() == "s"
        assert sequence.GetIndexType() == sequence.NumericIndex
        assert sequence.GetNumberOfDataNodes() == clip.n_frames
        assert [float(sequence.GetNthIndexValue(k)) for k in range(clip.n_frames)] == clip.frame_times_s.tolist()
        assert nodes.browser.IsSynchronizedSequenceNode(sequence, True)
        for k in (0, clip.n_frames // 2, clip.n_frames - 1):
            volume = sequence.GetNthDataNode(k)
            assert volume.GetClassName() == volume_class
            np.testing.assert_array_equal(_array(volume), clip.frames[k][region.slices])
            assert volume.GetSpacing() == (dx, dy, 1.0)
            assert volume.GetOrigin() == (-region.x0 * dx, -region.y0 * dy, 0.0)
        if clip.is_colour:
            assert sequence.GetNthDataNode(0).GetVoxelVectorType() == slicer.vtkMRMLVolumeNode.VoxelVectorTypeColorRGB
        proxy = proxies[panel]
        assert proxy.GetClassName() == volume_class and nodes.browser.GetProxyNode(sequence) is proxy
        np.testing.assert_array_equal(_array(proxy), clip.frames[0][region.slices])
        assert json.loads(sequence.GetAttribute("DCEUS.FrameTimes")) == clip.frame_times_s.tolist()
        for node in (sequence, proxy):
            assert node.GetAttribute("DCEUS.Panel") == panel
            assert node.GetAttribute("DCEUS.Source") == clip.source
            for keyword, value in clip.uids.items():
                assert node.GetAttribute(f"DICOM.{keyword}") == value
            if clip.uids:
                assert node.GetAttribute("DICOM.instanceUIDs") == clip.uids["SOPInstanceUID"]
        if not clip.is_colour:  # the scanner's gray scale, not an automatic window
            display = proxy.GetDisplayNode()
            assert not display.GetAutoWindowLevel()
            assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, 255.0)
    # the browser moves every panel to the same frame (the Sequences logic updates the proxies)
    nodes.browser.SetSelectedItemNumber(7)
    for panel, region in panels:
        np.testing.assert_array_equal(_array(proxies[panel]), clip.frames[7][region.slices])
        assert proxies[panel].GetAttribute("DCEUS.Panel") == panel


def test_clip_round_trips_through_the_sequences(exam, app):
    kind, clip, rois, analysis = exam
    layout, panels = _panels(clip)
    nodes = add_clip_sequences(app.scene, clip, layout)
    back = clip_from_browser(nodes.browser)
    inside = _inside_panels(clip)
    assert back.frames.shape == clip.frames.shape and back.frames.dtype == clip.frames.dtype
    np.testing.assert_array_equal(back.frames[:, inside], clip.frames[:, inside])
    assert not back.frames[:, ~inside].any()  # burned-in annotations are not kept
    assert back.frame_times_s.tolist() == clip.frame_times_s.tolist()
    assert back.regions == clip.regions
    assert back.pixel_spacing_mm == clip.pixel_spacing_mm
    assert back.frame_spacing_mm == clip.frame_spacing_mm
    assert (back.source, back.photometric, back.bits_stored, back.uids) == \
        (clip.source, clip.photometric, clip.bits_stored, clip.uids)
    assert back.timing_source == clip.timing_source and back.warnings == clip.warnings
    if clip.palette is not None:
        np.testing.assert_array_equal(back.palette, clip.palette)
    _same_analysis(analyze(back, rois, OPTIONS), analysis)

    # one sequence alone is the clip of that panel, still in full-frame coordinates
    contrast_only = clip_from_sequence(nodes.contrast_sequence, source="other")
    assert contrast_only.source == "other" and contrast_only.frames.shape == clip.frames.shape
    np.testing.assert_array_equal(contrast_only.frames[:, layout.contrast.slices[0], layout.contrast.slices[1]],
                                  clip.frames[:, layout.contrast.slices[0], layout.contrast.slices[1]])
    assert find_layout(contrast_only).contrast == layout.contrast
    if nodes.bmode_sequence is not None:
        bmode_only = clip_from_sequence(nodes.bmode_sequence)
        assert bmode_only.regions == [layout.bmode]


def test_sequences_work_on_a_bare_scene_without_module_logics():
    clip, _ = _case("dual-gold")
    scene = slicer.vtkMRMLScene()
    nodes = add_clip_sequences(scene, clip, find_layout(clip), name="bare")
    assert nodes.contrast_volume is not None and nodes.bmode_volume is not None
    assert nodes.browser.GetProxyNode(nodes.bmode_sequence) is nodes.bmode_volume
    np.testing.assert_array_equal(clip_from_browser(nodes.browser).frames[:, _inside_panels(clip)],
                                  clip.frames[:, _inside_panels(clip)])


def _plain_slicer_sequence(scene, frames, spacing_xy, index_values, unit="s"):
    """A volume sequence as Slicer's DICOM image-sequence plugin makes it (no DCEUS attributes)."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData

    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "plain")
    sequence.SetIndexName("time")
    sequence.SetIndexUnit(unit)
    volume = slicer.vtkMRMLScalarVolumeNode()
    volume.SetIJKToRASDirections(-1, 0, 0, 0, -1, 0, 0, 0, 1)
    volume.SetSpacing(spacing_xy[0], spacing_xy[1], 1.0)
    for frame, value in zip(frames, index_values):
        image = vtkImageData()
        image.SetDimensions(frame.shape[1], frame.shape[0], 1)
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(frame.reshape(-1), deep=True))
        volume.SetAndObserveImageData(image)
        sequence.SetDataNodeAtValue(volume, value)
    return sequence


def test_plain_slicer_volume_sequences_are_read_as_whole_frame_clips(app):
    frames = np.random.default_rng(0).integers(0, 256, (5, 12, 20), dtype=np.uint8)
    sequence = _plain_slicer_sequence(app.scene, frames, (0.3, 0.25), ["1.000", "1.500", "2.000", "2.500", "3.000"])
    clip = clip_from_sequence(sequence)
    np.testing.assert_array_equal(clip.frames, frames)
    np.testing.assert_allclose(clip.frame_times_s, [0.0, 0.5, 1.0, 1.5, 2.0])  # first frame at 0
    assert clip.regions == [] and clip.pixel_spacing_mm == (0.25, 0.3) and clip.photometric == "MONOCHROME2"
    in_ms = _plain_slicer_sequence(app.scene, frames, (0.3, 0.25), ["0", "40", "80", "120", "160"], unit="ms")
    np.testing.assert_allclose(clip_from_sequence(in_ms).frame_times_s, [0.0, 0.04, 0.08, 0.12, 0.16])


def test_sequences_off_the_pixel_grid_or_not_in_time_are_refused(app):
    frames = np.zeros((3, 8, 10), dtype=np.uint8)
    frames_index = _plain_slicer_sequence(app.scene, frames, (1.0, 1.0), ["1", "2", "3"], unit="")
    with pytest.raises(InputError, match="not a time"):
        clip_from_sequence(frames_index)
    rotated = _plain_slicer_sequence(app.scene, frames, (1.0, 1.0), ["0", "1", "2"])
    for k in range(3):
        rotated.GetNthDataNode(k).SetIJKToRASDirections(0, -1, 0, -1, 0, 0, 0, 0, 1)
    with pytest.raises(InputError, match="pixel grid"):
        clip_from_sequence(rotated)
    shifted = _plain_slicer_sequence(app.scene, frames, (1.0, 1.0), ["0", "1", "2"])
    for k in range(3):
        shifted.GetNthDataNode(k).SetOrigin(-0.5, 0.0, 0.0)
    with pytest.raises(InputError, match="pixel grid"):
        clip_from_sequence(shifted)


# ----------------------------------------------------------------------------------------------
# ROIs <-> segmentation


@pytest.mark.parametrize("kind", ["single-gray", "dual-gold", "dual-gray-contrast-rois", "uncalibrated"])
def test_rois_round_trip_through_the_segmentation(kind, app):
    clip, rois = _case(kind)
    layout = find_layout(clip)
    nodes = add_clip_sequences(app.scene, clip, layout)
    colours = {"lesion": (0.1, 0.2, 0.3)}
    segmentation_node = add_roi_segmentation(app.scene, rois, clip, nodes.contrast_volume, colours=colours)
    segmentation = segmentation_node.GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())] == \
        [roi.name for roi in rois]
    assert segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("lesion")).GetColor() == (0.1, 0.2, 0.3)
    role = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
    assert segmentation_node.GetNodeReference(role) is nodes.contrast_volume
    back = rois_from_segmentation(segmentation_node, clip)
    assert [roi.name for roi in back] == [roi.name for roi in rois]
    for original, restored in zip(rois, back):
        np.testing.assert_array_equal(restored.mask, original.mask)
    # the export's helper nodes are gone again
    assert app.scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == 0
    if layout.bmode is not None:
        # the same masks referenced to the B-mode volume land on the same pixels
        other = add_roi_segmentation(app.scene, rois, clip, nodes.bmode_volume, name="on B-mode")
        for original, restored in zip(rois, rois_from_segmentation(other, clip)):
            np.testing.assert_array_equal(restored.mask, original.mask)


def _rigid_transform_node(scene, name="CEUS to patient"):
    """A linear transform node with a non-identity rigid to-parent matrix (rotation 20 deg about an
    oblique axis and a translation), as co-registration puts over the CEUS nodes."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4
    from vtkmodules.vtkCommonTransforms import vtkTransform

    transform = vtkTransform()
    transform.Translate(-40.0, 25.0, 110.0)
    transform.RotateWXYZ(20.0, 0.3, -0.5, 0.8)
    matrix = vtkMatrix4x4()
    matrix.DeepCopy(transform.GetMatrix())
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    node.SetMatrixTransformToParent(matrix)
    return node


@pytest.mark.parametrize("kind", ["dual-gold", "single-gray"])
def test_rois_are_read_in_the_clip_frame_when_the_ceus_nodes_sit_under_a_transform(kind, app):
    """Co-registration places the clip volumes and the segmentation under the registration transform:
    the ROIs are the segments in the clip's own frame, not in world coordinates."""
    clip, rois = _case(kind)
    nodes = add_clip_sequences(app.scene, clip, find_layout(clip))
    segmentation_node = add_roi_segmentation(app.scene, rois, clip, nodes.contrast_volume)
    transform = _rigid_transform_node(app.scene)
    for node in (nodes.contrast_volume, nodes.bmode_volume, segmentation_node):
        if node is not None:
            node.SetAndObserveTransformNodeID(transform.GetID())
    for back in (rois_from_segmentation(segmentation_node, clip),
                 rois_from_segmentation(segmentation_node, clip, clip_volume_node=nodes.contrast_volume)):
        assert [roi.name for roi in back] == [roi.name for roi in rois]
        for original, restored in zip(rois, back):
            np.testing.assert_array_equal(restored.mask, original.mask)
    # the clip volume left in place while only the segmentation moves: the segments are off the frame
    nodes.contrast_volume.SetAndObserveTransformNodeID(None)
    with pytest.raises(InputError, match="empty|outside"):
        rois_from_segmentation(segmentation_node, clip, clip_volume_node=nodes.contrast_volume)
    assert app.scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == 0


def test_segments_outside_the_frame_or_on_another_grid_are_refused(app):
    clip, rois = _case("single-gray")
    nodes = add_clip_sequences(app.scene, clip, find_layout(clip))
    with pytest.raises(InputError, match="empty"):
        add_roi_segmentation(app.scene, [RoiMask("none", np.zeros_like(rois[0].mask), "x")], clip,
                                  nodes.contrast_volume)
    segmentation_node = add_roi_segmentation(app.scene, rois[:1], clip, nodes.contrast_volume)
    # a frame 20 rows shorter: the segment now reaches past its bottom edge
    cut = Clip(clip.source, clip.frames[:, :-20], clip.frame_times_s, pixel_spacing_mm=(0.2, 0.2))
    bottom = np.nonzero(rois[0].mask)[0].max()
    assert bottom >= clip.rows - 20
    with pytest.raises(InputError, match="outside"):
        rois_from_segmentation(segmentation_node, cut)
    coarse = Clip(clip.source, clip.frames, clip.frame_times_s, pixel_spacing_mm=(0.5, 0.5))
    with pytest.raises(InputError, match="pixel grid"):
        rois_from_segmentation(segmentation_node, coarse)


# ----------------------------------------------------------------------------------------------
# results


def _column(table_node, name) -> np.ndarray:
    table = table_node.GetTable()
    column = table.GetColumnByName(name)
    assert column is not None, name
    return np.array([column.GetValue(i) for i in range(table.GetNumberOfRows())])


def _strings(table_node, name) -> list[str]:
    column = table_node.GetTable().GetColumnByName(name)
    return [column.GetValue(i) for i in range(column.GetNumberOfValues())]


def _check_tables(analysis, result_nodes, rtol: float) -> None:
    """Table cells equal the analysis (``rtol`` 0: exactly), NaN where the files have empty cells."""
    def same(actual, expected):
        expected = np.asarray(expected, dtype=np.float64)
        assert np.array_equal(np.isnan(actual), np.isnan(expected))
        np.testing.assert_allclose(actual[~np.isnan(actual)], expected[~np.isnan(expected)], rtol=rtol, atol=0)

    tic = result_nodes.tic_table
    names = list(analysis.rois)
    expected_columns = ["time_s", *(f"{n}_{kind}" for n in names for kind in ("measured", "fitted")),
                        "frame", "clip_time_s", "excluded"]
    assert [tic.GetColumnName(i) for i in range(tic.GetNumberOfColumns())] == expected_columns
    same(_column(tic, "time_s"), analysis.times_s)
    for name in names:
        same(_column(tic, f"{name}_measured"), analysis.rois[name].tic)
        same(_column(tic, f"{name}_fitted"), analysis.rois[name].fit.curve(analysis.times_s))
    same(_column(tic, "clip_time_s"), analysis.clip.frame_times_s)
    assert _column(tic, "frame").tolist() == list(range(analysis.clip.n_frames))
    assert _column(tic, "excluded").tolist() == [0] * analysis.clip.n_frames
    assert tic.GetColumnType("time_s") == tic.GetColumnType(f"{names[0]}_fitted") == 11  # VTK_DOUBLE
    assert tic.GetColumnUnitLabel("time_s") == "s" and tic.GetColumnUnitLabel(f"{names[0]}_measured") == "a.u."

    parameters = result_nodes.parameter_table
    rows = list(csv.DictReader(io.StringIO(parameters_csv(analysis))))
    header = next(csv.reader(io.StringIO(parameters_csv(analysis))))
    assert [parameters.GetColumnName(i) for i in range(parameters.GetNumberOfColumns())] == header
    for column in ("roi", "status", "model", "reason"):
        assert _strings(parameters, column) == [row[column] for row in rows]
    for column in [*PARAMETER_NAMES, *(f"rel_{p}" for p in PARAMETER_NAMES)]:
        assert parameters.GetColumnType(column) == 11, column
        same(_column(parameters, column), [float(row[column]) if row[column] else math.nan for row in rows])
    assert _column(parameters, "pixels").tolist() == [int(row["pixels"]) for row in rows]
    assert parameters.GetColumnUnitLabel("TTP") == "s" and parameters.GetColumnUnitLabel("WiR") == "a.u./s"


def _check_chart(analysis, chart, tic_table, colours) -> None:
    assert chart.GetXAxisTitle() == "time since injection [s]"
    assert chart.GetYAxisTitle() == "mean linear intensity [a.u.]"
    names = list(analysis.rois)
    fitted = [n for n in names if analysis.rois[n].fit.ok]
    assert 0 < len(fitted) < len(names)  # the cases include fitted and unfitted ROIs
    assert chart.GetNumberOfPlotSeriesNodes() == len(names) + len(fitted)
    seen = set()
    for i in range(chart.GetNumberOfPlotSeriesNodes()):
        series = chart.GetNthPlotSeriesNode(i)
        assert series.GetTableNode() is tic_table and series.GetXColumnName() == "time_s"
        assert series.GetPlotType() == series.PlotTypeScatter
        column = series.GetYColumnName()
        name, kind = column.rsplit("_", 1)
        seen.add(column)
        if kind == "measured":
            assert series.GetMarkerStyle() != series.MarkerStyleNone and series.GetLineStyle() == series.LineStyleNone
        else:
            assert series.GetMarkerStyle() == series.MarkerStyleNone and series.GetLineStyle() == series.LineStyleSolid
        np.testing.assert_allclose(series.GetColor(), colours[name], atol=1e-6)
        assert series.GetAttribute("DCEUS.SoftwareVersion") == __version__
    assert seen == {f"{n}_measured" for n in names} | {f"{n}_fitted" for n in fitted}


def test_result_tables_and_chart_hold_the_analysis(dual_gold, app):
    clip, rois, analysis = dual_gold
    nodes = add_clip_sequences(app.scene, clip, analysis.layout)
    segmentation_node = add_roi_segmentation(app.scene, rois, clip, nodes.contrast_volume,
                                                  colours={"liver": (0.0, 0.5, 1.0)})
    results = add_analysis_results(app.scene, analysis, "baseline ", segmentation_node=segmentation_node)
    assert results.tic_table.GetName() == "baseline TIC"
    _check_tables(analysis, results, rtol=0.0)
    colours = {name: tuple(ROI_COLOURS[i]) for i, name in enumerate(analysis.rois)}
    colours["liver"] = (0.0, 0.5, 1.0)  # the segment's colour wins
    _check_chart(analysis, results.chart, results.tic_table, colours)
    assert len(results.series) == results.chart.GetNumberOfPlotSeriesNodes()
    for node in (results.tic_table, results.parameter_table, results.chart):
        assert node.GetAttribute("DCEUS.Source") == clip.source
        assert node.GetAttribute("DCEUS.SoftwareName") == SOFTWARE_NAME
        assert node.GetAttribute("DCEUS.SoftwareVersion") == __version__
    assert results.parameter_table.GetAttribute("DCEUS.Results") == json_text(results_json(analysis))
    # without a segmentation the curves take the default colours
    plain = add_analysis_results(app.scene, analysis)
    first = next(iter(analysis.rois))
    assert plain.measured_series[first].GetColor() == ROI_COLOURS[0]


# ----------------------------------------------------------------------------------------------
# scene bundle


def _nodes(scene, class_name):
    return [scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name))]


def test_scene_bundle_is_read_back_by_slicer(dual_gold, tmp_path):
    clip, rois, analysis = dual_gold
    out = tmp_path / "out"
    out.mkdir()
    path = write_scene_bundle(analysis, str(out / "baseline.mrb"), rois=rois)
    assert path == str(out / "baseline.mrb")
    assert os.listdir(out) == ["baseline.mrb"]  # nothing else left behind
    with zipfile.ZipFile(path) as bundle:
        names = bundle.namelist()
        assert "baseline/baseline.mrml" in names
        assert any(n.endswith(".seq.nrrd") for n in names)
        (segmentation_file,) = [n for n in names if n.endswith(".seg.nrrd")]
        (tmp_path / "rois.seg.nrrd").write_bytes(bundle.read(segmentation_file))
    # the segmentation Slicer saved is also what the command line reads as --roi FILE.seg.nrrd
    from_file = read_roi_masks([str(tmp_path / "rois.seg.nrrd")], (clip.rows, clip.columns),
                               clip.frame_spacing_mm)
    assert [roi.name for roi in from_file] == [roi.name for roi in rois]
    for original, roi in zip(rois, from_file):
        np.testing.assert_array_equal(roi.mask, original.mask)

    with create_headless_application() as application:
        scene = application.scene
        messages = slicer.vtkMRMLMessageCollection()
        assert scene.ReadFromMRB(path, False, messages), messages.GetAllMessagesAsString()
        assert os.listdir(application.cache_dir) in ([], [".slicer-cache"])  # unpacked bundle removed

        # the clip: browser, both sequences, proxies
        (browser,) = _nodes(scene, "vtkMRMLSequenceBrowserNode")
        sequences = {s.GetAttribute("DCEUS.Panel"): s for s in _nodes(scene, "vtkMRMLSequenceNode")}
        assert set(sequences) == {"contrast", "bmode"}
        assert browser.GetMasterSequenceNode() is sequences["contrast"]
        for panel, sequence in sequences.items():
            assert browser.IsSynchronizedSequenceNode(sequence, True)
            assert sequence.GetNumberOfDataNodes() == clip.n_frames
            assert [float(sequence.GetNthIndexValue(k)) for k in range(clip.n_frames)] == \
                clip.frame_times_s.tolist()
            assert sequence.GetNthDataNode(0).GetClassName() == "vtkMRMLVectorVolumeNode"
            assert sequence.GetAttribute("DICOM.StudyInstanceUID") == UIDS["StudyInstanceUID"]
        browser.SetSelectedItemNumber(11)  # browsing still works and proxies keep their attributes
        for panel, sequence in sequences.items():
            proxy = browser.GetProxyNode(sequence)
            region = analysis.layout.contrast if panel == "contrast" else analysis.layout.bmode
            assert proxy.GetAttribute("DCEUS.Panel") == panel
            assert proxy.GetAttribute("DICOM.SOPInstanceUID") == UIDS["SOPInstanceUID"]
            np.testing.assert_array_equal(_array(proxy), clip.frames[11][region.slices])
        back = clip_from_browser(browser)
        inside = _inside_panels(clip)
        np.testing.assert_array_equal(back.frames[:, inside], clip.frames[:, inside])
        assert back.frame_times_s.tolist() == clip.frame_times_s.tolist() and back.regions == clip.regions

        # the ROIs: one segment per ROI with its pixels, on either panel
        (segmentation_node,) = _nodes(scene, "vtkMRMLSegmentationNode")
        restored = rois_from_segmentation(segmentation_node, back)
        assert {r.name: r.pixels for r in restored} == {r.name: r.pixels for r in rois}
        for original, roi in zip(rois, restored):
            np.testing.assert_array_equal(roi.mask, original.mask)
        role = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
        assert segmentation_node.GetNodeReference(role) is browser.GetProxyNode(sequences["contrast"])
        _same_analysis(analyze(back, restored, OPTIONS), analysis)

        # the results: tables (6 significant digits once saved; results.json exact) and chart
        tables = {t.GetName(): t for t in _nodes(scene, "vtkMRMLTableNode")}
        (chart,) = _nodes(scene, "vtkMRMLPlotChartNode")
        restored_results = ResultNodes(tables["TIC"], tables["Parameters"], chart, {}, {})
        _check_tables(analysis, restored_results, rtol=SAVED_TABLE_RTOL)
        assert tables["Parameters"].GetAttribute("DCEUS.Results") == json_text(results_json(analysis))
        colours = {name: tuple(ROI_COLOURS[i]) for i, name in enumerate(analysis.rois)}
        _check_chart(analysis, chart, tables["TIC"], colours)
        assert len(_nodes(scene, "vtkMRMLPlotSeriesNode")) == chart.GetNumberOfPlotSeriesNodes()


def test_scene_bundle_opens_on_the_reference_frame(dual_gold, tmp_path):
    """The ROIs are drawn on the reference frame and the maps are motion-compensated onto it: a scene
    opened on frame 0 showed the anatomy away from both (an audit: 9.5 px at frame 0 of a breathing clip)."""
    import dataclasses

    clip, rois, analysis = dual_gold
    on_seven = dataclasses.replace(analysis, options=dataclasses.replace(analysis.options, reference_frame=7))
    path = write_scene_bundle(on_seven, str(tmp_path / "seven.mrb"), rois=rois)
    with create_headless_application() as application:
        assert application.scene.ReadFromMRB(path, False, slicer.vtkMRMLMessageCollection())
        (browser,) = _nodes(application.scene, "vtkMRMLSequenceBrowserNode")
        assert browser.GetSelectedItemNumber() == 7
    with pytest.raises(InputError, match="outside the clip's frames"):
        add_clip_sequences(slicer.vtkMRMLScene(), clip, analysis.layout, selected_frame=clip.n_frames)


def test_scene_bundle_opens_on_views_of_its_panels(dual_gold, tmp_path):
    """The bundle set no slice view: Slicer opened it on its default views (Yellow and Green cut the
    flat panels edge-on, nothing selected). Red shows the contrast panel, Yellow the B-mode panel, both
    in the panels' plane, centred on their panel with all of it in view; the ROIs as outlines."""
    clip, rois, analysis = dual_gold
    path = write_scene_bundle(analysis, str(tmp_path / "views.mrb"), rois=rois)
    with create_headless_application() as application:
        scene = application.scene
        assert scene.ReadFromMRB(path, False, slicer.vtkMRMLMessageCollection())
        (browser,) = _nodes(scene, "vtkMRMLSequenceBrowserNode")
        proxies = {s.GetAttribute("DCEUS.Panel"): browser.GetProxyNode(s) for s in _nodes(scene, "vtkMRMLSequenceNode")}
        composites = {c.GetLayoutName(): c for c in _nodes(scene, "vtkMRMLSliceCompositeNode")}
        slices = {s.GetLayoutName(): s for s in _nodes(scene, "vtkMRMLSliceNode")}
        for view, panel in (("Red", "contrast"), ("Yellow", "bmode")):
            volume = proxies[panel]
            assert composites[view].GetBackgroundVolumeID() == volume.GetID()
            assert composites[view].GetForegroundVolumeID() is None  # no maps in this analysis
            bounds = [0.0] * 6
            volume.GetRASBounds(bounds)
            slice_to_ras = slices[view].GetSliceToRAS()
            normal = [slice_to_ras.GetElement(row, 2) for row in range(3)]
            assert abs(abs(normal[2]) - 1.0) < 1e-9, (view, normal)  # the panels' (axial) plane
            centre = [slice_to_ras.GetElement(row, 3) for row in range(2)]
            np.testing.assert_allclose(centre, [(bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2], atol=1e-6)
            field = slices[view].GetFieldOfView()
            extent = max(bounds[1] - bounds[0], bounds[3] - bounds[2])
            assert field[1] == pytest.approx(extent)  # Slicer keeps this height when it sizes the view
        (segmentation,) = _nodes(scene, "vtkMRMLSegmentationNode")
        display = segmentation.GetDisplayNode()
        assert display.GetVisibility2DOutline() and not display.GetVisibility2DFill()


def test_scene_bundle_replaces_a_file_only_when_complete(dual_gold, tmp_path):
    clip, rois, analysis = dual_gold
    target = tmp_path / "scene.mrb"
    target.write_bytes(b"old scene")
    empty = [RoiMask("empty", np.zeros_like(rois[0].mask), "x")]
    with pytest.raises(InputError, match="empty"):
        write_scene_bundle(analysis, str(target), rois=empty)
    assert target.read_bytes() == b"old scene" and os.listdir(tmp_path) == ["scene.mrb"]
    with pytest.raises(InputError, match=r"\.mrb"):
        write_scene_bundle(analysis, str(tmp_path / "scene.zip"))
    with pytest.raises(InputError, match="does not exist"):
        write_scene_bundle(analysis, str(tmp_path / "missing" / "scene.mrb"))
    cache = tmp_path / "cache"
    write_scene_bundle(analysis, str(target), cache_dir=str(cache))  # no ROIs: no segmentation
    assert zipfile.is_zipfile(target)
    assert sorted(os.listdir(tmp_path)) == ["cache", "scene.mrb"]
    assert not [name for name in os.listdir(cache) if name.startswith("_tmp")]  # packing folder removed
