"""Render the README / Extensions Manager screenshots from the real software, headless and offscreen.

    python Testing/screenshots/render_screenshots.py --out Resources/Screenshots

builds the bundled demo study, analyses the baseline exam with parametric maps exactly as
``python -m DCEUSResponseLib analyze ... --maps`` does, puts clip, ROIs, results and maps into a
headless Slicer scene with :mod:`DCEUSResponseLib.mrml` (the nodes the Slicer module and ``--scene``
make), and renders:

* ``1.png``: Slicer's axial (Red) slice view, drawn by Slicer's own slice logic and displayable
  managers (``vtkMRMLSliceLogic``: layer reslicing and blending; segmentations, colour legend and
  ruler displayable managers), the way trame-slicer drives them without Qt: the contrast panel at
  the lesion's peak as background, the PE map as foreground at 60 % opacity (not-fitted pixels
  transparent), the ROI segments as outlines, the map's colour legend and a scale bar.
* ``2.png``: the TIC chart: the plot chart node's series (measured markers, fitted lines) drawn
  by VTK's ``vtkChartXY`` configured from the chart, series and table nodes as Slicer's
  ``qMRMLPlotView`` does (that widget needs Qt, so its node-to-chart mapping is repeated here).

Offscreen rendering uses Mesa through EGL (``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow``, set
below before VTK is imported; software rendering, no GPU or X server). On Debian 12 / Ubuntu the
libraries come from::

    apt-get install -y --no-install-recommends libegl1 libegl-mesa0 libgl1-mesa-dri

(``libEGL.so.1``, Mesa's EGL vendor library and its ``swrast`` driver; the ``vtk`` wheel loads them
at run time). Exit status 2 when offscreen rendering is unavailable.
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
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repository: DCEUSResponseLib

SLICE_VIEW_SIZE = (720, 600)  # width, height of 1.png
CHART_SIZE = (900, 560)  # of 2.png
FOREGROUND_OPACITY = 0.6
OVERLAY_PARAMETER = "PE"
LESION = "lesion1"
EXIT_NO_RENDERING = 2


class RenderingUnavailable(RuntimeError):
    """Offscreen OpenGL rendering cannot be set up here."""


# ----------------------------------------------------------------------------------------------
# The study, its analysis and the scene


def analyse_demo_baseline(folder: str):
    """The baseline exam of the demo study analysed with maps (as the command line's ``--maps``)."""
    from DCEUSResponseLib import demo
    from DCEUSResponseLib.analysis import AnalysisOptions, analyze_files

    study = demo.build_demo_study(folder)
    options = AnalysisOptions(dynamic_range_db=demo.DYNAMIC_RANGE_DB, injection_time_s=demo.INJECTION_TIME_S,
                              reference=demo.REFERENCE, maps=True)
    return analyze_files(study["baseline"]["clip"], [study["baseline"]["segmentation"]], options)


def contrast_panel_rois(analysis):
    """The analysis's ROIs as full-frame masks where they were quantified: on the contrast panel."""
    from DCEUSResponseLib.rois import RoiMask, place_on_contrast_panel

    region = analysis.layout.contrast
    rois = []
    for roi in place_on_contrast_panel(analysis.roi_masks, analysis.layout):
        mask = np.zeros((analysis.clip.rows, analysis.clip.columns), dtype=bool)
        mask[region.slices] = roi.mask
        rois.append(RoiMask(roi.name, mask, roi.source))
    return rois


def build_scene(app, analysis):
    """Clip sequences, ROI segmentation, results and maps, as the module and ``--scene`` add them."""
    from DCEUSResponseLib import mrml

    scene = app.scene
    clip_nodes = mrml.add_clip_sequences(scene, analysis.clip, analysis.layout)
    segmentation = mrml.add_roi_segmentation(scene, contrast_panel_rois(analysis), analysis.clip,
                                             clip_nodes.contrast_volume)
    results = mrml.add_analysis_results(scene, analysis, segmentation_node=segmentation)
    maps = mrml.add_parameter_maps(scene, analysis.maps, frame_spacing_mm=mrml.frame_spacing_mm(analysis.clip))
    return clip_nodes, segmentation, results, maps


def peak_frame(analysis, roi: str = LESION) -> int:
    """The frame nearest the fitted peak (TTP) of ``roi``."""
    ttp = analysis.rois[roi].parameters["TTP"]
    return int(np.argmin(np.abs(np.asarray(analysis.times_s) - ttp)))


# ----------------------------------------------------------------------------------------------
# Offscreen rendering


def offscreen_render_window(size):
    """An offscreen render window, or :class:`RenderingUnavailable`."""
    from vtkmodules.vtkRenderingCore import vtkRenderWindow
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (the OpenGL window factories)

    window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*size)
    if not window.SupportsOpenGL():
        raise RenderingUnavailable(f"{window.GetClassName()} cannot create an OpenGL context "
                                   "(install: apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri)")
    return window


def save_png(window, path: str) -> None:
    from vtkmodules.vtkIOImage import vtkPNGWriter
    from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

    window.Render()
    grab = vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.SetInputBufferTypeToRGB()
    grab.ReadFrontBufferOff()
    grab.Update()
    writer = vtkPNGWriter()
    writer.SetCompressionLevel(9)
    writer.SetFileName(path)
    writer.SetInputConnection(grab.GetOutputPort())
    writer.Write()


def render_slice_view(app, analysis, clip_nodes, segmentation, maps, path: str) -> None:
    """Slicer's Red slice view (slice logic + displayable managers) of the contrast panel and PE map."""
    import slicer
    from vtkmodules.vtkInteractionStyle import vtkInteractorStyleUser  # noqa: F401
    from vtkmodules.vtkRenderingCore import vtkActor2D, vtkImageMapper, vtkRenderer, vtkRenderWindowInteractor

    scene, app_logic = app.scene, app.app_logic
    if scene.GetFirstNodeByClass("vtkMRMLCrosshairNode") is None:  # as qSlicerCoreApplication adds it
        crosshair = slicer.vtkMRMLCrosshairNode()
        crosshair.SetCrosshairName("default")
        scene.AddNode(crosshair)
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)

    window = offscreen_render_window(SLICE_VIEW_SIZE)
    renderer = vtkRenderer()
    window.AddRenderer(renderer)
    renderer.GetActiveCamera().ParallelProjectionOn()
    interactor = vtkRenderWindowInteractor()
    interactor.SetRenderWindow(window)
    interactor.Initialize()

    factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
    factory.SetMRMLApplicationLogic(app_logic)
    for manager in ("vtkMRMLSegmentationsDisplayableManager2D", "vtkMRMLColorLegendDisplayableManager",
                    "vtkMRMLRulerDisplayableManager"):
        if not factory.IsDisplayableManagerRegistered(manager):
            factory.RegisterDisplayableManager(manager)
    managers = slicer.vtkMRMLDisplayableManagerGroup()
    managers.Initialize(factory, renderer)

    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLApplicationLogic(app_logic)
    app_logic.GetSliceLogics().AddItem(logic)
    logic.SetMRMLScene(scene)
    slice_node = logic.AddSliceNode("Red")
    slice_node.SetOrientation("Axial")
    slice_node.SetRulerType(slice_node.RulerTypeThin)
    slice_node.SetRulerColor(slice_node.RulerColorWhite)
    managers.SetMRMLDisplayableNode(slice_node)

    overlay = maps[OVERLAY_PARAMETER]
    composite = logic.GetSliceCompositeNode()
    composite.SetBackgroundVolumeID(clip_nodes.contrast_volume.GetID())
    composite.SetForegroundVolumeID(overlay.GetID())
    composite.SetForegroundOpacity(FOREGROUND_OPACITY)

    segmentation_display = segmentation.GetDisplayNode()
    segmentation_display.SetVisibility2DFill(False)
    segmentation_display.SetVisibility2DOutline(True)
    segmentation_display.SetSliceIntersectionThickness(2)

    if not scene.IsNodeClassRegistered("vtkMRMLColorLegendDisplayNode"):  # the Colors module registers it
        scene.RegisterNodeClass(slicer.vtkMRMLColorLegendDisplayNode())
    legend = slicer.vtkSlicerColorLogic.AddDefaultColorLegendDisplayNode(overlay)
    legend.SetTitleText(f"{OVERLAY_PARAMETER} [{overlay.GetAttribute('DCEUS.Unit')}]")
    legend.SetLabelFormat("%.3g")

    clip_nodes.browser.SetSelectedItemNumber(peak_frame(analysis))

    image_mapper = vtkImageMapper()  # the slice logic's blended RGBA image, as Slicer's light box manager shows it
    image_mapper.SetColorWindow(255)
    image_mapper.SetColorLevel(127.5)
    image_actor = vtkActor2D()
    image_actor.SetMapper(image_mapper)
    image_actor.GetProperty().SetDisplayLocationToBackground()
    renderer.AddViewProp(image_actor)

    logic.ResizeSliceNode(*SLICE_VIEW_SIZE)
    logic.FitSliceToBackground()
    logic.SnapSliceOffsetToIJK()
    image_mapper.SetInputConnection(logic.GetImageDataConnection())
    managers.RequestRender()
    save_png(window, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for 1.png and 2.png")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    from DCEUSResponseLib import mrml

    start = time.time()
    with tempfile.TemporaryDirectory(prefix="dceus-screenshots-") as folder:
        analysis = analyse_demo_baseline(folder)
    print(f"analysed the demo baseline with maps in {time.time() - start:.1f} s")
    with mrml.create_headless_application() as app:
        clip_nodes, segmentation, results, maps = build_scene(app, analysis)
        try:
            render_slice_view(app, analysis, clip_nodes, segmentation, maps, os.path.join(args.out, "1.png"))
        except RenderingUnavailable as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_NO_RENDERING
    print(f"wrote {args.out}/1.png in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
