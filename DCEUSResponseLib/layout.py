"""Where the contrast image is on the screen: single display, or dual (contrast + B-mode) display.

CEUS scanners usually show the contrast-specific image next to a low-MI B-mode reference image
of the same plane, both in one frame. Quantification must measure the contrast panel; the B-mode
panel is useful for drawing regions (mirrored to the contrast panel by :func:`mirror_offset`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .clip import Clip, UltrasoundRegion
from .errors import InputError

# Two panels of a dual display are copies of one scan geometry; allow for rounding by the scanner.
SAME_SIZE_TOLERANCE_PX = 4
# The contrast panel must change over the clip at least this many times more than the B-mode
# panel for the choice to count as clear (wash-in changes mean brightness by far more than this).
CLEAR_ACTIVITY_RATIO = 2.0
# Moving-average length (frames) applied to the per-frame panel means before measuring their
# spread, so speckle noise does not count as enhancement.
SMOOTHING_FRAMES = 5


@dataclass
class DisplayLayout:
    """The panels of a clip: ``display`` is ``"single"`` or ``"dual"``.

    ``contrast`` is the panel to quantify; ``bmode`` the B-mode reference panel of a dual display
    (``None`` for a single display); ``warnings`` explain uncertain choices.
    """

    display: str
    contrast: UltrasoundRegion
    bmode: UltrasoundRegion | None = None
    warnings: list[str] = field(default_factory=list)


def find_layout(clip: Clip) -> DisplayLayout:
    """Find the contrast panel (and the B-mode panel of a dual display) from the clip's regions.

    * no 2D tissue region: single display, the whole frame, spacing from ``clip.pixel_spacing_mm``;
    * one region: single display, that region;
    * two non-overlapping regions of the same size (within a few pixels): dual display; the
      contrast panel is the one whose smoothed per-frame mean brightness varies far more over the
      clip (temporal standard deviation), a ratio below 2 is reported as uncertain;
    * more regions: the two largest are used as above, with a warning.
    """
    tissue = [r for r in clip.regions if r.data_type == 1 and r.spatial_format == 1]
    notes: list[str] = []
    if not tissue:
        whole = UltrasoundRegion(0, 0, clip.columns - 1, clip.rows - 1, spacing_mm=clip.pixel_spacing_mm)
        return DisplayLayout("single", whole, None, notes)
    if len(tissue) == 1:
        return DisplayLayout("single", tissue[0], None, notes)
    if len(tissue) > 2:
        notes.append(f"{len(tissue)} tissue regions in the image; using the two largest as the display panels")
    first, second = sorted(tissue, key=lambda r: r.rows * r.columns, reverse=True)[:2]
    if not _is_panel_pair(first, second):
        notes.append(
            "the two largest tissue regions overlap or differ in size, so this is not a dual display; "
            "using the largest region"
        )
        return DisplayLayout("single", first, None, notes)

    # Left/top panel first so ties resolve the same way every time.
    panels = sorted((first, second), key=lambda r: (r.x0, r.y0))
    activity = [_brightness_activity(clip, panel) for panel in panels]
    contrast_index = int(np.argmax(activity))
    low, high = min(activity), max(activity)
    if high <= 0 or (low > 0 and high / low < CLEAR_ACTIVITY_RATIO):
        ratio = "no change in either panel" if high <= 0 else f"ratio {high / low:.2f}"
        notes.append(
            f"dual display: the panels change over the clip by similar amounts ({ratio}); "
            f"assuming the {_side(panels, contrast_index)} panel is the contrast image"
        )
    return DisplayLayout("dual", panels[contrast_index], panels[1 - contrast_index], notes)


def mirror_offset(layout: DisplayLayout) -> tuple[int, int]:
    """``(drow, dcol)`` in pixels to add to a B-mode-panel position to land on the contrast panel."""
    if layout.bmode is None:
        raise InputError("the clip has a single display: there is no B-mode panel to mirror from")
    return (layout.contrast.y0 - layout.bmode.y0, layout.contrast.x0 - layout.bmode.x0)


def _is_panel_pair(a: UltrasoundRegion, b: UltrasoundRegion) -> bool:
    same_size = (
        abs(a.rows - b.rows) <= SAME_SIZE_TOLERANCE_PX and abs(a.columns - b.columns) <= SAME_SIZE_TOLERANCE_PX
    )
    apart = a.x1 < b.x0 or b.x1 < a.x0 or a.y1 < b.y0 or b.y1 < a.y0
    return same_size and apart


def _brightness_activity(clip: Clip, panel: UltrasoundRegion) -> float:
    """Temporal standard deviation of the smoothed per-frame mean display brightness (0..255 scale)."""
    rows, columns = panel.slices
    grey_of_index = clip.palette.mean(axis=1) if clip.palette is not None else None
    means = np.empty(clip.n_frames)
    for k in range(clip.n_frames):
        patch = clip.frames[k, rows, columns]
        if grey_of_index is not None:
            patch = grey_of_index[np.minimum(patch, grey_of_index.size - 1)]
        means[k] = float(np.mean(patch))  # colour frames: mean over pixels and channels
    width = min(SMOOTHING_FRAMES, clip.n_frames)
    smoothed = np.convolve(means, np.ones(width) / width, mode="valid")
    return float(np.std(smoothed))


def _side(panels: list[UltrasoundRegion], index: int) -> str:
    a, b = panels
    horizontal = a.x1 < b.x0 or b.x1 < a.x0
    if horizontal:
        return ("left", "right")[index]
    return ("top", "bottom")[index]
