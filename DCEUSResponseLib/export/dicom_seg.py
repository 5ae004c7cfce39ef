"""The ROIs as a DICOM Segmentation (highdicom) of the clip's reference frame.

One binary segment per ROI, labelled with the ROI's name, on the full frame's pixel grid (the
CEUS plane geometry of :mod:`dicom_common`, so Slicer puts it where the module shows the clip),
derived from the reference frame of the source clip (spatial locations preserved). Segment
properties by role (:data:`catalogue.SEGMENT_ROLE_CODES`): lesion, reference parenchyma,
necrosis; each segment carries the lesion's tracking identifier, the same as in the SR.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Mapping

import numpy as np

from DCEUSResponseLib.catalogue import ANATOMIC_REGION, SEGMENT_ROLE_CODES
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.export.dicom_common import (
    PlaneGeometry,
    add_private_coding_scheme,
    coded,
    equipment,
    geometric_source,
    reference_frame_in_derivations,
)

if TYPE_CHECKING:  # for annotations only: pydicom / highdicom are imported inside functions
    from pydicom import Dataset

SEGMENTATION_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
ROLES = tuple(SEGMENT_ROLE_CODES)
# Display colours (RGB 0..255) per role.
ROLE_COLOURS = {"lesion": (230, 76, 76), "reference": (76, 204, 76), "necrosis": (128, 80, 40)}
_NECROSIS_NAME = re.compile(r"necro", re.IGNORECASE)


def roi_role(name: str, reference: str | None) -> str:
    """``"reference"`` for the reference ROI, ``"necrosis"`` for a name containing "necro", else ``"lesion"``."""
    if reference is not None and name == reference:
        return "reference"
    return "necrosis" if _NECROSIS_NAME.search(name) else "lesion"


def build_roi_segmentation(masks: Mapping[str, np.ndarray], roles: Mapping[str, str],
                           tracking_uids: Mapping[str, str], source: "Dataset", frame: PlaneGeometry, *,
                           source_frame: int | None, series_instance_uid: str, sop_instance_uid: str,
                           instance_number: int = 1, series_number: int = 902) -> "Dataset":
    """A BINARY SEG of the full-frame ``masks`` (name -> boolean rows x columns), segment k = k-th ROI.

    ``roles`` gives each ROI's role (see :func:`roi_role`); ``tracking_uids`` each ROI's Tracking
    UID; ``frame`` the full frame's geometry; ``source`` the header of the clip's instance holding
    the frame the ROIs were drawn on, ``source_frame`` its frame number there (1-based; None for a
    single-frame instance). Raises :class:`InputError` for masks of different shapes, empty masks or unknown roles.
    """
    import highdicom as hd

    names = list(masks)
    if not names:
        raise InputError("no ROI to write as a segmentation", getattr(source, "filename", None))
    shapes = {np.shape(masks[n]) for n in names}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise InputError(f"ROI masks must be 2D and of one size, got {sorted(shapes)}", getattr(source, "filename", None))
    rows, columns = next(iter(shapes))
    stacked = np.zeros((1, rows, columns, len(names)), dtype=np.uint8)
    descriptions = []
    for index, name in enumerate(names):
        mask = np.asarray(masks[name]).astype(bool)
        if not mask.any():
            raise InputError(f"ROI {name!r} is empty", getattr(source, "filename", None))
        role = roles.get(name, "lesion")
        if role not in SEGMENT_ROLE_CODES:
            raise InputError(f"ROI {name!r} has unknown role {role!r} (expected one of {', '.join(ROLES)})",
                             getattr(source, "filename", None))
        stacked[0, :, :, index] = mask
        category, kind = SEGMENT_ROLE_CODES[role]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=index + 1, segment_label=name, segmented_property_category=coded(category),
            segmented_property_type=coded(kind), algorithm_type="MANUAL", tracking_uid=tracking_uids[name],
            tracking_id=name, anatomic_regions=[coded(ANATOMIC_REGION)] if role != "reference" else None,
            display_color=hd.color.CIELabColor.from_rgb(*ROLE_COLOURS[role])))
    geometric = geometric_source(source, frame, rows, columns)
    seg = hd.seg.Segmentation(
        source_images=[geometric], pixel_array=stacked, segmentation_type="BINARY",
        segment_descriptions=descriptions, series_instance_uid=series_instance_uid, series_number=series_number,
        sop_instance_uid=sop_instance_uid, instance_number=instance_number, **equipment(),
        content_label="ROIS", content_description="CEUS regions of interest on the reference frame",
        omit_empty_frames=False)
    seg.SeriesDescription = "CEUS ROIs"
    reference_frame_in_derivations(seg, source, source_frame)
    add_private_coding_scheme(seg)
    return seg
