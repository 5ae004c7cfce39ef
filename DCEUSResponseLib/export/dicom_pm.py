"""Parametric maps as DICOM Parametric Map objects (highdicom), one per parameter, float32.

Each object holds one map (rows x columns of the map grid) on the CEUS plane
(:mod:`dicom_common`: the clip's own Frame of Reference, pixel (r, c) of the full frame at
(c dx, r dy, 0) mm): Image Position (Patient) is the map's first pixel centre, Pixel Spacing the
map's pixel size (binning x the clip's spacing). It references the source clip's reference frame
and maps stored values to the parameter one to one (Real World Value Mapping: slope 1, intercept 0,
the parameter's code as the quantity, its unit in UCUM). Pixels that were not fitted stay NaN.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from DCEUSResponseLib.catalogue import dicom_quantity
from DCEUSResponseLib.ceus.maps import ParametricMaps
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.export.dicom_common import (
    PlaneGeometry,
    add_frame_anatomy,
    add_private_coding_scheme,
    coded,
    equipment,
    geometric_source,
    reference_frame_in_derivations,
    ucum,
)
from DCEUSResponseLib.spatial.frame import FrameGeometry

if TYPE_CHECKING:  # for annotations only: pydicom / highdicom are imported inside functions
    from pydicom import Dataset

PARAMETRIC_MAP_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.30"


@dataclass(frozen=True)
class MapImage:
    """One parameter map as the analysis wrote it: values (rows, columns) and their grid on the plane."""

    name: str
    values: np.ndarray  # float32, NaN where not fitted
    origin_mm: tuple[float, float]  # (x, y) of the first pixel's centre in the frame geometry
    spacing_mm: tuple[float, float]  # (row, column) pixel size


def read_map_nrrd(path: str) -> MapImage:
    """A ``maps/<PARAM>.nrrd`` of ``analyze --maps`` (contract: 2D, space directions and origin in mm)."""
    import nrrd

    try:
        values, header = nrrd.read(path, index_order="C")
    except (OSError, nrrd.NRRDError) as error:
        raise InputError(f"cannot read the map ({error})", path) from None
    if values.ndim != 2:
        raise InputError(f"the map has {values.ndim} dimensions, expected 2", path)
    directions = np.asarray(header.get("space directions"), dtype=float)
    origin = np.asarray(header.get("space origin", (0.0, 0.0)), dtype=float)
    if directions.shape != (2, 2) or origin.shape != (2,) or directions[0, 1] or directions[1, 0]:
        raise InputError("the map's space directions are not a 2D axis-aligned grid", path)
    col_mm, row_mm = float(directions[0, 0]), float(directions[1, 1])
    if not (col_mm > 0 and row_mm > 0):
        raise InputError(f"the map's pixel size {row_mm} x {col_mm} mm is not positive", path)
    name = header.get("DCEUS_parameter") or os.path.splitext(os.path.basename(path))[0]
    return MapImage(name, values.astype(np.float32, copy=False), (float(origin[0]), float(origin[1])),
                    (row_mm, col_mm))


def build_parametric_map(image: MapImage, source: "Dataset", frame: PlaneGeometry, frame_shape: tuple[int, int], *,
                         source_frame: int | None, series_instance_uid: str, sop_instance_uid: str,
                         instance_number: int, series_number: int = 901) -> "Dataset":
    """The Parametric Map of ``image``, derived from frame ``source_frame`` (1-based) of ``source``.

    ``source`` is the header of the clip's instance holding the reference frame
    (:meth:`dicom_common.SourceClip.frame`; ``source_frame`` None for a single-frame instance); its
    patient and study modules are copied. ``frame`` is the full frame's geometry
    (:func:`dicom_common.frame_geometry`) and ``frame_shape`` its (rows, columns). Raises :class:`InputError` for a parameter without a code or a map
    without any finite value.
    """
    import highdicom as hd

    try:
        code, unit = dicom_quantity(image.name)
    except InputError as error:
        raise InputError(f"cannot write the {image.name} map as DICOM ({error})",
                         getattr(source, "filename", None)) from None
    finite = image.values[np.isfinite(image.values)]
    if finite.size == 0:
        raise InputError(f"the {image.name} map has no fitted pixel", getattr(source, "filename", None))
    geometry = PlaneGeometry(frame.frame_of_reference_uid, image.origin_mm, image.spacing_mm)
    rows, columns = image.values.shape
    low, high = float(finite.min()), float(finite.max())
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=image.name[:16], lut_explanation=f"{code.meaning} ({image.name})", unit=ucum(unit),
        value_range=(low, high), slope=1.0, intercept=0.0, quantity_definition=coded(code))
    geometric = geometric_source(source, frame, *frame_shape)
    # Window over the finite range; LINEAR_EXACT because widths below 1 are common (a.u.).
    window = hd.VOILUTTransformation(window_center=(low + high) / 2.0,
                                     window_width=max(high - low, float(np.finfo(np.float32).eps)),
                                     voi_lut_function="LINEAR_EXACT")
    pm = hd.pm.ParametricMap(
        source_images=[geometric], pixel_array=np.ascontiguousarray(image.values, dtype=np.float32),
        series_instance_uid=series_instance_uid, series_number=series_number, sop_instance_uid=sop_instance_uid,
        instance_number=instance_number, **equipment(), contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping], voi_lut_transformations=[window], content_label=_content_label(image.name),
        content_description=f"CEUS parametric map {image.name} [{unit}]",
        pixel_measures=geometry.pixel_measures(), plane_orientation=geometry.plane_orientation(),
        plane_positions=[geometry.plane_position()], image_flavor="PERFUSION", derived_pixel_contrast="QUANTITY")
    pm.SeriesDescription = "CEUS parametric maps"
    add_frame_anatomy(pm)
    reference_frame_in_derivations(pm, source, source_frame)
    add_private_coding_scheme(pm)
    return pm


def map_images(maps: ParametricMaps) -> list[MapImage]:
    """The maps of an analysis in memory, on the grid ``maps/<PARAM>.nrrd`` are written on (the same
    frame geometry), so that they equal :func:`read_map_nrrd` of those files."""
    ijk_to_lps = FrameGeometry.of_map_grid(maps.spacing_mm, maps.binning).map_ijk_to_lps(maps.origin_px, maps.binning)
    origin_mm = (float(ijk_to_lps[0, 3]), float(ijk_to_lps[1, 3]))
    spacing_mm = (float(ijk_to_lps[1, 1]), float(ijk_to_lps[0, 0]))
    return [MapImage(name, np.asarray(values, dtype=np.float32), origin_mm, spacing_mm)
            for name, values in maps.values.items()]


def _content_label(name: str) -> str:
    # Content Label is a CS: upper-case letters, digits, space and underscore, at most 16 characters.
    return "".join(c if c.isalnum() else "_" for c in name.upper())[:16]
