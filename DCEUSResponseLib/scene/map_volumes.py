"""Parametric maps as scalar volumes with colour tables, placed on the clip's frame geometry."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from DCEUSResponseLib.catalogue import colour_map as preview_colour_map, unit
from DCEUSResponseLib.ceus.maps import ParametricMaps
from DCEUSResponseLib.ceus.pixel_fits import STATUS_NAMES
from DCEUSResponseLib.export.map_files import STATUS_COLOURS, sample_colour_map
from DCEUSResponseLib.kinetics.base import STATUS_FITTED, STATUS_OUTSIDE_IMAGE
from DCEUSResponseLib.scene.nodes import add_new_node, vtk_matrix
from DCEUSResponseLib.spatial.frame import FrameGeometry

if TYPE_CHECKING:  # for annotations only: ``slicer`` is imported inside functions
    import slicer


MAP_STATUS = "status"
#: Status codes the scene's status colour table leaves transparent (the PNG preview keeps their colours).
TRANSPARENT_STATUSES = (STATUS_FITTED, STATUS_OUTSIDE_IMAGE)
# Slicer's own perceptual colour tables (the Colors module of the application; not in a headless
# scene) by matplotlib colour map name: used when the scene has them.
_SLICER_COLOUR_TABLES = {"magma": "Magma", "viridis": "Viridis", "cividis": "Cividis", "inferno": "Inferno",
                         "plasma": "Plasma"}


def map_ijk_to_ras(maps: "ParametricMaps", frame_spacing_mm: tuple[float, float] | None = None) -> np.ndarray:
    """4 x 4 IJK-to-RAS matrix (mm) of the map grid of ``maps`` in the clip's frame geometry.

    ``frame_spacing_mm`` is the clip's ``(dy, dx)`` (:attr:`Clip.frame_spacing_mm`); by default the map's
    own spacing divided by its binning (1 mm without a calibration). Map pixel (row r, column c)
    is centred on full-frame pixel ``origin_px + binning (r, c)``, at RAS
    ``(-(origin col + binning c) dx, -(origin row + binning r) dy, 0)``.
    """
    geometry = FrameGeometry.of_map_grid(maps.spacing_mm, maps.binning) if frame_spacing_mm is None \
        else FrameGeometry.from_spacing(frame_spacing_mm)
    return geometry.map_ijk_to_ras(tuple(map(float, maps.origin_px)), float(maps.binning))


def add_parameter_maps(scene: "slicer.vtkMRMLScene", maps: "ParametricMaps", name_prefix: str = "",
                       parameters: Sequence[str] | None = None, *,
                       frame_spacing_mm: tuple[float, float] | None = None) -> dict[str, Any]:
    """One scalar volume per map of ``maps`` (named ``"<prefix><PARAM> map"``), by parameter name.

    ``parameters`` picks maps by name (default: every map, then ``"status"``). Each volume lies on
    the map grid in the frame geometry (:func:`map_ijk_to_ras`; give the clip's
    ``frame_spacing_mm`` so that the maps sit exactly on the clip's volumes whatever the panel's
    calibration), so it overlays the contrast panel volume. Parameter maps are float32 with NaN
    where not fitted; their display node shows them through a perceptual colour table (magma for
    amplitudes, viridis for times, cividis for QOF: the catalogue's ``colour_map``; Slicer's own
    table of that name when the scene has it, else a table made here, one per colour map and
    scene; reversed maps invert the display range), windowed on the 2nd to 98th percentile of the
    finite values, nearest-neighbour (one map pixel, one fit), and thresholded on the finite range
    so that NaN voxels are transparent as a foreground layer. ``"status"`` is a label map volume
    of the status codes (uint8) with a colour table naming them (:data:`pixel_fits.STATUS_NAMES`).
    """
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
            colour_map = preview_colour_map(name)
            volume = _add_map_volume(scene, f"{name_prefix}{name} map", values, ijk_to_ras, label=False)
            display = volume.GetDisplayNode()
            # a Slicer whose display nodes cannot invert the range: reversed maps get a table of their own
            can_invert = hasattr(display, "SetInvertDisplayScalarRange")
            _show_map(display, values, *_map_colour_node(scene, colour_map, can_invert))
            attributes = {"DCEUS.Parameter": name, "DCEUS.Unit": unit(name),
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
    volume = add_new_node(scene, f"vtkMRML{kind}Node", name)
    display = add_new_node(scene, f"vtkMRML{kind}DisplayNode", f"{name} display")
    if not label:
        display.AutoWindowLevelOff()
        display.SetInterpolate(0)
    volume.SetAndObserveDisplayNodeID(display.GetID())
    volume.SetIJKToRASMatrix(vtk_matrix(ijk_to_ras))
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
    colours = sample_colour_map(base).astype(np.float64) / 255.0  # matplotlib's (a grey ramp without it)
    table = add_new_node(scene, "vtkMRMLColorTableNode", f"DCEUS {base}")
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
    table = add_new_node(scene, "vtkMRMLColorTableNode", "DCEUS map status")
    table.SetTypeToUser()
    table.SetNumberOfColors(max(status_names) + 1)
    for code in range(max(status_names) + 1):
        red, green, blue = (c / 255.0 for c in STATUS_COLOURS.get(code, (127, 127, 127)))
        # As a label layer the map shows where pixels were not fitted: fitted pixels (most of the
        # lesion) and those outside the image would hide the clip under opaque green and white.
        opacity = 0.0 if status_names.get(code) in TRANSPARENT_STATUSES else 1.0
        table.SetColor(code, status_names.get(code, f"{code}"), red, green, blue, opacity)
    table.SetAttribute("DCEUS.ColourMap", MAP_STATUS)
    return table


