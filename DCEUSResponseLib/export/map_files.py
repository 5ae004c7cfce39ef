"""Parametric maps as files: NRRD volumes in the frame geometry, and PNG previews with colour bars.

The previews show the map over the clip's reference frame (its contrast panel in grey, where the
map has no value), the ROI outlines with their names, and a scale bar in mm when the clip is
calibrated (:class:`MapUnderlay`, from :func:`map_underlay`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from DCEUSResponseLib.catalogue import colour_map, unit
from DCEUSResponseLib.ceus.linearize import gray_levels
from DCEUSResponseLib.ceus.maps import ParametricMaps
from DCEUSResponseLib.ceus.pixel_fits import STATUS_NAMES, STATUS_OUTSIDE_IMAGE
from DCEUSResponseLib.ceus.results import Analysis
from DCEUSResponseLib.ceus.tic import place_on_contrast_panel
from DCEUSResponseLib.spatial.frame import FrameGeometry

#: Colours (RGB 0..255) of the map status codes: fitted green, no enhancement black, poor fit orange,
#: not mapped grey, fit failed red, outside the image white (the preview's background, so the scan
#: sector stands out as on the screen); used by the status preview and the scene's status colour table.
STATUS_COLOURS: dict[int, tuple[int, int, int]] = {0: (44, 160, 44), 1: (31, 31, 31), 2: (255, 127, 14),
                                                   3: (127, 127, 127), 4: (214, 39, 40), 5: (255, 255, 255)}


@dataclass(frozen=True)
class MapUnderlay:
    """What the previews draw with a map, on the map grid: ``gray`` (rows x columns, 0..255) the
    reference frame's contrast panel, ``outlines`` (name, mask) the ROIs."""

    gray: np.ndarray | None = None
    outlines: tuple[tuple[str, np.ndarray], ...] = field(default_factory=tuple)


def _bin_to_map(image: np.ndarray, maps: ParametricMaps) -> np.ndarray:
    rows, columns = maps.status.shape
    b = maps.binning
    return image[:rows * b, :columns * b].reshape(rows, b, columns, b).mean(axis=(1, 3))


def map_underlay(analysis: Analysis) -> MapUnderlay | None:
    """The reference frame's contrast panel and the ROIs of ``analysis`` on its map grid (None without maps)."""
    maps = analysis.maps
    if maps is None:
        return None
    panel = analysis.layout.contrast
    k = int(analysis.options.reference_frame)
    frame = analysis.clip.frames[k:k + 1, panel.y0:panel.y0 + panel.rows, panel.x0:panel.x0 + panel.columns]
    gray = _bin_to_map(gray_levels(frame, analysis.clip, analysis.colour_mapping)[0], maps)
    outlines = tuple((roi.name, _bin_to_map(roi.mask.astype(np.float32), maps) >= 0.5)
                     for roi in place_on_contrast_panel(analysis.roi_masks, analysis.layout))
    return MapUnderlay(np.clip(gray, 0.0, 255.0), outlines)


def map_writers(maps: ParametricMaps, underlay: MapUnderlay | None = None,
                folder: str = "maps") -> list[tuple[str, callable]]:
    """(relative path, writer(path)) pairs for every map as NRRD, the status map, and PNG previews.

    The NRRD files are 2D (rows x columns of the map grid) in physical space: space directions
    are the pixel spacing in mm and the space origin the first pixel's centre in the clip's frame
    geometry (pixel (r, c) at (c dx, r dy)), so they overlay the clip in Slicer.
    """
    writers = []
    for name, values in maps.values.items():
        writers.append((f"{folder}/{name}.nrrd", _nrrd_writer(maps, values, name, unit(name))))
    writers.append((f"{folder}/status.nrrd", _nrrd_writer(maps, maps.status, "status",
                                                         "; ".join(f"{k}={v}" for k, v in STATUS_NAMES.items()))))
    underlay = underlay or MapUnderlay()
    for name, values in maps.values.items():
        writers.append((f"{folder}/png/{name}.png", _png_writer(maps, name, values, unit(name), underlay)))
    writers.append((f"{folder}/png/status.png", _status_png_writer(maps, underlay)))
    return writers


def _geometry(maps: ParametricMaps) -> tuple[np.ndarray, np.ndarray]:
    """NRRD ``space directions`` (2 x 2, mm) and ``space origin`` (mm) of the map grid, in LPS."""
    ijk_to_lps = FrameGeometry.of_map_grid(maps.spacing_mm, maps.binning).map_ijk_to_lps(maps.origin_px, maps.binning)
    return ijk_to_lps[:2, :2].T, ijk_to_lps[:2, 3]


def _nrrd_writer(maps: ParametricMaps, values: np.ndarray, name: str, unit: str):
    def write(path: str) -> None:
        import nrrd

        directions, origin = _geometry(maps)
        # Fields outside the NRRD standard are written by pynrrd as "key:=value" pairs.
        header = {"space dimension": 2, "space directions": directions,
                  "space origin": origin, "space units": ["mm", "mm"], "kinds": ["domain", "domain"],
                  "encoding": "gzip", "content": name, "DCEUS_parameter": name, "DCEUS_unit": unit,
                  "DCEUS_model": maps.model, "DCEUS_binning": str(maps.binning)}
        # index order C: the array is (rows, columns); NRRD's fastest axis is the column (x).
        nrrd.write(path, np.ascontiguousarray(values), header, index_order="C", compression_level=1)
    return write


def sample_colour_map(name: str) -> np.ndarray:
    """A 256 x 3 uint8 perceptual colour table: matplotlib's if installed, else a grey ramp."""
    try:
        import matplotlib

        colour_map = matplotlib.colormaps[name]
        return (np.asarray(colour_map(np.linspace(0.0, 1.0, 256)))[:, :3] * 255).round().astype(np.uint8)
    except ImportError:
        ramp = np.arange(256, dtype=np.uint8)
        return np.stack([ramp, ramp, ramp], axis=1)


_NAN_COLOUR = (48, 48, 48)


_PREVIEW_PIXELS = 480  # about the longer side of the map in the preview


# Cyan: in none of the preview colour maps (magma, viridis, cividis) nor in the grey underlay.
_OUTLINE_COLOUR = (0, 255, 255)
_SCALE_BAR_MM = (1, 2, 5, 10, 20, 50, 100)


def _outline_pixels(mask: np.ndarray, zoom: int) -> np.ndarray:
    """The one-pixel boundary of ``mask`` upscaled ``zoom`` times (nearest), as a boolean image."""
    big = np.repeat(np.repeat(mask, zoom, axis=0), zoom, axis=1)
    padded = np.pad(big, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return big & ~interior


def _draw_outlines_and_scale(body, draw_font, maps: ParametricMaps, underlay: MapUnderlay, zoom: int):
    """ROI outlines with their names, and a scale bar (mm, column direction) when the map is calibrated."""
    from PIL import Image, ImageDraw

    pixels = np.asarray(body).copy()
    for _, mask in underlay.outlines:
        pixels[_outline_pixels(mask, zoom)] = _OUTLINE_COLOUR
    body = Image.fromarray(pixels)
    draw = ImageDraw.Draw(body)
    for name, mask in underlay.outlines:
        rows, columns = np.nonzero(mask)
        if rows.size:
            draw.text((int(columns.min()) * zoom + 2, max(int(rows.min()) * zoom - 15, 0)), name,
                      fill=_OUTLINE_COLOUR, font=draw_font, stroke_width=1, stroke_fill=(0, 0, 0))
    if maps.spacing_mm:
        mm_per_pixel = float(maps.spacing_mm[1]) / zoom
        fitting = [mm for mm in _SCALE_BAR_MM if mm / mm_per_pixel <= 0.3 * body.width]
        if fitting:
            length_mm = fitting[-1]
            length = int(round(length_mm / mm_per_pixel))
            x0, y0 = 8, body.height - 14
            draw.rectangle([x0, y0, x0 + length, y0 + 4], fill=(255, 255, 255), outline=(0, 0, 0))
            draw.text((x0, y0 - 16), f"{length_mm} mm", fill=(255, 255, 255), font=draw_font, stroke_width=1,
                      stroke_fill=(0, 0, 0))
    return body


def _preview(image_rgb: np.ndarray, title: str, bar_rgb: np.ndarray | None, labels: list[tuple[float, str]],
             path: str, maps: ParametricMaps | None = None, underlay: MapUnderlay | None = None) -> None:
    """Map image (upscaled, nearest) with a title and a vertical colour bar with labels, as PNG.

    ``bar_rgb`` is the bar's colour column (bottom = low); ``labels`` are (position 0..1 from the
    bottom, text) pairs drawn beside it. With ``maps`` and ``underlay``, ROI outlines and a scale bar
    are drawn over the image.
    """
    from PIL import Image, ImageFont

    rows, columns = image_rgb.shape[:2]
    zoom = max(1, round(_PREVIEW_PIXELS / max(rows, columns)))
    body = Image.fromarray(image_rgb).resize((columns * zoom, rows * zoom), Image.NEAREST)
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    if maps is not None and underlay is not None:
        body = _draw_outlines_and_scale(body, font, maps, underlay, zoom)
    canvas, _ = framed_with_colour_bar(body, title, bar_rgb, labels, font)
    canvas.save(path, format="PNG", compress_level=1)


def framed_with_colour_bar(body, title: str, bar_rgb: np.ndarray | None, labels: list[tuple[float, str]], font,
                           label_width: int = 150):
    """``(canvas, x of the bar)``: a PIL picture on white with its title above and, at its right, a
    vertical colour bar (``bar_rgb``: the colour column, bottom = low) with its ``labels`` ((position
    0..1 from the bottom, text) pairs); ``label_width`` leaves room for the labels (and a legend)."""
    from PIL import Image, ImageDraw

    top, left, gap, bar_width = 28, 10, 14, 18
    canvas = Image.new("RGB", (left + body.width + gap + bar_width + label_width, top + body.height + 12),
                       (255, 255, 255))
    canvas.paste(body, (left, top))
    draw = ImageDraw.Draw(canvas)
    draw.text((left, 6), title, fill=(0, 0, 0), font=font)
    x_bar = left + body.width + gap
    if bar_rgb is not None:
        bar = Image.fromarray(np.repeat(bar_rgb[::-1, None, :], bar_width, axis=1)).resize((bar_width, body.height))
        canvas.paste(bar, (x_bar, top))
        draw.rectangle([x_bar, top, x_bar + bar_width - 1, top + body.height - 1], outline=(0, 0, 0))
    for position, text in labels:
        y = top + (1.0 - position) * (body.height - 1)
        draw.line([x_bar + bar_width, y, x_bar + bar_width + 4, y], fill=(0, 0, 0))
        draw.text((x_bar + bar_width + 7, y - 8), text, fill=(0, 0, 0), font=font)
    return canvas, x_bar + bar_width


def _background(shape: tuple[int, int], underlay: MapUnderlay) -> np.ndarray:
    """The reference frame in grey (dimmed, so the colours stand out), or a flat dark grey without one."""
    if underlay.gray is None or underlay.gray.shape != shape:
        return np.broadcast_to(np.array(_NAN_COLOUR, dtype=np.uint8), shape + (3,))
    grey = (underlay.gray * 0.8).round().astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _png_writer(maps: ParametricMaps, name: str, values: np.ndarray, unit: str, underlay: MapUnderlay):
    def write(path: str) -> None:
        finite = values[np.isfinite(values)]
        low, high = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
        if not high > low:
            high = low + 1.0
        table = sample_colour_map(colour_map(name))
        index = np.clip(np.nan_to_num((values - low) / (high - low) * 255.0, nan=0.0), 0, 255).astype(np.uint8)
        image = table[index]
        missing = ~np.isfinite(values)
        image[missing] = _background(values.shape, underlay)[missing]
        image[maps.status == STATUS_OUTSIDE_IMAGE] = STATUS_COLOURS[STATUS_OUTSIDE_IMAGE]
        labels = [(f, f"{low + f * (high - low):.3g}") for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
        shown = "grey: clip, not fitted or extrapolated"
        title = f"{name} [{unit}]  {maps.model}; {shown}" if unit else f"{name}  {maps.model}; {shown}"
        _preview(image, title, table, labels, path, maps, underlay)
    return write


def _status_png_writer(maps: ParametricMaps, underlay: MapUnderlay):
    def write(path: str) -> None:
        colours = np.array([STATUS_COLOURS[code] for code in sorted(STATUS_NAMES)], dtype=np.uint8)
        bar = np.repeat(colours, 40, axis=0)
        labels = [((code + 0.5) / len(colours), STATUS_NAMES[code]) for code in range(len(colours))]
        _preview(colours[maps.status], "map status", bar, labels, path, maps, underlay)
    return write
