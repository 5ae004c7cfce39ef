"""The MRML layer: clips, ROIs and results as 3D Slicer scene nodes, and Slicer scene bundles.

Qt-free: it needs only Slicer's MRML libraries (``import slicer``), which the real application
provides and which the ``slicer-core`` wheel provides without Qt (:func:`create_headless_application`
sets a scene up the way Slicer does). Every other function takes the scene (or a node) as argument,
so the Slicer module passes ``slicer.mrmlScene`` and the command line a headless scene.

Geometry (the clip's *frame geometry*, see :mod:`DCEUSResponseLib.rois`): frame pixel (row r,
column c) is at LPS (c dx, r dy, 0) mm, i.e. RAS (-c dx, -r dy, 0), with (dy, dx) the clip's pixel
spacing (1 mm when the clip has no calibration). Each display panel (the contrast panel, and the
B-mode panel of a dual display) becomes a volume holding that panel's crop with IJK (i = column
within the panel, j = row within the panel, k = 0) and its origin at the panel's top-left pixel, so
the panels stand side by side as on the scanner's screen and a segment drawn on either volume maps
back to full-frame pixels exactly. This is also the orientation Slicer's own DICOM image-sequence
plugin gives ultrasound clips (IJK-to-RAS diag(-1, -1, 1)).

Node attributes written here (all strings; JSON where structured):

* sequences: ``DCEUS.Panel`` (``contrast`` / ``bmode``), ``DCEUS.Display``, ``DCEUS.Source``,
  ``DCEUS.FrameTimes`` (s, JSON), ``DCEUS.FrameSize`` ([rows, columns]), ``DCEUS.FrameSpacingMm``
  ([dy, dx] of the grid), ``DCEUS.Region`` (this panel), ``DCEUS.Regions`` (all of the clip's
  ultrasound regions), ``DCEUS.PixelSpacingMm``, ``DCEUS.Photometric``, ``DCEUS.BitsStored``,
  ``DCEUS.TimingSource``, ``DCEUS.Warnings``, ``DCEUS.Palette`` (PALETTE COLOR clips),
  ``DICOM.<keyword>`` for every entry of ``Clip.uids`` and ``DICOM.instanceUIDs`` (the attribute
  Slicer's DICOM plugins set) for the SOP Instance UID;
* every frame volume, hence the proxy volumes: ``DCEUS.Panel``, ``DCEUS.Display``, ``DCEUS.Source``
  and the ``DICOM.*`` attributes (Slicer copies a frame's attributes to the proxy showing it);
* result tables, plot series and chart: ``DCEUS.Source``, ``DCEUS.SoftwareName``,
  ``DCEUS.SoftwareVersion``, ``DCEUS.Reference``; the parameter table also ``DCEUS.Results``, the
  complete ``results.json`` text (full precision: Slicer saves table cells with 6 significant digits);
* parametric map volumes (:func:`add_parameter_maps`): ``DCEUS.Parameter`` (``PE``, ...,
  ``status``), ``DCEUS.Unit``, ``DCEUS.Model``, ``DCEUS.Binning``, ``DCEUS.ColourMap``; the status
  volume also ``DCEUS.StatusCodes`` (JSON, code -> name); in a scene bundle also the provenance
  attributes of the result tables.

Parametric maps are volumes on the map grid (the contrast panel, binned N x N) placed in the frame
geometry, so they overlay the contrast panel volume exactly: IJK (column, row, 0) of the map, spacing
N dx, N dy, first voxel at the full-frame position of the first map pixel's centre. Values are
float32 with NaN where the pixel was not fitted; the display node thresholds the finite range
(``ApplyThreshold``), which makes NaN voxels transparent in a foreground overlay (Slicer's threshold
filter counts NaN as outside any range; without it NaN would show as the lowest colour, opaque).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from . import SOFTWARE_NAME, __version__
from .clip import Clip, UltrasoundRegion
from .errors import InputError
from .layout import DisplayLayout
from .parameters import PARAMETER_UNITS
from .rois import RoiMask

if TYPE_CHECKING:  # for annotations only: ``slicer`` is imported inside functions
    import slicer

    from .analysis import Analysis
    from .maps import ParametricMaps

PANEL_CONTRAST = "contrast"
PANEL_BMODE = "bmode"
TIME_INDEX_NAME = "time"
TIME_INDEX_UNIT = "s"
TIC_X_AXIS_TITLE = "time since injection [s]"
TIC_Y_AXIS_TITLE = "mean linear intensity [a.u.]"
# Segment and curve colours (RGB 0..1) when the caller gives none; the demo's ROI colours.
ROI_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.9, 0.3, 0.3), (0.3, 0.8, 0.3), (0.3, 0.5, 0.9), (0.9, 0.8, 0.2), (0.7, 0.3, 0.8),
)
# Slicer's default numeric index tolerance (s); tightened for clips with faster frames so that two
# frames never share an index value.
_DEFAULT_INDEX_TOLERANCE_S = 1e-3
# How far (pixels) a panel origin may sit from the pixel grid and still count as on it: only the
# round-off of saving spacing and origin as decimal text.
_GRID_TOLERANCE_PX = 1e-3
# Attributes every frame volume (and so the proxy volume showing it) carries, besides DICOM.*.
_FRAME_ATTRIBUTES = ("DCEUS.Panel", "DCEUS.Display", "DCEUS.Source")
# The module logics a headless scene gets, by Slicer's module names.
_MODULE_LOGIC_CLASSES = (
    ("Volumes", "vtkSlicerVolumesLogic"),
    ("Segmentations", "vtkSlicerSegmentationsModuleLogic"),
    ("Sequences", "vtkSlicerSequencesLogic"),
    ("Tables", "vtkSlicerTablesLogic"),
    ("Plots", "vtkSlicerPlotsLogic"),
    ("Transforms", "vtkSlicerTransformLogic"),
    ("SubjectHierarchy", "vtkSlicerSubjectHierarchyModuleLogic"),
)


# ----------------------------------------------------------------------------------------------
# Headless application


@dataclass
class HeadlessSlicer:
    """A Slicer scene with its application logic, module logics and IO manager, without Qt.

    ``cache_dir`` is the DataIOManager's cache (where ``WriteToMRB`` / ``ReadFromMRB`` pack and
    unpack bundles); it is deleted by :meth:`close` when this object created it. Use as a context
    manager or call :meth:`close`.
    """

    scene: Any
    app_logic: Any
    module_logics: dict[str, Any]
    remote_io: Any
    io_manager_logic: Any
    cache_dir: str
    owns_cache_dir: bool
    closed: bool = field(default=False)

    def module_logic(self, name: str) -> Any:
        """The logic of Slicer module ``name`` (``"Sequences"``, ``"Segmentations"``, ...)."""
        return self.module_logics[name]

    def close(self) -> None:
        """Detach the logics from the scene, clear it and remove the cache folder if it is ours."""
        if self.closed:
            return
        self.closed = True
        # Clearing the scene frees its data; the logics stay attached to the (now empty) scene and
        # go with it when the last reference is dropped. Detaching them one by one makes the
        # Segmentations logic warn about a missing subject hierarchy.
        self.scene.Clear(True)
        if self.owns_cache_dir:
            shutil.rmtree(self.cache_dir, ignore_errors=True)

    def __enter__(self) -> "HeadlessSlicer":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close()


def create_headless_application(cache_dir: str | None = None) -> HeadlessSlicer:
    """A scene set up as Slicer sets up ``slicer.mrmlScene``, for scripts and tests.

    Follows trame-slicer's ``SlicerApp`` and Slicer's own start-up: a ``vtkMRMLScene``, a
    ``vtkSlicerApplicationLogic`` with its colour logic and default colour tables, the module
    logics this package uses (their node classes are registered when they get the scene: a scene
    without them cannot read segmentations or sequence browsers from a file), and a
    ``vtkDataIOManagerLogic`` whose cache folder ``ReadFromMRB`` needs. ``cache_dir`` defaults to a
    new temporary folder, removed by :meth:`HeadlessSlicer.close`.
    """
    import slicer
    from vtkmodules.vtkCommonCore import vtkCollection

    owns_cache_dir = cache_dir is None
    cache_dir = tempfile.mkdtemp(prefix="dceus-slicer-cache-") if cache_dir is None else os.path.abspath(cache_dir)
    os.makedirs(cache_dir, exist_ok=True)

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    color_logic = app_logic.GetColorLogic()
    color_logic.SetMRMLScene(scene)
    color_logic.AddDefaultColorNodes()
    # No views: empty collections keep the application logic from looking for them.
    app_logic.SetSliceLogics(vtkCollection())
    app_logic.SetViewLogics(vtkCollection())

    # The application logic's colour logic serves as the Colors module (as in trame-slicer): Slicer's
    # vtkSlicerColorLogic would look for colour files in a Slicer installation.
    module_logics: dict[str, Any] = {"Colors": color_logic}
    app_logic.SetModuleLogic("Colors", color_logic)
    for module_name, class_name in _MODULE_LOGIC_CLASSES:
        logic = getattr(slicer, class_name)()
        # Slicer gives a logic its application logic before its scene (qSlicerAbstractCoreModule).
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        app_logic.SetModuleLogic(module_name, logic)
        module_logics[module_name] = logic

    remote_io = slicer.vtkMRMLRemoteIOLogic()
    remote_io.SetMRMLScene(scene)
    remote_io.SetMRMLApplicationLogic(app_logic)
    remote_io.GetCacheManager().SetRemoteCacheDirectory(cache_dir)
    io_manager_logic = slicer.vtkDataIOManagerLogic()
    io_manager_logic.SetMRMLScene(scene)
    io_manager_logic.SetMRMLApplicationLogic(app_logic)
    io_manager_logic.SetAndObserveDataIOManager(remote_io.GetDataIOManager())
    remote_io.AddDataIOToScene()
    return HeadlessSlicer(scene, app_logic, module_logics, remote_io, io_manager_logic, cache_dir, owns_cache_dir)


# ----------------------------------------------------------------------------------------------
# Geometry


def panel_ijk_to_ras(x0: int, y0: int, spacing_mm: tuple[float, float]) -> np.ndarray:
    """4 x 4 IJK-to-RAS matrix (mm) of a panel whose top-left pixel is frame pixel (row y0, column x0).

    i runs along the frame's columns (RAS -x), j along its rows (RAS -y), k is the 1 mm thick plane z = 0.
    """
    dy, dx = spacing_mm
    return np.array([[-dx, 0.0, 0.0, -x0 * dx],
                     [0.0, -dy, 0.0, -y0 * dy],
                     [0.0, 0.0, 1.0, 0.0],
                     [0.0, 0.0, 0.0, 1.0]])


def _add_new_node(scene, class_name: str, name: str):
    """``scene.AddNewNodeByClass``, registering the class first on a scene no module logic has set up."""
    if not scene.IsNodeClassRegistered(class_name):
        import slicer

        scene.RegisterNodeClass(getattr(slicer, class_name)())
    return scene.AddNewNodeByClass(class_name, name)


def _vtk_matrix(array: np.ndarray):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, float(array[row, column]))
    return matrix


def _numpy_matrix(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])


def _volume_ijk_to_ras(volume_node) -> np.ndarray:
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return _numpy_matrix(matrix)


def _grid_position(ijk_to_ras: np.ndarray, spacing_mm: tuple[float, float], what: str,
                   source: str) -> tuple[int, int]:
    """``(x0, y0)``: the frame pixel at IJK (0, 0, 0) of a grid that must be the frame's pixel grid."""
    dy, dx = spacing_mm
    expected = panel_ijk_to_ras(0, 0, spacing_mm)[:3, :2]
    linear = ijk_to_ras[:3, :2]
    if not np.allclose(linear, expected, rtol=1e-6, atol=1e-9 * max(dx, dy)):
        raise InputError(f"{what} is not on the clip's pixel grid (IJK-to-RAS columns "
                         f"{np.round(linear.T, 6).tolist()} mm, expected {np.round(expected.T, 6).tolist()} mm: "
                         "spacing (dx, dy) with i along RAS -x and j along RAS -y)", source)
    column = -ijk_to_ras[0, 3] / dx
    row = -ijk_to_ras[1, 3] / dy
    x0, y0 = int(round(column)), int(round(row))
    if abs(column - x0) > _GRID_TOLERANCE_PX or abs(row - y0) > _GRID_TOLERANCE_PX or abs(ijk_to_ras[2, 3]) > 1e-6:
        raise InputError(f"{what} is not on the clip's pixel grid: its first voxel is at frame pixel "
                         f"(row {row:.4f}, column {column:.4f}, plane z = {ijk_to_ras[2, 3]:.4g} mm)", source)
    return x0, y0


# ----------------------------------------------------------------------------------------------
# Clip <-> sequences


@dataclass
class ClipNodes:
    """The nodes :func:`add_clip_sequences` adds: the browser, its sequences and their proxy volumes."""

    browser: Any  # vtkMRMLSequenceBrowserNode
    contrast_sequence: Any  # vtkMRMLSequenceNode
    bmode_sequence: Any | None
    contrast_volume: Any  # proxy vtkMRMLScalarVolumeNode / vtkMRMLVectorVolumeNode
    bmode_volume: Any | None


def add_clip_sequences(scene: "slicer.vtkMRMLScene", clip: Clip, layout: DisplayLayout,
                       name: str = "CEUS") -> ClipNodes:
    """Add the clip's panels as volume sequences (index "time" in s) with one browser synchronising them.

    Grey clips become scalar volumes of the stored display values; colour clips RGB vector volumes
    (what the scanner showed, so the radiologist sees the same image; the analysis derives gray
    levels from these values exactly as from the DICOM file); PALETTE COLOR clips scalar volumes of
    the palette indices shown through a colour table of the palette. Index values are the frame
    times in s on the clip clock (first frame 0), written so that ``float(value)`` gives the time
    back exactly. The proxy volumes show the display values unchanged (fixed window/level over the
    stored range, not Slicer's automatic one).
    """
    spacing = clip.frame_spacing_mm
    times = np.asarray(clip.frame_times_s, dtype=np.float64)
    if times.shape != (clip.n_frames,):
        raise InputError(f"the clip has {clip.n_frames} frames but {times.size} frame times", clip.source)
    index_values = [repr(float(t)) for t in times]
    common = _clip_attributes(clip, layout)

    panels: list[tuple[str, UltrasoundRegion]] = [(PANEL_CONTRAST, layout.contrast)]
    if layout.bmode is not None:
        panels.append((PANEL_BMODE, layout.bmode))
    palette_node = _add_palette_colour_table(scene, clip, name) if clip.palette is not None else None

    sequences = {}
    for panel, region in panels:
        label = "contrast" if panel == PANEL_CONTRAST else "B-mode"
        sequence = _add_new_node(scene, "vtkMRMLSequenceNode", f"{name} {label}")
        sequence.SetIndexName(TIME_INDEX_NAME)
        sequence.SetIndexUnit(TIME_INDEX_UNIT)
        sequence.SetIndexType(sequence.NumericIndex)
        if times.size > 1:
            shortest = float(np.min(np.diff(times)))
            sequence.SetNumericIndexValueTolerance(min(_DEFAULT_INDEX_TOLERANCE_S, shortest / 10.0))
        attributes = {**common, "DCEUS.Panel": panel, "DCEUS.Region": json.dumps(_region_json(region))}
        for key, value in attributes.items():
            sequence.SetAttribute(key, value)
        # Proxies take the attributes of the frame they show (Slicer copies them on every frame
        # change) and volume sequence files keep them per frame: give frames the short ones only.
        frame_attributes = {key: value for key, value in attributes.items() if key in _FRAME_ATTRIBUTES
                            or key.startswith("DICOM.")}
        _fill_sequence(sequence, clip, region, spacing, index_values, frame_attributes)
        sequences[panel] = sequence

    browser = _add_new_node(scene, "vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetAttribute("DCEUS.Source", clip.source)
    browser.SetAttribute("DCEUS.Display", layout.display)
    if times.size > 1 and times[-1] > times[0]:
        browser.SetPlaybackRateFps(float((times.size - 1) / (times[-1] - times[0])))
    contrast_sequence = sequences[PANEL_CONTRAST]
    browser.SetAndObserveMasterSequenceNodeID(contrast_sequence.GetID())
    bmode_sequence = sequences.get(PANEL_BMODE)
    if bmode_sequence is not None:
        browser.AddSynchronizedSequenceNode(bmode_sequence)
    browser.SetSelectedItemNumber(0)

    proxies = {}
    for panel, sequence in sequences.items():
        proxy = _ensure_proxy_volume(browser, sequence)
        _show_display_values(proxy, clip, palette_node)
        proxies[panel] = proxy
    return ClipNodes(browser, contrast_sequence, bmode_sequence, proxies[PANEL_CONTRAST], proxies.get(PANEL_BMODE))


def _clip_attributes(clip: Clip, layout: DisplayLayout) -> dict[str, str]:
    attributes = {
        "DCEUS.Source": clip.source,
        "DCEUS.Display": layout.display,
        "DCEUS.FrameTimes": json.dumps([float(t) for t in clip.frame_times_s]),
        "DCEUS.FrameSize": json.dumps([clip.rows, clip.columns]),
        # the grid's (dy, dx) exactly; the volume geometry holds it up to decimal round-off once saved
        "DCEUS.FrameSpacingMm": json.dumps(list(clip.frame_spacing_mm)),
        "DCEUS.Regions": json.dumps([_region_json(region) for region in clip.regions]),
        "DCEUS.PixelSpacingMm": json.dumps(list(map(float, clip.pixel_spacing_mm)) if clip.pixel_spacing_mm else None),
        "DCEUS.Photometric": clip.photometric,
        "DCEUS.BitsStored": str(int(clip.bits_stored)),
        "DCEUS.TimingSource": clip.timing_source,
        "DCEUS.Warnings": json.dumps(list(clip.warnings)),
    }
    if clip.palette is not None:
        attributes["DCEUS.Palette"] = json.dumps(np.asarray(clip.palette, dtype=np.float64).tolist())
    for keyword, value in clip.uids.items():
        attributes[f"DICOM.{keyword}"] = str(value)
    if clip.uids.get("SOPInstanceUID"):
        # Slicer's DICOM plugins record the instances a node was loaded from under this name.
        attributes["DICOM.instanceUIDs"] = str(clip.uids["SOPInstanceUID"])
    return attributes


def _region_json(region: UltrasoundRegion) -> dict:
    return {"x0": int(region.x0), "y0": int(region.y0), "x1": int(region.x1), "y1": int(region.y1),
            "spacing_mm": list(map(float, region.spacing_mm)) if region.spacing_mm else None,
            "data_type": int(region.data_type), "spatial_format": int(region.spatial_format)}


def _region_from_json(value: Mapping) -> UltrasoundRegion:
    spacing = value.get("spacing_mm")
    return UltrasoundRegion(int(value["x0"]), int(value["y0"]), int(value["x1"]), int(value["y1"]),
                            (float(spacing[0]), float(spacing[1])) if spacing else None,
                            int(value.get("data_type", 1)), int(value.get("spatial_format", 1)))


def _fill_sequence(sequence, clip: Clip, region: UltrasoundRegion, spacing: tuple[float, float],
                   index_values: Sequence[str], frame_attributes: Mapping[str, str]) -> None:
    import slicer
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData

    colour = clip.is_colour
    frame_volume = slicer.vtkMRMLVectorVolumeNode() if colour else slicer.vtkMRMLScalarVolumeNode()
    frame_volume.SetIJKToRASMatrix(_vtk_matrix(panel_ijk_to_ras(region.x0, region.y0, spacing)))
    if colour:
        frame_volume.SetVoxelVectorType(slicer.vtkMRMLVolumeNode.VoxelVectorTypeColorRGB)
    for key, value in frame_attributes.items():
        frame_volume.SetAttribute(key, value)
    rows, columns = region.slices
    components = 3 if colour else 1
    vtk_type = numpy_support.get_vtk_array_type(clip.frames.dtype)
    for k, index_value in enumerate(index_values):
        pixels = np.ascontiguousarray(clip.frames[k, rows, columns]).reshape(-1, components)
        image = vtkImageData()
        image.SetDimensions(region.columns, region.rows, 1)
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(pixels, deep=True, array_type=vtk_type))
        frame_volume.SetAndObserveImageData(image)
        sequence.SetDataNodeAtValue(frame_volume, index_value)  # stores a copy


def _ensure_proxy_volume(browser, sequence):
    """The browser's proxy volume of ``sequence``, created here when no Sequences logic watches the scene.

    In Slicer and in a headless application the Sequences module logic creates proxies as soon as a
    sequence joins a browser; on a bare scene this does what it would do.
    """
    proxy = browser.GetProxyNode(sequence)
    if proxy is not None:
        return proxy
    selected = max(browser.GetSelectedItemNumber(), 0)
    source = sequence.GetNthDataNode(selected)
    proxy = browser.AddProxyNode(source, sequence)
    proxy.CopyContent(source, True)
    proxy.SetName(f"{sequence.GetName()} [{sequence.GetIndexName()}={sequence.GetNthIndexValue(selected)}"
                  f"{sequence.GetIndexUnit()}]")
    proxy.CreateDefaultSequenceDisplayNodes()
    proxy.AddDefaultStorageNode()
    return proxy


def _show_display_values(proxy, clip: Clip, palette_node) -> None:
    """Show stored display values as the scanner did: no automatic window/level, palette colours."""
    if proxy.GetDisplayNode() is None:
        proxy.CreateDefaultDisplayNodes()
    display = proxy.GetDisplayNode()
    if display is None or clip.is_colour:
        return  # RGB vector volumes are shown as colours unchanged
    if palette_node is not None:
        top = float(palette_node.GetNumberOfColors() - 1)
        display.SetAndObserveColorNodeID(palette_node.GetID())
    else:
        top = float(2 ** int(clip.bits_stored) - 1)
        display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, top)


def _add_palette_colour_table(scene, clip: Clip, name: str):
    palette = np.asarray(clip.palette, dtype=np.float64)
    table = _add_new_node(scene, "vtkMRMLColorTableNode", f"{name} palette")
    table.SetTypeToUser()
    table.SetNumberOfColors(int(palette.shape[0]))
    for index, (red, green, blue) in enumerate(np.clip(palette / 255.0, 0.0, 1.0)):
        table.SetColor(index, f"{index}", float(red), float(green), float(blue), 1.0)
    table.SetAttribute("DCEUS.Source", clip.source)
    return table


@dataclass
class _Panel:
    frames: np.ndarray
    times_s: np.ndarray
    x0: int
    y0: int
    spacing_mm: tuple[float, float]  # (dy, dx) of the volume's grid
    attributes: dict[str, str]

    @property
    def region_from_geometry(self) -> UltrasoundRegion:
        stored = self.attributes.get("DCEUS.Region")
        stored_region = _region_from_json(json.loads(stored)) if stored else None
        rows, columns = self.frames.shape[1:3]
        return UltrasoundRegion(self.x0, self.y0, self.x0 + columns - 1, self.y0 + rows - 1,
                                stored_region.spacing_mm if stored_region else self.spacing_mm,
                                stored_region.data_type if stored_region else 1,
                                stored_region.spatial_format if stored_region else 1)


def _node_attributes(node) -> dict[str, str]:
    return {name: node.GetAttribute(name) for name in node.GetAttributeNames() or ()}


def _read_panel(sequence) -> _Panel:
    """Frames, times and grid position of one panel sequence (any Slicer volume sequence of 2D frames)."""
    from vtkmodules.util import numpy_support

    source = sequence.GetName() or "sequence"
    count = sequence.GetNumberOfDataNodes()
    if count == 0:
        raise InputError("the sequence has no frames", source)
    attributes = _node_attributes(sequence)
    unit = (sequence.GetIndexUnit() or "").strip()
    scale = {"s": 1.0, "ms": 1e-3}.get(unit)
    if scale is None or sequence.GetIndexType() != sequence.NumericIndex:
        raise InputError(f"the sequence's index ({sequence.GetIndexName()!r}, unit {unit!r}) is not a time "
                         "in s or ms", source)
    try:
        times = np.array([float(sequence.GetNthIndexValue(k)) for k in range(count)], dtype=np.float64)
    except ValueError:
        raise InputError("the sequence has index values that are not numbers", source) from None
    if scale != 1.0:
        times = times * scale
    if np.any(np.diff(times) <= 0):
        raise InputError("the sequence's frame times do not increase", source)
    if times[0] != 0.0:
        times = times - times[0]  # clip clock: first frame at 0

    first = sequence.GetNthDataNode(0)
    if first is None or not first.IsA("vtkMRMLVolumeNode") or first.GetImageData() is None:
        raise InputError("the sequence does not hold image volumes", source)
    ijk_to_ras = _volume_ijk_to_ras(first)
    spacing = (abs(float(ijk_to_ras[1, 1])) or 1.0, abs(float(ijk_to_ras[0, 0])) or 1.0)
    stored_spacing = json.loads(attributes.get("DCEUS.FrameSpacingMm", "null") or "null")
    if stored_spacing and np.allclose(stored_spacing, spacing, rtol=1e-9):
        spacing = (float(stored_spacing[0]), float(stored_spacing[1]))  # decimal round-off of saving
    x0, y0 = _grid_position(ijk_to_ras, spacing, f"volume sequence {source!r}", source)

    columns, rows, planes = first.GetImageData().GetDimensions()
    if planes != 1:
        raise InputError(f"the sequence's volumes have {planes} slices; a CEUS frame is 2D", source)
    components = first.GetImageData().GetNumberOfScalarComponents()
    shape = (rows, columns) if components == 1 else (rows, columns, components)
    dtype = numpy_support.get_numpy_array_type(first.GetImageData().GetScalarType())
    frames = np.empty((count,) + shape, dtype=dtype)
    for k in range(count):
        volume = sequence.GetNthDataNode(k)
        image = volume.GetImageData() if volume is not None else None
        if image is None or image.GetDimensions() != (columns, rows, 1) or \
                image.GetNumberOfScalarComponents() != components:
            raise InputError(f"frame {k} of the sequence differs in size from the first", source)
        if not np.allclose(_volume_ijk_to_ras(volume), ijk_to_ras, rtol=1e-9, atol=1e-9):
            raise InputError(f"frame {k} of the sequence has another geometry than the first", source)
        frames[k] = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape)
    return _Panel(frames, times, x0, y0, spacing, attributes)


def clip_from_sequence(sequence_node: "slicer.vtkMRMLSequenceNode", *, source: str = "") -> Clip:
    """The clip of one panel sequence, in full-frame coordinates (the inverse of :func:`add_clip_sequences`).

    Frames have the size of the original frame (``DCEUS.FrameSize``, else just enough to hold the
    panel) with the panel's pixels placed by the volume geometry and zero elsewhere; frame times
    come from the index values. Also reads Slicer volume sequences not made here (e.g. by Slicer's
    DICOM image-sequence plugin): the whole volume is then the frame, with no ultrasound regions.
    """
    panel = _read_panel(sequence_node)
    # One panel of a dual display is a clip of its own (single display); a single display is complete.
    complete = panel.attributes.get("DCEUS.Display", "single") == "single"
    return _assemble_clip([panel], source, complete)


def clip_from_browser(browser_node: "slicer.vtkMRMLSequenceBrowserNode", *, source: str = "") -> Clip:
    """The full-frame clip of a browser made by :func:`add_clip_sequences`: both panels of a dual display.

    Each panel sequence (attribute ``DCEUS.Panel``; the master sequence when none has it) is placed
    in the frame by its geometry. Pixels outside the panels (burned-in annotations) are zero: the
    scene keeps only the panels, which is everything the analysis reads.
    """
    from vtkmodules.vtkCommonCore import vtkCollection

    collection = vtkCollection()
    browser_node.GetSynchronizedSequenceNodes(collection, True)
    sequences = [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
    panel_sequences = [s for s in sequences if s.GetAttribute("DCEUS.Panel") in (PANEL_CONTRAST, PANEL_BMODE)]
    if not panel_sequences:
        master = browser_node.GetMasterSequenceNode()
        if master is None:
            raise InputError("the sequence browser has no sequence", browser_node.GetName())
        panel_sequences = [master]
    # contrast first: its attributes describe the clip
    panel_sequences.sort(key=lambda s: s.GetAttribute("DCEUS.Panel") != PANEL_CONTRAST)
    panels = [_read_panel(s) for s in panel_sequences]
    complete = panels[0].attributes.get("DCEUS.Display", "single") == "single" or len(panels) == 2
    return _assemble_clip(panels, source, complete)


def _assemble_clip(panels: Sequence[_Panel], source: str, complete: bool) -> Clip:
    """A full-frame clip from panels; ``complete``: they are all the panels of the original display."""
    main = panels[0]
    attributes = main.attributes
    source = source or attributes.get("DCEUS.Source") or ""
    for panel in panels[1:]:
        if panel.frames.shape[0] != main.frames.shape[0] or not np.array_equal(panel.times_s, main.times_s):
            raise InputError("the panel sequences of the browser have different frame times", source)
        if panel.frames.dtype != main.frames.dtype or panel.frames.shape[3:] != main.frames.shape[3:]:
            raise InputError("the panel sequences of the browser hold different kinds of pixels", source)
        if not np.allclose(panel.spacing_mm, main.spacing_mm, rtol=1e-9):
            raise InputError("the panel sequences of the browser have different pixel spacings", source)

    stored_size = json.loads(attributes.get("DCEUS.FrameSize", "null") or "null")
    needed_rows = max(p.y0 + p.frames.shape[1] for p in panels)
    needed_columns = max(p.x0 + p.frames.shape[2] for p in panels)
    if min(min(p.x0, p.y0) for p in panels) < 0:
        raise InputError("a panel volume lies left of or above the frame's first pixel", source)
    rows, columns = (int(stored_size[0]), int(stored_size[1])) if stored_size else (needed_rows, needed_columns)
    if rows < needed_rows or columns < needed_columns:
        raise InputError(f"the panel volumes reach beyond the clip's {rows} x {columns} frame", source)

    n_frames = main.frames.shape[0]
    frames = np.zeros((n_frames, rows, columns) + main.frames.shape[3:], dtype=main.frames.dtype)
    for panel in panels:
        frames[:, panel.y0:panel.y0 + panel.frames.shape[1], panel.x0:panel.x0 + panel.frames.shape[2]] = panel.frames

    panel_regions = [panel.region_from_geometry for panel in panels]
    if "DCEUS.Regions" in attributes:
        regions = [_region_from_json(r) for r in json.loads(attributes["DCEUS.Regions"])]
        stored_boxes = {(r.x0, r.y0, r.x1, r.y1) for r in regions}
        panels_as_stored = all((r.x0, r.y0, r.x1, r.y1) in stored_boxes for r in panel_regions)
        if regions and not (complete and panels_as_stored):
            # part of a dual display, or panels moved since they were stored: the panels read are the clip
            regions = panel_regions
    else:
        regions = []  # a plain volume sequence: the whole volume is the image
    if "DCEUS.PixelSpacingMm" in attributes:
        stored_spacing = json.loads(attributes["DCEUS.PixelSpacingMm"] or "null")
        pixel_spacing = (float(stored_spacing[0]), float(stored_spacing[1])) if stored_spacing else None
    else:
        pixel_spacing = main.spacing_mm
    palette = None
    if attributes.get("DCEUS.Palette"):
        palette = np.asarray(json.loads(attributes["DCEUS.Palette"]), dtype=np.float64)
    photometric = attributes.get("DCEUS.Photometric") or ("RGB" if frames.ndim == 4 else "MONOCHROME2")
    bits_stored = int(attributes.get("DCEUS.BitsStored") or 8 * frames.dtype.itemsize)
    uids = {key[len("DICOM."):]: value for key, value in attributes.items()
            if key.startswith("DICOM.") and key != "DICOM.instanceUIDs"}
    warnings = json.loads(attributes.get("DCEUS.Warnings") or "[]")
    return Clip(source=source, frames=frames, frame_times_s=main.times_s.copy(), photometric=photometric,
                bits_stored=bits_stored, palette=palette, pixel_spacing_mm=pixel_spacing, regions=regions,
                timing_source=attributes.get("DCEUS.TimingSource", "sequence index"), warnings=list(warnings),
                uids=uids)


# ----------------------------------------------------------------------------------------------
# ROIs <-> segmentation


def add_roi_segmentation(scene: "slicer.vtkMRMLScene", rois: Sequence[RoiMask], clip: Clip,
                         reference_volume: "slicer.vtkMRMLVolumeNode", name: str = "ROIs",
                         colours: Mapping[str, tuple[float, float, float]] | None = None
                         ) -> "slicer.vtkMRMLSegmentationNode":
    """A segmentation with one segment per ROI (named after it), on the clip's pixel grid.

    ``rois`` are full-frame masks; each segment is stored where its pixels are, on either panel.
    The segmentation references ``reference_volume`` (normally the contrast panel volume) and its
    reference geometry is that volume's grid extended over the whole frame, so segments can be
    drawn and edited on either panel. ``colours`` (RGB 0..1 by ROI name) default to
    :data:`ROI_COLOURS`.
    """
    import slicer
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import VTK_UNSIGNED_CHAR

    frame_shape = (clip.rows, clip.columns)
    reference_matrix = _volume_ijk_to_ras(reference_volume)
    x0, y0 = _grid_position(reference_matrix, clip.frame_spacing_mm,
                            f"reference volume {reference_volume.GetName()!r}", clip.source)
    names = [roi.name for roi in rois]
    if len(set(names)) != len(names):
        raise InputError(f"duplicate ROI names among {names}", clip.source)

    segmentation_node = _add_new_node(scene, "vtkMRMLSegmentationNode", name)
    segmentation_node.CreateDefaultDisplayNodes()
    _set_source_representation_to_binary_labelmap(segmentation_node)
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    # Extend the reference geometry (same grid) over the whole frame so that ROIs on either panel fit.
    frame_extent = [-x0, clip.columns - 1 - x0, -y0, clip.rows - 1 - y0, 0, 0]
    segmentation = segmentation_node.GetSegmentation()
    segmentation.SetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
        slicer.vtkSegmentationConverter.SerializeImageGeometry(_vtk_matrix(reference_matrix), frame_extent))
    segmentation_node.SetAttribute("DCEUS.Source", clip.source)

    labelmap_name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    for index, roi in enumerate(rois):
        mask = np.asarray(roi.mask, dtype=bool)
        if mask.shape != frame_shape:
            raise InputError(f"mask of ROI {roi.name!r} is {mask.shape[0]} x {mask.shape[1]} pixels but the "
                             f"frames are {frame_shape[0]} x {frame_shape[1]}", roi.source)
        rows, columns = np.nonzero(mask)
        if rows.size == 0:
            raise InputError(f"ROI {roi.name!r} is empty (no non-zero pixel)", roi.source)
        r0, r1, c0, c1 = rows.min(), rows.max(), columns.min(), columns.max()
        image = slicer.vtkOrientedImageData()
        image.SetExtent(int(c0 - x0), int(c1 - x0), int(r0 - y0), int(r1 - y0), 0, 0)
        image.AllocateScalars(VTK_UNSIGNED_CHAR, 1)
        voxels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(r1 - r0 + 1, c1 - c0 + 1)
        voxels[:] = mask[r0:r1 + 1, c0:c1 + 1]
        image.SetImageToWorldMatrix(_vtk_matrix(reference_matrix))
        segment = slicer.vtkSegment()
        segment.SetName(roi.name)
        colour = (colours or {}).get(roi.name) or ROI_COLOURS[index % len(ROI_COLOURS)]
        segment.SetColor(*map(float, colour))
        segment.AddRepresentation(labelmap_name, image)
        segmentation.AddSegment(segment, roi.name)
    # Share labelmap layers between ROIs that do not overlap, as the Segment Editor does.
    segmentation.CollapseBinaryLabelmaps(False)
    return segmentation_node


def _set_source_representation_to_binary_labelmap(segmentation_node) -> None:
    if hasattr(segmentation_node, "SetSourceRepresentationToBinaryLabelmap"):
        segmentation_node.SetSourceRepresentationToBinaryLabelmap()
    else:  # Slicer before 5.4 called it the master representation
        segmentation_node.SetMasterRepresentationToBinaryLabelmap()


def rois_from_segmentation(segmentation_node: "slicer.vtkMRMLSegmentationNode", clip: Clip) -> list[RoiMask]:
    """One full-frame :class:`RoiMask` per segment, named after the segment.

    Each segment is exported as a binary labelmap on the clip's frame geometry (a temporary
    reference volume covering the frame, removed again). A segment on another pixel grid, reaching
    outside the frame, off the frame's plane, or empty is an :class:`InputError`, as for
    ``.seg.nrrd`` files on the command line.
    """
    import slicer
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import VTK_UNSIGNED_CHAR, vtkStringArray
    from vtkmodules.vtkCommonDataModel import vtkImageData

    scene = segmentation_node.GetScene()
    source = f"segmentation {segmentation_node.GetName()!r}"
    if scene is None:
        raise InputError("the segmentation node is not in a scene", source)
    spacing = clip.frame_spacing_mm
    frame_matrix = panel_ijk_to_ras(0, 0, spacing)
    segmentation = segmentation_node.GetSegmentation()
    segment_ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    if not segment_ids:
        raise InputError("the segmentation has no segments", source)
    labelmap_name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()

    before = _node_ids(scene)
    reference = _add_new_node(scene, "vtkMRMLScalarVolumeNode", "__dceus_frame_reference__")
    labelmap = _add_new_node(scene, "vtkMRMLLabelMapVolumeNode", "__dceus_roi_export__")
    try:
        reference.SetIJKToRASMatrix(_vtk_matrix(frame_matrix))
        frame_image = vtkImageData()
        frame_image.SetDimensions(clip.columns, clip.rows, 1)
        frame_image.AllocateScalars(VTK_UNSIGNED_CHAR, 1)
        reference.SetAndObserveImageData(frame_image)

        rois: list[RoiMask] = []
        for segment_id in segment_ids:
            segment = segmentation.GetSegment(segment_id)
            segment_name = segment.GetName() or segment_id
            internal_count = None
            internal = segment.GetRepresentation(labelmap_name) if _is_labelmap_source(segmentation) else None
            if internal is not None and internal.GetPointData().GetScalars() is not None:
                internal_matrix = _oriented_image_to_world(internal)
                _grid_position(internal_matrix, spacing, f"segment {segment_name!r}", source)
                values = numpy_support.vtk_to_numpy(internal.GetPointData().GetScalars())
                internal_count = int(np.count_nonzero(values == segment.GetLabelValue()))
            ids = vtkStringArray()
            ids.InsertNextValue(segment_id)
            if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                    segmentation_node, ids, labelmap, reference, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY):
                raise InputError(f"segment {segment_name!r} could not be exported as a labelmap", source)
            image = labelmap.GetImageData()
            if image is None or image.GetDimensions() != (clip.columns, clip.rows, 1):
                raise InputError(f"segment {segment_name!r} was not exported on the clip's frame", source)
            mask = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(clip.rows, clip.columns) != 0
            pixels = int(np.count_nonzero(mask))
            if pixels == 0:
                raise InputError(f"segment {segment_name!r} is empty on the clip's frame", source)
            if internal_count is not None and pixels != internal_count:
                raise InputError(f"segment {segment_name!r} has {internal_count - pixels} of its {internal_count} "
                                 f"pixels outside the clip's {clip.rows} x {clip.columns} frame or off its plane",
                                 source)
            rois.append(RoiMask(segment_name, mask.copy(), source))
    finally:
        for node_id in _node_ids(scene) - before:  # the helpers and whatever the export added
            node = scene.GetNodeByID(node_id)
            if node is not None:
                scene.RemoveNode(node)
    names = [roi.name for roi in rois]
    if len(set(names)) != len(names):
        raise InputError(f"segment names must be unique to name ROIs: {names}", source)
    return rois


def _is_labelmap_source(segmentation) -> bool:
    import slicer

    name = (segmentation.GetSourceRepresentationName() if hasattr(segmentation, "GetSourceRepresentationName")
            else segmentation.GetMasterRepresentationName())
    return name == slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()


def _oriented_image_to_world(image) -> np.ndarray:
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return _numpy_matrix(matrix)


def _node_ids(scene) -> set[str]:
    nodes = scene.GetNodes()
    return {nodes.GetItemAsObject(i).GetID() for i in range(nodes.GetNumberOfItems())}


# ----------------------------------------------------------------------------------------------
# Results: tables and chart


@dataclass
class ResultNodes:
    """The nodes :func:`add_analysis_results` adds."""

    tic_table: Any  # vtkMRMLTableNode, the columns of tic.csv
    parameter_table: Any  # vtkMRMLTableNode, the rows of parameters.csv
    chart: Any  # vtkMRMLPlotChartNode
    measured_series: dict[str, Any]  # ROI name -> vtkMRMLPlotSeriesNode (markers)
    fitted_series: dict[str, Any]  # ROI name -> vtkMRMLPlotSeriesNode (line), ROIs with a fit only

    @property
    def series(self) -> list[Any]:
        return [*self.measured_series.values(), *self.fitted_series.values()]


def add_analysis_results(scene: "slicer.vtkMRMLScene", analysis: "Analysis", name_prefix: str = "", *,
                         segmentation_node: "slicer.vtkMRMLSegmentationNode | None" = None) -> ResultNodes:
    """TIC and parameter tables and a chart of measured (markers) and fitted (lines) TICs.

    The TIC table has the columns of ``tic.csv`` (``time_s`` since injection, ``NAME_measured``,
    ``NAME_fitted`` in linear a.u., NaN where there is no fit; ``frame``, ``clip_time_s``,
    ``excluded``); the parameter table the rows of ``parameters.csv`` (numbers as double columns
    with units, NaN for null). A curve takes the colour of the segment named after its ROI in
    ``segmentation_node`` when given, else :data:`ROI_COLOURS`.
    """
    names = list(analysis.rois)
    provenance = _provenance_attributes(analysis)
    times = np.asarray(analysis.times_s, dtype=np.float64)

    tic_table = _add_new_node(scene, "vtkMRMLTableNode", f"{name_prefix}TIC")
    _add_double_column(tic_table, "time_s", times, "s", "time since injection")
    for name in names:
        roi = analysis.rois[name]
        _add_double_column(tic_table, f"{name}_measured", np.asarray(roi.tic, dtype=np.float64), "a.u.",
                           f"{name}: measured mean linear intensity")
        _add_double_column(tic_table, f"{name}_fitted", np.asarray(roi.fit.curve(times), dtype=np.float64), "a.u.",
                           f"{name}: fitted {roi.fit.model} model")
    _add_int_column(tic_table, "frame", np.arange(times.size), "frame index")
    _add_double_column(tic_table, "clip_time_s", np.asarray(analysis.clip.frame_times_s, dtype=np.float64), "s",
                       "time on the clip clock (first frame 0)")
    _add_int_column(tic_table, "excluded", (~np.asarray(analysis.frame_use, dtype=bool)).astype(np.int64),
                    "1 when the frame was kept out of the fit")

    parameter_table = _add_new_node(scene, "vtkMRMLTableNode", f"{name_prefix}Parameters")
    rois = [analysis.rois[name] for name in names]
    _add_string_column(parameter_table, "roi", names)
    _add_string_column(parameter_table, "status", [roi.fit.status for roi in rois])
    _add_string_column(parameter_table, "model", [roi.fit.model for roi in rois])
    for parameter in analysis.parameter_names:
        _add_double_column(parameter_table, parameter, [_nan_for_none(r.parameters.get(parameter)) for r in rois],
                           PARAMETER_UNITS.get(parameter, ""), parameter)
    for parameter in analysis.parameter_names:
        _add_double_column(parameter_table, f"rel_{parameter}",
                           [_nan_for_none(r.relative.get(parameter)) for r in rois], "",
                           f"{parameter} relative to the reference ROI")
    _add_int_column(parameter_table, "pixels", [roi.pixels for roi in rois], "ROI size in pixels")
    _add_string_column(parameter_table, "reason", [roi.fit.reason or "" for roi in rois])
    parameter_table.SetUseFirstColumnAsRowHeader(True)

    from .outputs import json_text

    for table in (tic_table, parameter_table):
        for key, value in provenance.items():
            table.SetAttribute(key, value)
    parameter_table.SetAttribute("DCEUS.Results", json_text(analysis.results()))

    chart = _add_new_node(scene, "vtkMRMLPlotChartNode", f"{name_prefix}TIC chart")
    chart.SetTitle(f"{name_prefix}Time-intensity curves")
    chart.SetXAxisTitle(TIC_X_AXIS_TITLE)
    chart.SetYAxisTitle(TIC_Y_AXIS_TITLE)
    chart.SetLegendVisibility(True)
    measured, fitted = {}, {}
    for index, name in enumerate(names):
        colour = _segment_colour(segmentation_node, name) or ROI_COLOURS[index % len(ROI_COLOURS)]
        series = _add_new_node(scene, "vtkMRMLPlotSeriesNode", f"{name_prefix}{name} measured")
        _configure_series(series, tic_table, f"{name}_measured", colour, markers=True)
        measured[name] = series
        if analysis.rois[name].fit.ok:
            series = _add_new_node(scene, "vtkMRMLPlotSeriesNode", f"{name_prefix}{name} fitted")
            _configure_series(series, tic_table, f"{name}_fitted", colour, markers=False)
            fitted[name] = series
    for series in [*measured.values(), *fitted.values()]:
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    for node in (chart, *measured.values(), *fitted.values()):
        for key, value in provenance.items():
            node.SetAttribute(key, value)
    return ResultNodes(tic_table, parameter_table, chart, measured, fitted)


def _provenance_attributes(analysis: "Analysis") -> dict[str, str]:
    return {"DCEUS.Source": analysis.clip.source, "DCEUS.SoftwareName": SOFTWARE_NAME,
            "DCEUS.SoftwareVersion": __version__, "DCEUS.Reference": analysis.options.reference or ""}


def _nan_for_none(value) -> float:
    if value is None:
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


def _add_double_column(table, name: str, values, unit: str, description: str) -> None:
    from vtkmodules.vtkCommonCore import vtkDoubleArray

    array = vtkDoubleArray()
    array.SetName(name)
    for value in np.asarray(values, dtype=np.float64):
        array.InsertNextValue(float(value))
    table.AddColumn(array)
    table.SetColumnType(name, array.GetDataType())
    if unit:
        table.SetColumnUnitLabel(name, unit)
    table.SetColumnDescription(name, description)


def _add_int_column(table, name: str, values, description: str) -> None:
    from vtkmodules.vtkCommonCore import vtkIntArray

    array = vtkIntArray()
    array.SetName(name)
    for value in values:
        array.InsertNextValue(int(value))
    table.AddColumn(array)
    table.SetColumnDescription(name, description)


def _add_string_column(table, name: str, values: Sequence[str]) -> None:
    from vtkmodules.vtkCommonCore import vtkStringArray

    array = vtkStringArray()
    array.SetName(name)
    for value in values:
        array.InsertNextValue(str(value))
    table.AddColumn(array)


def _segment_colour(segmentation_node, name: str) -> tuple[float, float, float] | None:
    if segmentation_node is None:
        return None
    segmentation = segmentation_node.GetSegmentation()
    segment_id = segmentation.GetSegmentIdBySegmentName(name)
    segment = segmentation.GetSegment(segment_id) if segment_id else None
    return tuple(segment.GetColor()) if segment is not None else None


def _configure_series(series, table, column: str, colour, *, markers: bool) -> None:
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetXColumnName("time_s")
    series.SetYColumnName(column)
    # Scatter: x from the time column (frame times may be irregular), points joined or not.
    series.SetPlotType(series.PlotTypeScatter)
    if markers:
        series.SetMarkerStyle(series.MarkerStyleCircle)
        series.SetMarkerSize(5)
        series.SetLineStyle(series.LineStyleNone)
    else:
        series.SetMarkerStyle(series.MarkerStyleNone)
        series.SetLineStyle(series.LineStyleSolid)
        series.SetLineWidth(2)
    series.SetColor(*map(float, colour))


# ----------------------------------------------------------------------------------------------
# Parametric maps

MAP_STATUS = "status"
# Slicer's own perceptual colour tables (the Colors module of the application; not in a headless
# scene) by matplotlib colour map name: used when the scene has them.
_SLICER_COLOUR_TABLES = {"magma": "Magma", "viridis": "Viridis", "cividis": "Cividis", "inferno": "Inferno",
                         "plasma": "Plasma"}
# Status colours (RGB 0..255) by status code, as in the status PNG preview of :mod:`maps`.
_STATUS_COLOURS = {0: (44, 160, 44), 1: (31, 31, 31), 2: (255, 127, 14), 3: (127, 127, 127), 4: (214, 39, 40)}


def map_ijk_to_ras(maps: "ParametricMaps", frame_spacing_mm: tuple[float, float] | None = None) -> np.ndarray:
    """4 x 4 IJK-to-RAS matrix (mm) of the map grid of ``maps`` in the clip's frame geometry.

    ``frame_spacing_mm`` is the clip's ``(dy, dx)`` (:attr:`Clip.frame_spacing_mm`); by default the map's
    own spacing divided by its binning (1 mm without a calibration). Map pixel (row r, column c)
    is centred on full-frame pixel ``origin_px + binning (r, c)``, at RAS
    ``(-(origin col + binning c) dx, -(origin row + binning r) dy, 0)``.
    """
    if frame_spacing_mm is None:
        frame_spacing_mm = ((maps.spacing_mm[0] / maps.binning, maps.spacing_mm[1] / maps.binning)
                            if maps.spacing_mm else (1.0, 1.0))
    dy, dx = map(float, frame_spacing_mm)
    origin_row, origin_col = map(float, maps.origin_px)
    binning = float(maps.binning)
    return np.array([[-dx * binning, 0.0, 0.0, -origin_col * dx],
                     [0.0, -dy * binning, 0.0, -origin_row * dy],
                     [0.0, 0.0, 1.0, 0.0],
                     [0.0, 0.0, 0.0, 1.0]])


def add_parameter_maps(scene: "slicer.vtkMRMLScene", maps: "ParametricMaps", name_prefix: str = "",
                       parameters: Sequence[str] | None = None, *,
                       frame_spacing_mm: tuple[float, float] | None = None) -> dict[str, Any]:
    """One scalar volume per map of ``maps`` (named ``"<prefix><PARAM> map"``), by parameter name.

    ``parameters`` picks maps by name (default: every map, then ``"status"``). Each volume lies on
    the map grid in the frame geometry (:func:`map_ijk_to_ras`; give the clip's
    ``frame_spacing_mm`` so that the maps sit exactly on the clip's volumes whatever the panel's
    calibration), so it overlays the contrast panel volume. Parameter maps are float32 with NaN
    where not fitted; their display node shows them through a perceptual colour table (magma for
    amplitudes, viridis for times, cividis for QOF, :data:`maps.PREVIEW_COLOUR_MAPS`; Slicer's own
    table of that name when the scene has it, else a table made here, one per colour map and
    scene; reversed maps invert the display range), windowed on the 2nd to 98th percentile of the
    finite values, nearest-neighbour (one map pixel, one fit), and thresholded on the finite range
    so that NaN voxels are transparent as a foreground layer. ``"status"`` is a label map volume
    of the status codes (uint8) with a colour table naming them (:data:`maps.STATUS_NAMES`).
    """
    from .maps import PREVIEW_COLOUR_MAPS, STATUS_NAMES

    names = [*maps.values, MAP_STATUS] if parameters is None else list(parameters)
    unknown = [name for name in names if name != MAP_STATUS and name not in maps.values]
    if unknown:
        raise ValueError(f"no map named {unknown}: the maps are {[*maps.values, MAP_STATUS]}")
    ijk_to_ras = map_ijk_to_ras(maps, frame_spacing_mm)
    common = {"DCEUS.Model": str(maps.model), "DCEUS.Binning": str(int(maps.binning))}
    nodes: dict[str, Any] = {}
    for name in names:
        if name == MAP_STATUS:
            table = _status_colour_table(scene, STATUS_NAMES)
            volume = _add_map_volume(scene, f"{name_prefix}status map", np.asarray(maps.status, dtype=np.uint8),
                                     ijk_to_ras, label=True)
            volume.GetDisplayNode().SetAndObserveColorNodeID(table.GetID())
            attributes = {"DCEUS.Parameter": MAP_STATUS, "DCEUS.Unit": "", "DCEUS.ColourMap": MAP_STATUS,
                          "DCEUS.StatusCodes": json.dumps({str(code): text for code, text in STATUS_NAMES.items()})}
        else:
            values = np.asarray(maps.values[name], dtype=np.float32)
            colour_map = PREVIEW_COLOUR_MAPS.get(name, "viridis")
            volume = _add_map_volume(scene, f"{name_prefix}{name} map", values, ijk_to_ras, label=False)
            display = volume.GetDisplayNode()
            # a Slicer whose display nodes cannot invert the range: reversed maps get a table of their own
            can_invert = hasattr(display, "SetInvertDisplayScalarRange")
            _show_map(display, values, *_map_colour_node(scene, colour_map, can_invert))
            attributes = {"DCEUS.Parameter": name, "DCEUS.Unit": PARAMETER_UNITS.get(name, ""),
                          "DCEUS.ColourMap": colour_map}
        for key, value in {**attributes, **common}.items():
            volume.SetAttribute(key, value)
        nodes[name] = volume
    return nodes


def _add_map_volume(scene, name: str, values: np.ndarray, ijk_to_ras: np.ndarray, *, label: bool):
    """A (label map) volume of a 2D map with its display node, the display set up before the data
    arrives (no automatic window/level over NaN)."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData

    kind = "LabelMapVolume" if label else "ScalarVolume"
    volume = _add_new_node(scene, f"vtkMRML{kind}Node", name)
    display = _add_new_node(scene, f"vtkMRML{kind}DisplayNode", f"{name} display")
    if not label:
        display.AutoWindowLevelOff()
        display.SetInterpolate(0)
    volume.SetAndObserveDisplayNodeID(display.GetID())
    volume.SetIJKToRASMatrix(_vtk_matrix(ijk_to_ras))
    rows, columns = values.shape
    image = vtkImageData()
    image.SetDimensions(columns, rows, 1)  # i = column (fastest in a C-ordered (rows, columns) array)
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(values).reshape(-1), deep=True,
                                         array_type=numpy_support.get_vtk_array_type(values.dtype))
    image.GetPointData().SetScalars(scalars)
    volume.SetAndObserveImageData(image)
    return volume


def _show_map(display, values: np.ndarray, colour_node, inverted: bool) -> None:
    finite = values[np.isfinite(values)].astype(np.float64)
    if finite.size:
        low, high = (float(v) for v in np.percentile(finite, [2.0, 98.0]))
        lowest, highest = float(finite.min()), float(finite.max())
    else:
        low = high = lowest = highest = 0.0
    if not high > low:
        pad = 0.5 * (abs(low) or 1.0)
        low, high = low - pad, high + pad
    display.SetAndObserveColorNodeID(colour_node.GetID())
    if inverted:
        display.SetInvertDisplayScalarRange(1)
    display.SetWindowLevelMinMax(low, high)
    # The threshold keeps every finite value (with room for the 6 significant digits the scene
    # file stores) and drops NaN: not-fitted pixels are transparent over the clip.
    margin = 1e-5 * max(abs(lowest), abs(highest), highest - lowest, 1e-30)
    display.SetThreshold(lowest - margin, highest + margin)
    display.SetApplyThreshold(1)


def _map_colour_node(scene, colour_map: str, can_invert: bool = True):
    """(colour node, inverted) for a matplotlib colour map name (``*_r``: the base map, inverted,
    when the display node ``can_invert``)."""
    inverted = colour_map.endswith("_r") and can_invert
    base = colour_map[:-2] if inverted else colour_map
    slicer_name = _SLICER_COLOUR_TABLES.get(base)
    ours = None
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLColorNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLColorNode")
        if node.GetAttribute("DCEUS.ColourMap") == base:
            ours = ours or node
        elif slicer_name and node.GetName() == slicer_name and node.GetLookupTable() is not None:
            return node, inverted  # the application's own table
    if ours is not None:
        return ours, inverted
    from .maps import _colour_table

    colours = _colour_table(base).astype(np.float64) / 255.0  # matplotlib's (a grey ramp without it)
    table = _add_new_node(scene, "vtkMRMLColorTableNode", f"DCEUS {base}")
    table.SetTypeToUser()
    table.SetNumberOfColors(len(colours))
    for index, (red, green, blue) in enumerate(colours):
        table.SetColor(index, f"{index}", float(red), float(green), float(blue), 1.0)
    table.SetAttribute("DCEUS.ColourMap", base)
    return table, inverted


def _status_colour_table(scene, status_names: Mapping[int, str]):
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLColorTableNode")
        if node.GetAttribute("DCEUS.ColourMap") == MAP_STATUS:
            return node
    table = _add_new_node(scene, "vtkMRMLColorTableNode", "DCEUS map status")
    table.SetTypeToUser()
    table.SetNumberOfColors(max(status_names) + 1)
    for code in range(max(status_names) + 1):
        red, green, blue = (c / 255.0 for c in _STATUS_COLOURS.get(code, (127, 127, 127)))
        table.SetColor(code, status_names.get(code, f"{code}"), red, green, blue, 1.0)
    table.SetAttribute("DCEUS.ColourMap", MAP_STATUS)
    return table


# ----------------------------------------------------------------------------------------------
# Scene bundle


def write_scene_bundle(analysis: "Analysis", path: str, *, rois: Sequence[RoiMask] | None = None,
                       cache_dir: str | None = None) -> str:
    """Write an analysis as a Slicer scene bundle (``.mrb``) at ``path``; returns its absolute path.

    A fresh headless scene gets the clip's sequences and browser, the ROIs (full-frame masks, as
    given to the analysis; none when ``rois`` is None) as a segmentation referencing the contrast
    volume, the TIC and parameter tables and the chart, and, when the analysis has maps, the map
    volumes with their colour tables (:func:`add_parameter_maps`). The bundle is written into a
    temporary folder next to ``path`` (same file system) and moved into place with
    :func:`os.replace`, so ``path`` is either the old file or the complete new one; nothing else is
    left behind.
    ``cache_dir`` is the scratch folder Slicer packs the bundle in (default: a temporary folder).
    """
    import slicer

    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if not path.lower().endswith(".mrb"):
        raise InputError("a Slicer scene bundle must be named *.mrb", path)
    if not os.path.isdir(folder):
        raise InputError("the scene's folder does not exist", folder)
    with create_headless_application(cache_dir) as app:
        scene = app.scene
        clip_nodes = add_clip_sequences(scene, analysis.clip, analysis.layout)
        segmentation_node = None
        if rois:
            segmentation_node = add_roi_segmentation(scene, rois, analysis.clip, clip_nodes.contrast_volume)
        add_analysis_results(scene, analysis, segmentation_node=segmentation_node)
        if analysis.maps is not None:
            map_nodes = add_parameter_maps(scene, analysis.maps, frame_spacing_mm=analysis.clip.frame_spacing_mm)
            for node in map_nodes.values():
                for key, value in _provenance_attributes(analysis).items():
                    node.SetAttribute(key, value)
        try:
            staging = tempfile.mkdtemp(prefix=".dceus-scene-", dir=folder)
        except OSError as error:
            raise InputError(f"the scene's folder is not writable ({error.strerror or error})", folder) from None
        try:
            # The bundle's inner folder and scene file take the name of the file written: write
            # under the final name inside the staging folder.
            staged = os.path.join(staging, os.path.basename(path))
            # As Slicer's scene writer does: the scene's URL and root folder are the bundle's.
            scene.SetURL(staged)
            scene.SetRootDirectory(staging)
            messages = slicer.vtkMRMLMessageCollection()
            written = scene.WriteToMRB(staged, None, messages)
            errors = messages.GetNumberOfMessagesOfType(_vtk_error_event())
            if not written or errors or not os.path.isfile(staged):
                details = " ".join(messages.GetAllMessagesAsString().split()) or "no details"
                raise InputError(f"Slicer could not write the scene bundle ({details})", path)
            os.replace(staged, path)
        except OSError as error:
            raise InputError(f"cannot write the scene bundle ({error.strerror or error})", path) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return path


def _vtk_error_event() -> int:
    from vtkmodules.vtkCommonCore import vtkCommand

    return vtkCommand.ErrorEvent
