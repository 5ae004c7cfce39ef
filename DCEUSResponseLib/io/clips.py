"""Reading a clip from whatever the user has: a DICOM file or folder, or a video export."""
from __future__ import annotations

import numpy as np

from DCEUSResponseLib.clip import Clip
from DCEUSResponseLib.io.dicom_us import read_clip
from DCEUSResponseLib.io.video import is_video_file, read_video_clip


def read_any_clip(path: str, frame_rate_hz: float | None = None,
                  pixel_spacing_mm: float | tuple[float, float] | None = None) -> Clip:
    """A DICOM clip (file or folder) or a video export (by its extension).

    ``frame_rate_hz`` times clips that carry no frame timing; ``pixel_spacing_mm`` (one value or
    (row, column) mm) calibrates clips without a calibration, and is ignored with a warning on a
    clip that has one.
    """
    if is_video_file(path):
        return read_video_clip(path, frame_rate_hz=frame_rate_hz, pixel_spacing_mm=pixel_spacing_mm)
    clip = read_clip(path, frame_rate_hz=frame_rate_hz)
    if pixel_spacing_mm is not None:
        if any(region.spacing_mm for region in clip.regions) or clip.pixel_spacing_mm:
            clip.warnings.append("--pixel-spacing ignored: the file carries its own calibration")
        else:
            spacing = (pixel_spacing_mm, pixel_spacing_mm) if np.isscalar(pixel_spacing_mm) else pixel_spacing_mm
            clip.pixel_spacing_mm = (float(spacing[0]), float(spacing[1]))
    return clip
