"""Where the contrast image is on the screen: single display, or dual (contrast + B-mode) display.

CEUS scanners usually show the contrast-specific image next to a low-MI B-mode reference image
of the same plane, both in one frame. Quantification must measure the contrast panel; the B-mode
panel is useful for drawing regions (mirrored to the contrast panel by :func:`mirror_offset`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from DCEUSResponseLib.clip import Clip, UltrasoundRegion
from DCEUSResponseLib.errors import InputError

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
        tissue = panels_from_activity(clip)
        if not tissue:
            whole = UltrasoundRegion(0, 0, clip.columns - 1, clip.rows - 1, spacing_mm=clip.pixel_spacing_mm)
            notes.append("no ultrasound regions in the file and no image area found by pixel activity: "
                         "the whole frame is analysed")
            return DisplayLayout("single", whole, None, notes)
        boxes = ", ".join(f"columns {r.x0}-{r.x1} x rows {r.y0}-{r.y1}" for r in tissue)
        notes.append(f"no ultrasound regions in the file: image panels found from pixel activity ({boxes})")
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


#: A pixel belongs to the live image when its gray level varies over the clip by more than this
#: (standard deviation, gray levels): burned-in text, logos and borders are static (0), speckle is not.
ACTIVE_PIXEL_STD = 0.25
#: A column (row) belongs to a panel when this fraction of its pixels is live.
ACTIVE_LINE_FRACTION = 0.3
#: Panels narrower or lower than this many pixels are annotations that move (cursors, clocks).
MIN_PANEL_PX = 16
_ACTIVITY_SAMPLE_FRAMES = 48


def panels_from_activity(clip: Clip) -> list[UltrasoundRegion]:
    """Image panels of a clip without ultrasound regions (video exports): boxes of live pixels.

    The live image changes from frame to frame (speckle, contrast), while annotations and borders
    stay the same; columns and rows with enough live pixels delimit up to two side-by-side panels.
    Returns [] when nothing is found. Spacing comes from ``clip.pixel_spacing_mm``.
    """
    sample = np.linspace(0, clip.n_frames - 1, min(clip.n_frames, _ACTIVITY_SAMPLE_FRAMES)).round().astype(int)
    frames = clip.frames[sample].astype(np.float32)
    if frames.ndim == 4:
        frames = frames.mean(axis=-1)
    live = frames.std(axis=0) > ACTIVE_PIXEL_STD
    panels = []
    for start, stop in _runs(live.mean(axis=0) > ACTIVE_LINE_FRACTION):
        if stop - start < MIN_PANEL_PX:
            continue
        rows = _runs(live[:, start:stop].mean(axis=1) > ACTIVE_LINE_FRACTION)
        rows = [(a, b) for a, b in rows if b - a >= MIN_PANEL_PX]
        if rows:
            top, bottom = rows[0][0], rows[-1][1]
            panels.append(UltrasoundRegion(start, top, stop - 1, bottom - 1, spacing_mm=clip.pixel_spacing_mm))
    panels.sort(key=lambda r: r.rows * r.columns, reverse=True)
    return panels[:2]


def _runs(flags: np.ndarray, max_gap: int = 2) -> list[tuple[int, int]]:
    """[start, stop) runs of True, bridging gaps of up to ``max_gap`` False values."""
    runs: list[tuple[int, int]] = []
    for index in np.flatnonzero(flags):
        if runs and index - runs[-1][1] <= max_gap:
            runs[-1] = (runs[-1][0], index + 1)
        else:
            runs.append((int(index), int(index) + 1))
    return runs


def mirror_offset(layout: DisplayLayout) -> tuple[int, int]:
    """``(drow, dcol)`` in pixels to add to a B-mode-panel position to land on the contrast panel."""
    if layout.bmode is None:
        raise InputError("the clip has a single display: there is no B-mode panel to mirror from")
    return (layout.contrast.y0 - layout.bmode.y0, layout.contrast.x0 - layout.bmode.x0)


def _is_panel_pair(a: UltrasoundRegion, b: UltrasoundRegion) -> bool:
    return a.is_beside(b)


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
