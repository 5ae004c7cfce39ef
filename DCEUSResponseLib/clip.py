"""The in-memory form of a CEUS cine clip, independent of the file it came from."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from DCEUSResponseLib.spatial.frame import FrameGeometry

# Two panels of a dual display are copies of one scan geometry; allow for rounding by the scanner.
SAME_SIZE_TOLERANCE_PX = 4

#: Entries of :attr:`Clip.uids` that link results to their source images and to the patient's other
#: exams (images, segmentations, registrations): always written to the outputs.
LINKING_UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
#: Entries that identify the patient, or help to (dates, HIPAA Safe Harbor): written only when the
#: user asks for them (``--keep-identifiers``).
IDENTIFYING_KEYWORDS = ("PatientID", "PatientName", "PatientBirthDate", "StudyDate")


def shareable_uids(uids: dict[str, str], keep_identifiers: bool = False) -> dict[str, str]:
    """The entries of ``uids`` that outputs may carry: the linking UIDs, plus the identifying
    attributes when ``keep_identifiers``; nothing else (an unknown keyword is not written)."""
    allowed = LINKING_UID_KEYWORDS + (IDENTIFYING_KEYWORDS if keep_identifiers else ())
    return {keyword: value for keyword, value in uids.items() if keyword in allowed}


@dataclass(frozen=True)
class UltrasoundRegion:
    """One entry of the DICOM Sequence of Ultrasound Regions, in full-frame pixel coordinates.

    ``x0, y0, x1, y1`` are the inclusive pixel bounds (Region Location Min/Max X0/Y0/X1/Y1),
    already clipped to the image; ``spacing_mm`` is ``(row_spacing, column_spacing)`` in mm, or
    ``None`` when the region carries no physical calibration in cm.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    spacing_mm: tuple[float, float] | None = None
    data_type: int = 1  # Region Data Type: 1 = tissue (B-mode/contrast image)
    spatial_format: int = 1  # Region Spatial Format: 1 = 2D
    #: The box as the file gives it (x0, y0, x1, y1) when it reached outside the image and was clipped.
    declared_bounds: tuple[int, int, int, int] | None = field(default=None, compare=False)

    def is_beside(self, other: "UltrasoundRegion", size_tolerance_px: int = SAME_SIZE_TOLERANCE_PX) -> bool:
        """True when the two regions have the same size (within ``size_tolerance_px``) and do not
        overlap: the two panels of a dual display (contrast | B-mode), copies of one scan geometry."""
        same_size = (abs(self.rows - other.rows) <= size_tolerance_px
                     and abs(self.columns - other.columns) <= size_tolerance_px)
        apart = self.x1 < other.x0 or other.x1 < self.x0 or self.y1 < other.y0 or other.y1 < self.y0
        return same_size and apart

    @property
    def rows(self) -> int:
        return self.y1 - self.y0 + 1

    @property
    def columns(self) -> int:
        return self.x1 - self.x0 + 1

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(row slice, column slice)`` selecting the region out of a frame."""
        return slice(self.y0, self.y1 + 1), slice(self.x0, self.x1 + 1)


@dataclass
class Clip:
    """A cine clip as display pixels plus timing and geometry.

    ``frames`` holds display values exactly as stored: ``(N, rows, columns)`` for monochrome and
    palette clips (palette indices), ``(N, rows, columns, 3)`` RGB for colour clips (YBR already
    converted to RGB). ``frame_times_s`` are seconds on the clip clock, first frame at 0.
    """

    source: str
    frames: np.ndarray
    frame_times_s: np.ndarray
    photometric: str = "MONOCHROME2"
    bits_stored: int = 8
    palette: np.ndarray | None = None  # (K, 3) display colours (0..255) for PALETTE COLOR
    pixel_spacing_mm: tuple[float, float] | None = None  # (row, column) spacing in mm
    regions: list[UltrasoundRegion] = field(default_factory=list)
    timing_source: str = ""
    warnings: list[str] = field(default_factory=list)
    uids: dict[str, str] = field(default_factory=dict)
    #: The display values went through lossy compression (JPEG, a video codec): values at the top of
    #: the display scale may have been moved a few levels below it.
    lossy: bool = False

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def rows(self) -> int:
        return int(self.frames.shape[1])

    @property
    def columns(self) -> int:
        return int(self.frames.shape[2])

    @property
    def is_colour(self) -> bool:
        return self.frames.ndim == 4

    @property
    def frame_geometry(self) -> FrameGeometry:
        """Where the frame's pixels lie in mm (:mod:`DCEUSResponseLib.spatial.frame`): the first
        ultrasound region with a physical calibration, else ``pixel_spacing_mm``, else 1 mm."""
        return FrameGeometry.from_calibration(self.regions, self.pixel_spacing_mm)

    @property
    def frame_spacing_mm(self) -> tuple[float, float]:
        """``(dy, dx)`` mm of the clip's frame geometry, where pixel (r, c) lies at (c dx, r dy)."""
        return self.frame_geometry.spacing_mm


@dataclass
class RoiMask:
    """A named boolean mask of shape (rows, columns) on the full frame."""

    name: str
    mask: np.ndarray
    source: str

    @property
    def pixels(self) -> int:
        return int(np.count_nonzero(self.mask))
