"""Clips as sequences: the panels of a clip as sequence nodes, a browser and proxy volumes, and back."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from DCEUSResponseLib.ceus.layout import DisplayLayout
from DCEUSResponseLib.clip import Clip, UltrasoundRegion
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.scene.nodes import (
    DEFAULT_INDEX_TOLERANCE_S,
    FRAME_ATTRIBUTES,
    PANEL_BMODE,
    PANEL_CONTRAST,
    TIME_INDEX_NAME,
    TIME_INDEX_UNIT,
    add_new_node,
    volume_ijk_to_ras,
    vtk_matrix,
)
from DCEUSResponseLib.spatial.frame import FrameGeometry

if TYPE_CHECKING:  # for annotations only: ``slicer`` is imported inside functions
    import slicer



@dataclass
class ClipNodes:
    """The nodes :func:`add_clip_sequences` adds: the browser, its sequences and their proxy volumes."""

    browser: Any  # vtkMRMLSequenceBrowserNode
    contrast_sequence: Any  # vtkMRMLSequenceNode
    bmode_sequence: Any | None
    contrast_volume: Any  # proxy vtkMRMLScalarVolumeNode / vtkMRMLVectorVolumeNode
    bmode_volume: Any | None


def add_clip_sequences(scene: "slicer.vtkMRMLScene", clip: Clip, layout: DisplayLayout,
                       name: str = "CEUS", selected_frame: int = 0) -> ClipNodes:
    """Add the clip's panels as volume sequences (index "time" in s) with one browser synchronising them,
    showing frame ``selected_frame`` (a scene of an analysis opens on its reference frame, where the
    ROIs were drawn and onto which the maps are motion-compensated).

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
        sequence = add_new_node(scene, "vtkMRMLSequenceNode", f"{name} {label}")
        sequence.SetIndexName(TIME_INDEX_NAME)
        sequence.SetIndexUnit(TIME_INDEX_UNIT)
        sequence.SetIndexType(sequence.NumericIndex)
        if times.size > 1:
            shortest = float(np.min(np.diff(times)))
            sequence.SetNumericIndexValueTolerance(min(DEFAULT_INDEX_TOLERANCE_S, shortest / 10.0))
        attributes = {**common, "DCEUS.Panel": panel, "DCEUS.Region": json.dumps(_region_json(region))}
        for key, value in attributes.items():
            sequence.SetAttribute(key, value)
        # Proxies take the attributes of the frame they show (Slicer copies them on every frame
        # change) and volume sequence files keep them per frame: give frames the short ones only.
        frame_attributes = {key: value for key, value in attributes.items() if key in FRAME_ATTRIBUTES
                            or key.startswith("DICOM.")}
        _fill_sequence(sequence, clip, region, spacing, index_values, frame_attributes)
        sequences[panel] = sequence

    browser = add_new_node(scene, "vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetAttribute("DCEUS.Source", clip.source)
    browser.SetAttribute("DCEUS.Display", layout.display)
    if times.size > 1 and times[-1] > times[0]:
        browser.SetPlaybackRateFps(float((times.size - 1) / (times[-1] - times[0])))
    contrast_sequence = sequences[PANEL_CONTRAST]
    browser.SetAndObserveMasterSequenceNodeID(contrast_sequence.GetID())
    bmode_sequence = sequences.get(PANEL_BMODE)
    if bmode_sequence is not None:
        browser.AddSynchronizedSequenceNode(bmode_sequence)
    if not 0 <= selected_frame < clip.n_frames:
        raise InputError(f"frame {selected_frame} is outside the clip's frames 0..{clip.n_frames - 1}", clip.source)
    browser.SetSelectedItemNumber(int(selected_frame))

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
    frame_volume.SetIJKToRASMatrix(vtk_matrix(FrameGeometry(spacing).panel_ijk_to_ras(region.x0, region.y0)))
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
    table = add_new_node(scene, "vtkMRMLColorTableNode", f"{name} palette")
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
    ijk_to_ras = volume_ijk_to_ras(first)
    spacing = (abs(float(ijk_to_ras[1, 1])) or 1.0, abs(float(ijk_to_ras[0, 0])) or 1.0)
    stored_spacing = json.loads(attributes.get("DCEUS.FrameSpacingMm", "null") or "null")
    if stored_spacing and np.allclose(stored_spacing, spacing, rtol=1e-9):
        spacing = (float(stored_spacing[0]), float(stored_spacing[1]))  # decimal round-off of saving
    x0, y0 = FrameGeometry(spacing).panel_origin_px(ijk_to_ras, f"volume sequence {source!r}", source)

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
        if not np.allclose(volume_ijk_to_ras(volume), ijk_to_ras, rtol=1e-9, atol=1e-9):
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


