"""Render the README / Extensions Manager screenshots from the real software, headless and offscreen.

    python Testing/screenshots/render_screenshots.py --out Resources/Screenshots

builds the bundled demo study, analyses the baseline exam with parametric maps as
``python -m DCEUSResponseLib analyze ... --dynamic-range 50 --injection-time 2 --reference liver
--maps --map-binning 4`` does (4 x 4 blocks: see :data:`MAP_BINNING`), puts clip, ROIs, results and
maps into a headless Slicer scene with :mod:`DCEUSResponseLib.mrml` (the nodes the Slicer module and
``--scene`` make), and renders:

* ``1.png``: Slicer's axial (Red) slice view, drawn by Slicer's own slice logic and displayable
  managers (``vtkMRMLSliceLogic``: layer reslicing and blending; segmentations, colour legend and
  ruler displayable managers), driven without Qt the way trame-slicer does: the contrast panel at
  lesion1's peak as background (as on the scanner: depth down, not flipped), the PE map as
  foreground at 60 % opacity (not-fitted pixels transparent), the ROI segments as outlines (drawn
  where they are quantified, on the contrast panel), the map's colour legend, the ruler, and the
  layer names in the corner as Slicer's slice view annotations (DataProbe, Qt) write them.
* ``2.png``: the TIC chart: the plot chart node's series (measured markers, fitted lines) drawn
  by VTK's ``vtkChartXY`` set up from the chart, series and table nodes as Slicer's
  ``qMRMLPlotView`` sets it up (that widget needs Qt, so its node-to-chart mapping is repeated here).

Both are saved as 256-colour PNGs (speckle makes 24-bit ones over 500 KB). The output depends only
on the code: rerun after changing what the pictures show and commit the PNGs.

Offscreen rendering uses Mesa through EGL (``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow``, set
below before VTK is imported unless the environment sets it; software rendering, no GPU or X
server). On Debian 12 / Ubuntu the libraries come from::

    apt-get install -y --no-install-recommends libegl1 libegl-mesa0 libgl1-mesa-dri

(``libEGL.so.1``, Mesa's EGL vendor library and its ``swrast`` driver, which the ``vtk`` wheel
loads at run time). The wheel can also use OSMesa (``VTK_DEFAULT_OPENGL_WINDOW=
vtkOSOpenGLRenderWindow`` with ``libosmesa6``; not what this was made with). Exit status 2, before
any work, when offscreen rendering does not work.
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
CHART_BACKGROUND = (255, 253, 246, 255)  # qMRMLPlotView's
FOREGROUND_OPACITY = 0.6
OVERLAY_PARAMETER = "PE"
LESION = "lesion1"
SLICE_ANNOTATION_FONT_SIZE = 16  # Slicer's default is Times 14; a little larger to be legible in a README
EXIT_NO_RENDERING = 2
# Maps of 4 x 4 pixel blocks (0.8 mm): single-pixel fits of fully developed speckle scatter so
# much that a few per cent of outlying pixels set the 98th percentile of the window and the lesion
# rim no longer stands out; binned, the map reads at a glance (``--map-binning 1`` for the full grid).
MAP_BINNING = 4


class RenderingUnavailable(RuntimeError):
    """Offscreen OpenGL rendering cannot be set up here."""


# ----------------------------------------------------------------------------------------------
# The study, its analysis and the scene


def analyse_demo_baseline(folder: str, map_binning: int = MAP_BINNING):
    """The baseline exam of the demo study analysed with maps (as the command line's ``--maps``)."""
    from DCEUSResponseLib.app import demo
    from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze_files

    study = demo.build_demo_study(folder)
    options = AnalysisOptions(dynamic_range_db=demo.DYNAMIC_RANGE_DB, injection_time_s=demo.INJECTION_TIME_S,
                              reference=demo.REFERENCE, maps=True, map_binning=map_binning)
    return analyze_files(study["baseline"]["clip"], [study["baseline"]["segmentation"]], options)


def contrast_panel_rois(analysis):
    """The analysis's ROIs as full-frame masks where they were quantified: on the contrast panel."""
    from DCEUSResponseLib.ceus.tic import full_frame_on_contrast_panel

    return full_frame_on_contrast_panel(analysis.roi_masks, analysis.layout, (analysis.clip.rows, analysis.clip.columns))


def build_scene(app, analysis):
    """Clip sequences, ROI segmentation, results and maps, as the module and ``--scene`` add them."""
    from DCEUSResponseLib.scene.clip_nodes import add_clip_sequences
    from DCEUSResponseLib.scene.map_volumes import add_parameter_maps
    from DCEUSResponseLib.scene.segmentation import add_roi_segmentation
    from DCEUSResponseLib.scene.tables import add_analysis_results

    scene = app.scene
    clip_nodes = add_clip_sequences(scene, analysis.clip, analysis.layout)
    segmentation = add_roi_segmentation(scene, contrast_panel_rois(analysis), analysis.clip,
                                             clip_nodes.contrast_volume)
    results = add_analysis_results(scene, analysis, segmentation_node=segmentation)
    maps = add_parameter_maps(scene, analysis.maps, frame_spacing_mm=analysis.clip.frame_spacing_mm)
    return clip_nodes, segmentation, results, maps


def peak_frame(analysis, roi: str = LESION) -> int:
    """The frame nearest the fitted peak (TTP) of ``roi``."""
    ttp = analysis.rois[roi].parameters["TTP"]
    return int(np.argmin(np.abs(np.asarray(analysis.times_s) - ttp)))


# ----------------------------------------------------------------------------------------------
# Offscreen rendering


INSTALL_HINT = "apt-get install -y --no-install-recommends libegl1 libegl-mesa0 libgl1-mesa-dri"
# Renders a red 8 x 8 window and prints the centre pixel: run in a child process, because a
# missing or broken OpenGL library can crash VTK rather than report an error.
_PROBE = """
import sys
import vtkmodules.vtkRenderingOpenGL2
from vtkmodules.vtkRenderingCore import vtkRenderer, vtkRenderWindow, vtkWindowToImageFilter
window = vtkRenderWindow()
window.SetOffScreenRendering(1)
window.SetSize(8, 8)
renderer = vtkRenderer()
renderer.SetBackground(1.0, 0.0, 0.0)
window.AddRenderer(renderer)
if not window.SupportsOpenGL():
    sys.exit(3)
window.Render()
grab = vtkWindowToImageFilter()
grab.SetInput(window)
grab.Update()
print(window.GetClassName(), *(int(grab.GetOutput().GetScalarComponentAsDouble(4, 4, 0, c)) for c in range(3)))
"""


def check_offscreen_rendering() -> str:
    """The render window class that works offscreen here, or :class:`RenderingUnavailable`."""
    import subprocess

    try:
        result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise RenderingUnavailable("the offscreen rendering probe did not finish") from None
    words = result.stdout.split()
    if result.returncode != 0 or words[1:] != ["255", "0", "0"]:
        details = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise RenderingUnavailable(f"offscreen OpenGL rendering ({os.environ.get('VTK_DEFAULT_OPENGL_WINDOW')}) "
                                   f"does not work here: {details}; on Debian/Ubuntu: {INSTALL_HINT}")
    return words[0]


def offscreen_render_window(size):
    """An offscreen render window, or :class:`RenderingUnavailable`."""
    from vtkmodules.vtkRenderingCore import vtkRenderWindow
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (the OpenGL window factories)

    window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*size)
    if not window.SupportsOpenGL():
        raise RenderingUnavailable(f"{window.GetClassName()} cannot create an OpenGL context ({INSTALL_HINT})")
    return window


def save_png(window, path: str) -> None:
    """Render ``window`` and save what it shows as a 256-colour PNG (speckle keeps 24-bit PNGs large)."""
    from PIL import Image
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
    picture = Image.fromarray(np.ascontiguousarray(pixels[::-1]))  # VTK's rows run bottom to top
    picture = picture.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    staged = path + ".part"
    picture.save(staged, format="PNG", optimize=True)
    os.replace(staged, path)


SLICE_VIEW_MANAGERS = ("vtkMRMLSegmentationsDisplayableManager2D", "vtkMRMLColorLegendDisplayableManager")


def render_slice_view(app, slice_node, size, path: str | None = None, annotate: bool = True,
                      managers_names=SLICE_VIEW_MANAGERS, fit_to_background: bool = False):
    """Draw ``slice_node``'s view as Slicer's slice view does (its slice logic's blended layers, as the
    light box manager shows them, and the displayable managers: outlines, legends) offscreen; fitted to
    the background volume first when ``fit_to_background``; a PNG saved when ``path`` is given.

    Returns the window (the caller may render again or read pixels), the slice logic and the managers."""
    import slicer
    import vtkmodules.vtkInteractionStyle  # noqa: F401  (the interactor's default style)
    from vtkmodules.vtkRenderingCore import vtkActor2D, vtkImageMapper, vtkRenderer, vtkRenderWindowInteractor

    scene, app_logic = app.scene, app.app_logic
    add_crosshair(scene)
    window = offscreen_render_window(size)
    renderer = vtkRenderer()
    window.AddRenderer(renderer)
    renderer.GetActiveCamera().ParallelProjectionOn()
    interactor = vtkRenderWindowInteractor()
    interactor.SetRenderWindow(window)
    interactor.Initialize()
    factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
    factory.SetMRMLApplicationLogic(app_logic)
    for manager in managers_names:
        if not factory.IsDisplayableManagerRegistered(manager):
            factory.RegisterDisplayableManager(manager)
    managers = slicer.vtkMRMLDisplayableManagerGroup()
    managers.Initialize(factory, renderer)
    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLApplicationLogic(app_logic)
    app_logic.GetSliceLogics().AddItem(logic)
    logic.SetMRMLScene(scene)
    logic.SetSliceNode(slice_node)
    managers.SetMRMLDisplayableNode(slice_node)
    announce_legends(scene)
    image_mapper = vtkImageMapper()
    image_mapper.SetColorWindow(255)
    image_mapper.SetColorLevel(127.5)
    image_actor = vtkActor2D()
    image_actor.SetMapper(image_mapper)
    image_actor.GetProperty().SetDisplayLocationToBackground()
    renderer.AddViewProp(image_actor)
    logic.ResizeSliceNode(*size)
    if fit_to_background:
        logic.FitSliceToBackground()
        logic.SnapSliceOffsetToIJK()
    image_mapper.SetInputConnection(logic.GetImageDataConnection())
    if annotate:
        renderer.AddViewProp(layer_annotation(logic))
    managers.RequestRender()
    if path:
        save_png(window, path)
    return window, logic, managers


def announce_legends(scene) -> None:
    """Tell new views of the scene's colour legends: Slicer's legend displayable manager learns of legends
    only when they are added to the scene (in Slicer the views exist before a scene is loaded)."""
    import slicer

    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLColorLegendDisplayNode")):
        scene.InvokeEvent(slicer.vtkMRMLScene.NodeAddedEvent, scene.GetNthNodeByClass(index, "vtkMRMLColorLegendDisplayNode"))


def add_crosshair(scene) -> None:
    """The scene's crosshair node, as qSlicerCoreApplication adds it (the slice logic expects one)."""
    import slicer

    if scene.GetFirstNodeByClass("vtkMRMLCrosshairNode") is None:
        crosshair = slicer.vtkMRMLCrosshairNode()
        crosshair.SetCrosshairName("default")
        scene.AddNode(crosshair)


def render_map_slice_view(app, analysis, clip_nodes, segmentation, maps, path: str) -> None:
    """1.png: the Red slice view of the contrast panel at the lesion's peak, the PE map over it, the ROI
    outlines, the map's legend and a ruler."""
    import slicer

    from DCEUSResponseLib.scene.segmentation import show_roi_outlines

    scene = app.scene
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)
    maker = slicer.vtkMRMLSliceLogic()  # the Red slice and composite nodes, made as Slicer makes them
    maker.SetMRMLScene(scene)
    slice_node = maker.AddSliceNode("Red")
    composite = maker.GetSliceCompositeNode()
    maker.SetMRMLScene(None)
    slice_node.SetOrientation("Axial")
    slice_node.SetRulerType(slice_node.RulerTypeThick)
    slice_node.SetRulerColor(slice_node.RulerColorWhite)

    overlay = maps[OVERLAY_PARAMETER]
    composite.SetBackgroundVolumeID(clip_nodes.contrast_volume.GetID())
    composite.SetForegroundVolumeID(overlay.GetID())
    composite.SetForegroundOpacity(FOREGROUND_OPACITY)

    show_roi_outlines(segmentation)

    if not scene.IsNodeClassRegistered("vtkMRMLColorLegendDisplayNode"):  # the Colors module registers it
        scene.RegisterNodeClass(slicer.vtkMRMLColorLegendDisplayNode())
    legend = slicer.vtkSlicerColorLogic.AddDefaultColorLegendDisplayNode(overlay)
    legend.SetTitleText(f"{OVERLAY_PARAMETER} ({overlay.GetAttribute('DCEUS.Unit')})")
    legend.SetLabelFormat("%.3g")

    clip_nodes.browser.SetSelectedItemNumber(peak_frame(analysis))
    render_slice_view(app, slice_node, SLICE_VIEW_SIZE, path, fit_to_background=True,
                      managers_names=(*SLICE_VIEW_MANAGERS, "vtkMRMLRulerDisplayableManager"))


def layer_annotation(logic):
    """The bottom-left corner text Slicer's slice view annotations (DataProbe) show: the layers."""
    from vtkmodules.vtkRenderingAnnotation import vtkCornerAnnotation

    composite = logic.GetSliceCompositeNode()
    scene = logic.GetMRMLScene()
    background = scene.GetNodeByID(composite.GetBackgroundVolumeID())
    foreground = scene.GetNodeByID(composite.GetForegroundVolumeID())
    lines = []
    if foreground is not None:
        lines.append(f"F: {foreground.GetName()} ({int(composite.GetForegroundOpacity() * 100)}%)")
    if background is not None:
        lines.append(f"B: {background.GetName()}")
    annotation = vtkCornerAnnotation()
    annotation.SetText(vtkCornerAnnotation.LowerLeft, "\n".join(lines))
    annotation.SetMaximumFontSize(SLICE_ANNOTATION_FONT_SIZE)
    annotation.SetMinimumFontSize(SLICE_ANNOTATION_FONT_SIZE)
    annotation.SetNonlinearFontScaleFactor(1)
    properties = annotation.GetTextProperty()
    properties.SetFontFamilyToTimes()
    properties.SetShadow(1)
    properties.SetColor(1.0, 1.0, 1.0)
    return annotation


def render_chart(results, path: str) -> None:
    """The TIC chart node drawn with ``vtkChartXY`` as Slicer's plot view (``qMRMLPlotView``) draws it."""
    from vtkmodules.vtkChartsCore import vtkAxis, vtkChartXY, vtkPlotLine
    from vtkmodules.vtkCommonDataModel import vtkColor4ub
    from vtkmodules.vtkRenderingContext2D import vtkMarkerUtilities, vtkPen
    from vtkmodules.vtkViewsContext2D import vtkContextView
    import vtkmodules.vtkRenderingContextOpenGL2  # noqa: F401  (the OpenGL context device)

    chart_node = results.chart
    view = vtkContextView()
    window = view.GetRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*CHART_SIZE)
    if not window.SupportsOpenGL():
        raise RenderingUnavailable(f"{window.GetClassName()} cannot create an OpenGL context ({INSTALL_HINT})")
    view.GetRenderer().SetBackground(1.0, 1.0, 1.0)
    chart = vtkChartXY()
    view.GetScene().AddItem(chart)

    # qMRMLPlotViewPrivate::init: the chart's look
    chart.GetBackgroundBrush().SetColor(vtkColor4ub(*CHART_BACKGROUND))
    # qMRMLPlotViewPrivate::updatePlotFromPlotSeriesNode, for every series of the chart
    line_types = {0: vtkPen.NO_PEN, 1: vtkPen.SOLID_LINE, 2: vtkPen.DASH_LINE, 3: vtkPen.DOT_LINE,
                  4: vtkPen.DASH_DOT_LINE, 5: vtkPen.DASH_DOT_DOT_LINE}
    markers = {0: vtkMarkerUtilities.NONE, 1: vtkMarkerUtilities.CROSS, 2: vtkMarkerUtilities.PLUS,
               3: vtkMarkerUtilities.SQUARE, 4: vtkMarkerUtilities.CIRCLE, 5: vtkMarkerUtilities.DIAMOND}
    for index in range(chart_node.GetNumberOfPlotSeriesNodes()):
        series = chart_node.GetNthPlotSeriesNode(index)
        table = series.GetTableNode().GetTable()
        plot = vtkPlotLine()
        plot.SetWidth(series.GetLineWidth())
        plot.SetColorF(*series.GetColor())
        plot.SetOpacity(series.GetOpacity())
        plot.GetPen().SetOpacityF(series.GetOpacity())
        plot.GetPen().SetLineType(line_types.get(series.GetLineStyle(), vtkPen.NO_PEN))
        plot.SetMarkerSize(series.GetMarkerSize())
        plot.SetMarkerStyle(markers.get(series.GetMarkerStyle(), vtkMarkerUtilities.NONE))
        plot.SetUseIndexForXSeries(False)
        plot.SetInputData(table, series.GetXColumnName(), series.GetYColumnName())
        plot.SetLabel(series.GetName())
        chart.AddPlot(plot)
    # qMRMLPlotViewPrivate::updateWidgetFromMRML: title, legend, axes from the chart node
    font = chart_node.GetFontType() or "Arial"
    chart.SetTitle(chart_node.GetTitle() if chart_node.GetTitleVisibility() else "")
    title = chart.GetTitleProperties()
    title.SetFontFamily(title.GetFontFamilyFromString(font))
    title.SetFontSize(chart_node.GetTitleFontSize())
    chart.SetShowLegend(bool(chart_node.GetLegendVisibility()))
    legend = chart.GetLegend().GetLabelProperties()
    legend.SetFontFamily(legend.GetFontFamilyFromString(font))
    legend.SetFontSize(chart_node.GetLegendFontSize())
    for axis_id, text, visible in ((vtkAxis.BOTTOM, chart_node.GetXAxisTitle(), chart_node.GetXAxisTitleVisibility()),
                                   (vtkAxis.LEFT, chart_node.GetYAxisTitle(), chart_node.GetYAxisTitleVisibility())):
        axis = chart.GetAxis(axis_id)
        axis.SetTitle(text if visible else "")
        axis.SetBehavior(vtkAxis.AUTO)
        axis.SetGridVisible(bool(chart_node.GetGridVisibility()))
        for properties, size in ((axis.GetTitleProperties(), chart_node.GetAxisTitleFontSize()),
                                 (axis.GetLabelProperties(), chart_node.GetAxisLabelFontSize())):
            properties.SetFontFamily(properties.GetFontFamilyFromString(font))
            properties.SetFontSize(size)
            properties.SetBold(False)
    # VTK's 2D text textures wrap: the glyphs' top row reappears under a string drawn on its own
    # transparent background. Drawn on the colour behind it instead, the text looks the same
    # without that ghost line.
    chart_colour = [c / 255.0 for c in CHART_BACKGROUND[:3]]
    for properties in (chart.GetTitleProperties(), *(chart.GetAxis(a).GetTitleProperties() for a in range(4)),
                       *(chart.GetAxis(a).GetLabelProperties() for a in range(4))):
        properties.SetBackgroundColor(*chart_colour)
        properties.SetBackgroundOpacity(1.0)
    legend_colour = [0.0, 0.0, 0.0, 0.0]
    chart.GetLegend().GetBrush().GetColorF(legend_colour)
    chart.GetLegend().GetLabelProperties().SetBackgroundColor(*legend_colour[:3])
    chart.GetLegend().GetLabelProperties().SetBackgroundOpacity(1.0)
    chart.RecalculateBounds()
    save_png(window, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for 1.png and 2.png")
    parser.add_argument("--map-binning", type=int, default=MAP_BINNING,
                        help=f"map pixel blocks (default {MAP_BINNING}; 1: every pixel)")
    args = parser.parse_args(argv)

    from DCEUSResponseLib.scene.application import create_headless_application

    try:
        check_offscreen_rendering()  # before the long part
    except RenderingUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NO_RENDERING
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="dceus-screenshots-") as folder:
        analysis = analyse_demo_baseline(folder, args.map_binning)
    frame = peak_frame(analysis)
    print(f"analysed the demo baseline with maps ({args.map_binning} x {args.map_binning} binning) in "
          f"{time.time() - start:.1f} s; slice view at frame {frame} "
          f"({analysis.times_s[frame]:.1f} s after injection, the peak of {LESION})")
    with create_headless_application() as app:
        clip_nodes, segmentation, results, maps = build_scene(app, analysis)
        try:
            render_map_slice_view(app, analysis, clip_nodes, segmentation, maps, os.path.join(args.out, "1.png"))
            render_chart(results, os.path.join(args.out, "2.png"))
        except RenderingUnavailable as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_NO_RENDERING
    print(f"wrote {args.out}/1.png and 2.png in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
