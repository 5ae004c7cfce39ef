"""Render the co-viewing screenshots of a fused exam headless and offscreen (Mesa EGL, as render_screenshots.py).

    python Testing/screenshots/render_fusion_screenshots.py --out Resources/Screenshots

analyses the demo's baseline exam with maps (as ``render_screenshots.py``), writes the demo patient's CT
and PET (CI grids: 3 mm CT, 4 mm PET), fuses them with the demo's landmark pairs (``fuse``), builds the
fused scene (:func:`DCEUSResponseLib.scene.fusion_nodes.add_fusion_nodes` and
:func:`DCEUSResponseLib.scene.fusion_views.add_fusion_views`, what ``fuse --scene`` writes), and draws
with Slicer's own slice logic, volume rendering and displayable managers (no Qt):

* ``3.png``: the fused view (Red): CT and SUV on the CEUS plane, ROI outlines, the SUV legend;
* ``4.png``: the map view (Yellow): the contrast frame at lesion1's peak and the PE map, the map legend;
* ``5.png``: the 3D view: PET and CT volume rendering, the CEUS plane with the map, the landmarks.

:func:`render_3d_view` (and ``render_screenshots.render_slice_view``, imported here) are also used by
``Testing/Python/test_fusion_views.py``.
"""
from __future__ import annotations

import os

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from render_screenshots import (  # noqa: E402
    EXIT_NO_RENDERING,
    add_crosshair,
    announce_legends,
    render_slice_view,
    MAP_BINNING,
    RenderingUnavailable,
    analyse_demo_baseline,
    check_offscreen_rendering,
    offscreen_render_window,
    peak_frame,
    save_png,
)

SLICE_VIEW_SIZE = (640, 580)  # width, height of 3.png and 4.png (the panel is 256 x 232 pixels)
THREED_VIEW_SIZE = (800, 600)  # of 5.png
THREED_BACKGROUND = ((0.05, 0.05, 0.1), (0.3, 0.32, 0.42))  # bottom, top: Slicer's dark gradient, darker
# The camera looks at the CEUS plane's centre along the fused view's normal, the view's up as up, so the
# plane reads as the CEUS image does (for the demo's subcostal plane: from the feet, anterior up, the
# patient's right on the left, as radiologists read axial images), turned a little (the plane's
# "up" and "right" components of CAMERA_TILT) to show it is a plane in a volume.
CAMERA_TILT = (0.25, 0.35)  # of the view's x and y axes, added to its normal
CAMERA_DISTANCE_MM = 650.0
CAMERA_VIEW_ANGLE_DEG = 13.0  # far and narrow: little perspective, the plane ~ 1/3 of the view
CAMERA_VIEW_UP_RAS = (0.0, 1.0, 0.0)


def render_3d_view(app, view_node, slice_to_ras, size=THREED_VIEW_SIZE, path: str | None = None):
    """Draw the 3D view (volume rendering, models, markups, legends) offscreen, the camera on the centre of
    the slice view whose 4 x 4 SliceToRAS is ``slice_to_ras`` (see :data:`CAMERA_TILT`).

    Returns (window, renderer, managers)."""
    import slicer
    import vtkmodules.vtkInteractionStyle  # noqa: F401
    import vtkmodules.vtkRenderingVolumeOpenGL2  # noqa: F401  (the GPU ray cast mapper's factory)
    from vtkmodules.vtkRenderingCore import vtkRenderer, vtkRenderWindowInteractor

    scene, app_logic = app.scene, app.app_logic
    add_crosshair(scene)
    window = offscreen_render_window(size)
    window.SetAlphaBitPlanes(1)
    renderer = vtkRenderer()
    window.AddRenderer(renderer)
    interactor = vtkRenderWindowInteractor()
    interactor.SetRenderWindow(window)
    interactor.Initialize()
    factory = slicer.vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance()
    factory.SetMRMLApplicationLogic(app_logic)
    for manager in ("vtkMRMLCameraDisplayableManager", "vtkMRMLViewDisplayableManager",
                    "vtkMRMLModelDisplayableManager", "vtkMRMLVolumeRenderingDisplayableManager",
                    "vtkMRMLMarkupsDisplayableManager", "vtkMRMLColorLegendDisplayableManager"):
        if not factory.IsDisplayableManagerRegistered(manager):
            factory.RegisterDisplayableManager(manager)
    managers = slicer.vtkMRMLDisplayableManagerGroup()
    managers.Initialize(factory, renderer)
    view_node.SetBackgroundColor(*THREED_BACKGROUND[0])
    view_node.SetBackgroundColor2(*THREED_BACKGROUND[1])
    view_node.SetBoxVisible(False)
    view_node.SetAxisLabelsVisible(False)
    managers.SetMRMLDisplayableNode(view_node)
    announce_legends(scene)
    camera = _camera_node(scene, view_node)
    axes = np.asarray(slice_to_ras, dtype=float)
    focus = axes[:3, 3]
    direction = axes[:3, 2] + CAMERA_TILT[0] * axes[:3, 0] + CAMERA_TILT[1] * axes[:3, 1]
    camera.SetFocalPoint(*focus)
    camera.SetPosition(*(focus + CAMERA_DISTANCE_MM * direction / np.linalg.norm(direction)))
    camera.SetViewUp(*axes[:3, 1])
    camera.SetViewAngle(CAMERA_VIEW_ANGLE_DEG)
    renderer.ResetCameraClippingRange()
    managers.RequestRender()
    window.Render()
    if path:
        save_png(window, path)
    return window, renderer, managers


def _camera_node(scene, view_node):
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLCameraNode")):
        camera = scene.GetNthNodeByClass(index, "vtkMRMLCameraNode")
        if camera.GetLayoutName() == view_node.GetLayoutName():
            return camera
    raise RuntimeError("the camera displayable manager made no camera node for the view")


def window_pixels(window) -> np.ndarray:
    """(height, width, 3) uint8 of what ``window`` shows, top row first."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

    window.Render()
    grab = vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.SetInputBufferTypeToRGB()
    grab.ReadFrontBufferOff()
    grab.Update()
    image = grab.GetOutput()
    width, height, _ = image.GetDimensions()
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, 3)
    return np.ascontiguousarray(pixels[::-1])


def slice_to_ras(slice_node) -> np.ndarray:
    """A slice node's SliceToRAS as a numpy matrix."""
    from DCEUSResponseLib.scene.nodes import numpy_matrix

    return numpy_matrix(slice_node.GetSliceToRAS())


def fuse_demo_baseline(folder: str, analysis):
    """The demo patient's CT / PET written into ``folder`` and the analysed baseline exam fused on them."""
    from DCEUSResponseLib.app import demo
    from DCEUSResponseLib.export.contract import write_analysis
    from DCEUSResponseLib.fusion.pipeline import fuse
    from DCEUSResponseLib.synthetic.dicom_ct_pet import write_patient
    from DCEUSResponseLib.synthetic.patient import make_patient

    analysis_dir = os.path.join(folder, "baseline-analysis")
    write_analysis(analysis, analysis_dir)
    patient = write_patient(os.path.join(folder, "ctpet"), make_patient(demo.demo_regions("baseline")))
    landmarks = demo.write_landmark_files(folder, *demo.demo_landmarks("baseline", seed=0))
    return fuse(analysis_dir, patient.ct_dir, patient.pet_dir, landmarks="=".join(landmarks))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for 3.png, 4.png and 5.png")
    args = parser.parse_args(argv)

    from DCEUSResponseLib.scene.application import create_headless_application
    from DCEUSResponseLib.scene.fusion_nodes import add_fusion_nodes
    from DCEUSResponseLib.scene.fusion_views import add_fusion_views

    try:
        check_offscreen_rendering()
    except RenderingUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NO_RENDERING
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="dceus-fusion-screenshots-") as folder:
        analysis = analyse_demo_baseline(os.path.join(folder, "study"), MAP_BINNING)
        fusion = fuse_demo_baseline(folder, analysis)
        print(f"analysed and fused the demo baseline in {time.time() - start:.1f} s")
        with create_headless_application() as app:
            nodes = add_fusion_nodes(app.scene, fusion)
            views = add_fusion_views(app.scene, nodes, fusion, app.module_logic("VolumeRendering"))
            nodes["clip"].browser.SetSelectedItemNumber(peak_frame(analysis))
            try:
                render_slice_view(app, views.fused_slice, SLICE_VIEW_SIZE, os.path.join(args.out, "3.png"))
                render_slice_view(app, views.map_slice, SLICE_VIEW_SIZE, os.path.join(args.out, "4.png"))
                render_3d_view(app, views.view, slice_to_ras(views.fused_slice), THREED_VIEW_SIZE,
                               os.path.join(args.out, "5.png"))
            except RenderingUnavailable as error:
                print(f"error: {error}", file=sys.stderr)
                return EXIT_NO_RENDERING
    print(f"wrote {args.out}/3.png, 4.png and 5.png in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
