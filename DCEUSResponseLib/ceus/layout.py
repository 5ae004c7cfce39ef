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
# A contrast panel chosen among irregular regions must change by at least this much (gray levels,
# temporal standard deviation of the smoothed mean): a bolus changes it by tens of levels.
MIN_CONTRAST_ACTIVITY = 1.0


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


def find_layout(clip: Clip, contrast_region: tuple[int, int, int, int] | None = None) -> DisplayLayout:
    """Find the contrast panel (and the B-mode panel of a dual display) from the clip's regions.

    * ``contrast_region`` (x0, y0, x1, y1 inclusive pixels, ``--contrast-region``) is taken as the
      contrast panel; a tissue region of the same size that does not overlap it is the B-mode panel;
    * regions that reach outside the image are checked against the live pixels (see
      :func:`_reconcile_with_pixels`);
    * no 2D tissue region: panels from pixel activity, else the whole frame;
    * one region: single display, that region;
    * two non-overlapping regions of the same size (within a few pixels): dual display; the
      contrast panel is the one whose smoothed per-frame mean brightness varies far more over the
      clip (temporal standard deviation), a ratio below 2 is reported as uncertain;
    * more regions: the two largest are used as above when they are such a pair, with a warning;
    * otherwise (overlapping or unequal regions): the region whose own pixels change
      at least twice as much as every other's is the contrast panel, with a warning; when the pixels
      do not decide, an InputError asks for ``--contrast-region``.
    """
    tissue = [r for r in clip.regions if r.data_type == 1 and r.spatial_format == 1]
    notes: list[str] = []
    if contrast_region is not None:
        return _given_layout(clip, tissue, contrast_region)
    tissue = _reconcile_with_pixels(clip, tissue, notes)
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
    largest = sorted(tissue, key=lambda r: r.rows * r.columns, reverse=True)
    if _is_panel_pair(largest[0], largest[1]):
        if len(tissue) > 2:
            notes.append(f"{len(tissue)} tissue regions in the image; using the two largest as the display panels")
        return _dual_layout(clip, largest[0], largest[1], notes)
    return _layout_from_enhancement(clip, largest, notes)


def _dual_layout(clip: Clip, first: UltrasoundRegion, second: UltrasoundRegion, notes: list[str]) -> DisplayLayout:
    # Left/top panel first so ties resolve the same way every time.
    panels = sorted((first, second), key=lambda r: (r.x0, r.y0))
    activity = [_brightness_activity(clip, panel) for panel in panels]
    contrast_index = int(np.argmax(activity))
    low, high = min(activity), max(activity)
    if high <= 0 or (low > 0 and high / low < CLEAR_ACTIVITY_RATIO):
        ratio = "no change in either panel" if high <= 0 else f"ratio {high / low:.2f}"
        notes.append(
            f"dual display: the panels change over the clip by similar amounts ({ratio}); "
            f"assuming the {_side(panels, contrast_index)} panel is the contrast image; if it is not, "
            "give the contrast panel with --contrast-region x0,y0,x1,y1"
        )
    return DisplayLayout("dual", panels[contrast_index], panels[1 - contrast_index], notes)


def _layout_from_enhancement(clip: Clip, regions: list[UltrasoundRegion], notes: list[str]) -> DisplayLayout:
    """The contrast panel among regions that are no clean dual-display pair, decided by the pixels.

    Each region's activity is measured on its own pixels (those in no other region; all of them when
    it lies inside another), so a box enclosing both panels does not borrow the contrast panel's change.
    """
    activity = [_brightness_activity(clip, region, _own_pixels(region, regions)) for region in regions]
    order = np.argsort(activity)[::-1]
    best, runner_up = activity[order[0]], activity[order[1]]
    boxes = "; ".join(f"x {r.x0}..{r.x1}, y {r.y0}..{r.y1}: {a:.2f}" for r, a in zip(regions, activity))
    if not (best >= MIN_CONTRAST_ACTIVITY and best >= CLEAR_ACTIVITY_RATIO * runner_up):
        raise InputError(f"the {len(regions)} ultrasound tissue regions overlap or differ in size, and their pixels "
                         f"do not show which is the contrast image (brightness change over the clip, gray levels: "
                         f"{boxes}); give it with --contrast-region x0,y0,x1,y1", clip.source)
    contrast = regions[order[0]]
    notes.append(f"the ultrasound tissue regions overlap or differ in size ({boxes}); the region x {contrast.x0}.."
                 f"{contrast.x1}, y {contrast.y0}..{contrast.y1} changes most over the clip and is quantified as "
                 "the contrast image (single display); if it is not, give --contrast-region x0,y0,x1,y1")
    return DisplayLayout("single", contrast, None, notes)


def _own_pixels(region: UltrasoundRegion, regions: list[UltrasoundRegion]) -> np.ndarray:
    """Mask (region-shaped) of the region's pixels outside every other region (all, if none are)."""
    own = np.ones((region.rows, region.columns), dtype=bool)
    for other in regions:
        if other is region:
            continue
        r0, r1 = max(other.y0, region.y0), min(other.y1, region.y1)
        c0, c1 = max(other.x0, region.x0), min(other.x1, region.x1)
        if r0 <= r1 and c0 <= c1:
            own[r0 - region.y0:r1 - region.y0 + 1, c0 - region.x0:c1 - region.x0 + 1] = False
    return own if own.any() else np.ones_like(own)


def _given_layout(clip: Clip, tissue: list[UltrasoundRegion], box: tuple[int, int, int, int]) -> DisplayLayout:
    """The layout of ``--contrast-region``: that box, with a same-size non-overlapping partner as B-mode."""
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 <= x1 < clip.columns and 0 <= y0 <= y1 < clip.rows):
        raise InputError(f"--contrast-region {x0},{y0},{x1},{y1} is not a box inside the {clip.columns}x{clip.rows} "
                         "image (x0,y0,x1,y1, inclusive pixel bounds)", clip.source)
    home = next((r for r in tissue if r.x0 <= (x0 + x1) / 2 <= r.x1 and r.y0 <= (y0 + y1) / 2 <= r.y1), None)
    spacing = home.spacing_mm if home is not None and home.spacing_mm else clip.pixel_spacing_mm
    contrast = UltrasoundRegion(x0, y0, x1, y1, spacing_mm=spacing)
    notes = [f"contrast panel given with --contrast-region: x {x0}..{x1}, y {y0}..{y1}"]
    partner = next((r for r in tissue if _is_panel_pair(contrast, r)), None)
    if partner is not None:
        return DisplayLayout("dual", contrast, partner, notes)
    return DisplayLayout("single", contrast, None, notes)


#: Integer factors by which an export may have shrunk the frames without rescaling the regions.
_RESIZE_FACTORS = (2, 3, 4)
#: A region matches the live image when the live pixels' box covers this much of it and vice versa.
_MATCH_FRACTION = 0.85


def _reconcile_with_pixels(clip: Clip, tissue: list[UltrasoundRegion], notes: list[str]) -> list[UltrasoundRegion]:
    """Regions that reached outside the image (clipped by the reader), checked against the live pixels.

    A clipped box usually means the export resized the frames but kept the regions: the box then
    cuts into annotations (toolbars, colour bars) and misses part of the image. When the declared
    box divided by 2, 3 or 4 fits the image and matches the box of live pixels, that box is used with
    its spacing multiplied by the factor; otherwise the region is dropped, so that the panels come
    from the pixels (without calibration).
    """
    if not any(r.declared_bounds is not None for r in tissue):
        return tissue
    live = _live_pixels(clip)
    kept = []
    for region in tissue:
        if region.declared_bounds is None:
            kept.append(region)
            continue
        x0, y0, x1, y1 = region.declared_bounds
        label = f"ultrasound region x {x0}..{x1}, y {y0}..{y1}"
        scaled = _rescaled(region, clip, live)
        if scaled is not None:
            factor, fitted = scaled
            notes.append(f"{label} does not fit the {clip.columns}x{clip.rows} image but matches its live pixels "
                         f"at 1/{factor} scale (frames resized by the export): using x {fitted.x0}..{fitted.x1}, "
                         f"y {fitted.y0}..{fitted.y1} with {factor}x the region's pixel spacing")
            kept.append(fitted)
        else:
            notes.append(f"{label} does not fit the {clip.columns}x{clip.rows} image and matches no rescaled image "
                         "area; ignored (panels from pixel activity, no calibration from it)")
    if not kept and clip.pixel_spacing_mm is not None and any(r.spacing_mm for r in tissue):
        clip.pixel_spacing_mm = None  # it came from the region that was dropped
    return kept


def _rescaled(region: UltrasoundRegion, clip: Clip, live: np.ndarray):
    x0, y0, x1, y1 = region.declared_bounds
    for factor in _RESIZE_FACTORS:
        box = (x0 // factor, y0 // factor, (x1 + 1) // factor - 1, (y1 + 1) // factor - 1)
        if not (0 <= box[0] <= box[2] < clip.columns and 0 <= box[1] <= box[3] < clip.rows):
            continue
        inside = live[box[1]:box[3] + 1, box[0]:box[2] + 1]
        if not live.any() or inside.sum() < _MATCH_FRACTION * live.sum():
            continue
        rows, columns = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        live_area = (rows[-1] - rows[0] + 1) * (columns[-1] - columns[0] + 1)
        if live_area < _MATCH_FRACTION * (box[2] - box[0] + 1) * (box[3] - box[1] + 1):
            continue
        spacing = None if region.spacing_mm is None else (region.spacing_mm[0] * factor, region.spacing_mm[1] * factor)
        return factor, UltrasoundRegion(*box, spacing_mm=spacing, data_type=region.data_type,
                                        spatial_format=region.spatial_format)
    return None


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
    live = _live_pixels(clip)
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


def _live_pixels(clip: Clip) -> np.ndarray:
    """Pixels whose gray level varies over the clip (sampled frames): the live image, not annotations."""
    sample = np.linspace(0, clip.n_frames - 1, min(clip.n_frames, _ACTIVITY_SAMPLE_FRAMES)).round().astype(int)
    frames = clip.frames[sample].astype(np.float32)
    if frames.ndim == 4:
        frames = frames.mean(axis=-1)
    return frames.std(axis=0) > ACTIVE_PIXEL_STD


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


def _brightness_activity(clip: Clip, panel: UltrasoundRegion, own: np.ndarray | None = None) -> float:
    """Temporal standard deviation of the smoothed per-frame mean display brightness (0..255 scale),
    over the panel's pixels (or the panel-shaped mask ``own``)."""
    rows, columns = panel.slices
    grey_of_index = clip.palette.mean(axis=1) if clip.palette is not None else None
    means = np.empty(clip.n_frames)
    for k in range(clip.n_frames):
        patch = clip.frames[k, rows, columns]
        if grey_of_index is not None:
            patch = grey_of_index[np.minimum(patch, grey_of_index.size - 1)]
        if own is not None:
            patch = patch[own]
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
