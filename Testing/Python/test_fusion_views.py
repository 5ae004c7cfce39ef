"""The views of ``fuse --scene`` (scene/fusion_views.py) on slicer-core: the bundle reloaded, the slice views on
the CEUS plane showing exactly what ``fuse`` measured, the volume rendering with the shipped transfer functions,
and the 3D view rendered offscreen with the map on the plane (CI grids of the synthetic patient)."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

pytest.importorskip("slicer")
nrrd = pytest.importorskip("nrrd")

from DCEUSResponseLib.scene.application import create_headless_application  # noqa: E402
from DCEUSResponseLib.scene.fusion_views import (  # noqa: E402
    CT_PRESET,
    FUSED_VIEW,
    MAP_VIEW,
    PET_PRESET,
    PLANE_MODEL_NAME,
    THREED_VIEW,
    load_presets,
)
from DCEUSResponseLib.scene.nodes import numpy_matrix  # noqa: E402
from DCEUSResponseLib.spatial.registration import LPS_FROM_RAS  # noqa: E402

SCREENSHOTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "screenshots")


@pytest.fixture(scope="module")
def fused(fused_exact):
    """``fuse --scene`` on a short demo clip (maps binned 8) and the demo patient, exact landmarks."""
    return fused_exact


@pytest.fixture()
def scene(fused):
    out, _ = fused
    with create_headless_application() as app:
        assert app.scene.ReadFromMRB(str(out / "fused.mrb"))
        yield app


def _by_layout(scene, class_name, layout_name):
    nodes = [scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name))]
    found = [node for node in nodes if node.GetLayoutName() == layout_name]
    assert len(found) == 1, (class_name, layout_name)
    return found[0]


def _named(scene, name):
    node = scene.GetFirstNodeByName(name)
    assert node is not None, name
    return node


def test_the_slice_views_lie_in_the_ceus_plane(scene, fused):
    _, result = fused
    matrix = np.array(result["registration"]["contrast_panel_to_patient_lps"])
    rotation_ras = (LPS_FROM_RAS @ matrix)[:3, :3]
    # view x = the frame's columns, view y = the frame's up (-rows): normal = -(frame z) in patient RAS
    expected = {"x": rotation_ras[:, 0], "y": -rotation_ras[:, 1], "normal": -rotation_ras[:, 2]}
    for layout in (FUSED_VIEW, MAP_VIEW):
        slice_to_ras = numpy_matrix(_by_layout(scene.scene, "vtkMRMLSliceNode", layout).GetSliceToRAS())
        for column, axis in enumerate(("x", "y", "normal")):
            actual = slice_to_ras[:3, column] / np.linalg.norm(slice_to_ras[:3, column])
            angle = np.degrees(np.arccos(np.clip(actual @ expected[axis], -1.0, 1.0)))
            assert angle < 0.1, (layout, axis, angle)


def _layer_values(app, layout, layer_name, panel=None):
    """The scalar values a slice view's layer shows (its reslice output), rows top to bottom."""
    import slicer
    from vtkmodules.util import numpy_support

    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLApplicationLogic(app.app_logic)
    logic.SetMRMLScene(app.scene)
    slice_node = _by_layout(app.scene, "vtkMRMLSliceNode", layout)
    if panel is not None:  # a viewer sizes the view; here: the contrast panel's pixel grid, as fuse wrote it
        (rows, columns), (dy, dx) = panel
        slice_node.SetDimensions(columns, rows, 1)
        slice_node.SetFieldOfView(columns * dx, rows * dy, slice_node.GetFieldOfView()[2])
    logic.SetSliceNode(slice_node)
    slice_node.Modified()  # the slice logic sets the layers' slab up on the slice node's events
    layer = logic.GetBackgroundLayer() if layer_name == "background" else logic.GetForegroundLayer()
    reslice = layer.GetReslice()
    reslice.Update()
    image = reslice.GetOutput()
    columns, rows, _ = image.GetDimensions()
    values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(rows, columns, -1)[::-1, :, 0]
    logic.SetMRMLScene(None)
    return values.astype(np.float64), layer.GetVolumeNode()


@pytest.mark.parametrize("layer_name, file_name, tolerance", [("background", "ct_on_ceus.nrrd", 0.01),
                                                               ("foreground", "suv_on_ceus.nrrd", 0.001)])
def test_the_fused_view_shows_what_fuse_measured(scene, fused, layer_name, file_name, tolerance):
    out, _ = fused
    expected, header = nrrd.read(str(out / "fusion" / file_name), index_order="C")
    spacing = (header["space directions"][1][1], header["space directions"][0][0])  # (dy, dx) mm
    shown, volume = _layer_values(scene, FUSED_VIEW, layer_name, (expected.shape, spacing))
    assert volume.GetName() == ("CT" if layer_name == "background" else "PET SUVbw")
    assert shown.shape == expected.shape
    inside = np.isfinite(expected)
    assert inside.mean() > 0.9
    # the same slab mean of the same trilinear samples: equal to float precision
    assert np.max(np.abs(shown[inside] - expected[inside])) < tolerance
    # a view that ignored the slab (one sample) would differ by far more at the lesions' edges
    assert np.ptp(expected[inside]) > 20 * tolerance


def test_the_map_view_shows_the_contrast_frame_and_the_map(scene):
    background, volume = _layer_values(scene, MAP_VIEW, "background")
    assert volume.GetAttribute("DCEUS.Panel") == "contrast"
    composite = _by_layout(scene.scene, "vtkMRMLSliceCompositeNode", MAP_VIEW)
    foreground = scene.scene.GetNodeByID(composite.GetForegroundVolumeID())
    assert foreground.GetAttribute("DCEUS.Parameter") == "PE"
    assert 0.3 <= composite.GetForegroundOpacity() <= 0.8
    assert foreground.GetTransformNodeID() == volume.GetTransformNodeID()  # both in the CEUS plane
    segmentation = scene.scene.GetFirstNodeByClass("vtkMRMLSegmentationNode").GetDisplayNode()
    assert segmentation.GetVisibility2DOutline() and not segmentation.GetVisibility2DFill()


def test_the_volume_rendering_uses_the_shipped_transfer_functions(scene):
    presets = load_presets()
    for volume_name, preset_name in (("CT", CT_PRESET), ("PET SUVbw", PET_PRESET)):
        volume = _named(scene.scene, volume_name)
        displays = [volume.GetNthDisplayNode(i) for i in range(volume.GetNumberOfDisplayNodes())]
        rendering = [d for d in displays if d.IsA("vtkMRMLVolumeRenderingDisplayNode")]
        assert len(rendering) == 1, volume_name
        view = _by_layout(scene.scene, "vtkMRMLViewNode", THREED_VIEW)
        assert rendering[0].IsDisplayableInView(view.GetID()) and rendering[0].GetVisibility()
        properties = rendering[0].GetVolumePropertyNode()
        assert properties.GetName() == preset_name
        np.testing.assert_allclose(_function_nodes(properties.GetScalarOpacity(), 4, 2),
                                   presets[preset_name]["scalar_opacity"], atol=1e-6)
        np.testing.assert_allclose(_function_nodes(properties.GetColor(), 6, 4), presets[preset_name]["colour"],
                                   atol=1e-6)


def _function_nodes(function, size, keep):
    """A piecewise / colour transfer function's nodes (x, values...)."""
    nodes = []
    for index in range(function.GetSize()):
        node = [0.0] * size
        function.GetNodeValue(index, node)
        nodes.append(node[:keep])
    return nodes


def test_the_bundle_reloads_every_view_node(scene):
    app_scene = scene.scene
    fused = _by_layout(app_scene, "vtkMRMLSliceCompositeNode", FUSED_VIEW)
    assert app_scene.GetNodeByID(fused.GetBackgroundVolumeID()).GetName() == "CT"
    assert app_scene.GetNodeByID(fused.GetForegroundVolumeID()).GetName() == "PET SUVbw"
    fused_slice = _by_layout(app_scene, "vtkMRMLSliceNode", FUSED_VIEW)
    assert fused_slice.GetSlabReconstructionEnabled() and fused_slice.GetSlabReconstructionThickness() == 5.0
    plane = _named(app_scene, PLANE_MODEL_NAME)
    assert plane.GetPolyData().GetNumberOfCells() > 100
    assert plane.GetTransformNodeID() == _named(app_scene, "PE map").GetTransformNodeID()
    legends = [app_scene.GetNthNodeByClass(i, "vtkMRMLColorLegendDisplayNode")
               for i in range(app_scene.GetNumberOfNodesByClass("vtkMRMLColorLegendDisplayNode"))]
    titles = sorted(legend.GetTitleText() for legend in legends)
    assert titles == ["PE (a.u.)", "PE (a.u.)", "SUVbw (g/ml)"]
    pet = _named(app_scene, "PET SUVbw").GetDisplayNode()
    assert pet.GetColorNodeID() == "vtkMRMLPETProceduralColorNodePET-Heat" and pet.GetWindowLevelMin() == 0.0
    assert _named(app_scene, "CT").GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeGrey"


def test_the_3d_view_shows_the_map_on_the_plane(scene):
    sys.path.insert(0, SCREENSHOTS)
    render = pytest.importorskip("render_fusion_screenshots")
    try:
        render.check_offscreen_rendering()
    except render.RenderingUnavailable as error:
        pytest.skip(str(error))
    app_scene = scene.scene
    view = _by_layout(app_scene, "vtkMRMLViewNode", THREED_VIEW)
    plane = _named(app_scene, PLANE_MODEL_NAME)
    slice_to_ras = numpy_matrix(_by_layout(app_scene, "vtkMRMLSliceNode", FUSED_VIEW).GetSliceToRAS())
    window, renderer, _ = render.render_3d_view(scene, view, slice_to_ras, size=(400, 300))
    shown = render.window_pixels(window).astype(np.int16)
    assert len(np.unique(shown.reshape(-1, 3), axis=0)) > 100 and shown.std() > 10  # not blank
    # the map's darkest colours are near the view's dark background: compare on a white one, legend off
    view.SetBackgroundColor(1.0, 1.0, 1.0)
    view.SetBackgroundColor2(1.0, 1.0, 1.0)
    import slicer

    slicer.vtkSlicerColorLogic.GetColorLegendDisplayNode(plane).SetVisibility(False)
    shown = render.window_pixels(window).astype(np.int16)
    plane.GetDisplayNode().SetVisibility(False)
    hidden = render.window_pixels(window).astype(np.int16)
    changed = np.any(np.abs(shown - hidden) > 30, axis=-1)
    inside = _projected_plane(renderer, plane, shown.shape[:2])
    assert inside.sum() > 500  # the plane covers a fair part of the view
    # the map is drawn where the plane projects (less the landmarks in front, the PET lesion through it and
    # the not-fitted map pixels)...
    assert changed[inside].mean() > 0.5
    assert changed[~inside].mean() < 0.01  # ...and nowhere else


def _projected_plane(renderer, plane, shape):
    """Pixels (rows top to bottom) inside the projection of the plane model's points (world = under the
    registration), as a convex hull."""
    from scipy.spatial import Delaunay
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    points = numpy_support.vtk_to_numpy(plane.GetPolyData().GetPoints().GetData())
    to_world = vtkMatrix4x4()
    plane.GetParentTransformNode().GetMatrixTransformToWorld(to_world)
    world = (numpy_matrix(to_world) @ np.c_[points, np.ones(len(points))].T)[:3].T
    pixels = []
    for point in world:
        renderer.SetWorldPoint(*point, 1.0)
        renderer.WorldToDisplay()
        x, y, _ = renderer.GetDisplayPoint()
        pixels.append((shape[0] - 1 - y, x))
    hull = Delaunay(np.array(pixels))
    rows, columns = np.mgrid[0:shape[0], 0:shape[1]]
    inside = hull.find_simplex(np.c_[rows.ravel(), columns.ravel()]) >= 0
    # two pixels in from the border: antialiasing and the outline model
    from scipy import ndimage

    return ndimage.binary_erosion(inside.reshape(shape), iterations=2)
