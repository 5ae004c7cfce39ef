"""Parametric maps as files: NRRD volumes in the frame geometry, and PNG previews with colour bars."""
from __future__ import annotations

import numpy as np

from DCEUSResponseLib.catalogue import colour_map, unit
from DCEUSResponseLib.ceus.maps import STATUS_NAMES, STATUS_OUTSIDE_IMAGE, ParametricMaps
from DCEUSResponseLib.spatial.frame import FrameGeometry

#: Colours (RGB 0..255) of the map status codes: fitted green, no enhancement black, poor fit orange,
#: not mapped grey, fit failed red, outside the image white (the preview's background, so the scan
#: sector stands out as on the screen); used by the status preview and the scene's status colour table.
STATUS_COLOURS: dict[int, tuple[int, int, int]] = {0: (44, 160, 44), 1: (31, 31, 31), 2: (255, 127, 14),
                                                   3: (127, 127, 127), 4: (214, 39, 40), 5: (255, 255, 255)}


def map_writers(maps: ParametricMaps, folder: str = "maps") -> list[tuple[str, callable]]:
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
    for name, values in maps.values.items():
        writers.append((f"{folder}/png/{name}.png", _png_writer(maps, name, values, unit(name))))
    writers.append((f"{folder}/png/status.png", _status_png_writer(maps)))
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


def _preview(image_rgb: np.ndarray, title: str, bar_rgb: np.ndarray | None, labels: list[tuple[float, str]],
             path: str) -> None:
    """Map image (upscaled, nearest) with a title and a vertical colour bar with labels, as PNG.

    ``bar_rgb`` is the bar's colour column (bottom = low); ``labels`` are (position 0..1 from the
    bottom, text) pairs drawn beside it.
    """
    from PIL import Image, ImageDraw, ImageFont

    rows, columns = image_rgb.shape[:2]
    zoom = max(1, round(_PREVIEW_PIXELS / max(rows, columns)))
    body = Image.fromarray(image_rgb).resize((columns * zoom, rows * zoom), Image.NEAREST)
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    top, left, gap, bar_width, label_width = 28, 10, 14, 18, 150
    width = left + body.width + gap + bar_width + label_width
    height = top + body.height + 12
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
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
    canvas.save(path, format="PNG", compress_level=1)


def _png_writer(maps: ParametricMaps, name: str, values: np.ndarray, unit: str):
    def write(path: str) -> None:
        finite = values[np.isfinite(values)]
        low, high = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
        if not high > low:
            high = low + 1.0
        table = sample_colour_map(colour_map(name))
        index = np.clip(np.nan_to_num((values - low) / (high - low) * 255.0, nan=0.0), 0, 255).astype(np.uint8)
        image = table[index]
        image[~np.isfinite(values)] = _NAN_COLOUR
        image[maps.status == STATUS_OUTSIDE_IMAGE] = STATUS_COLOURS[STATUS_OUTSIDE_IMAGE]
        labels = [(f, f"{low + f * (high - low):.3g}") for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
        title = f"{name} [{unit}]  {maps.model}, grey: not fitted" if unit else f"{name}  {maps.model}"
        _preview(image, title, table, labels, path)
    return write


def _status_png_writer(maps: ParametricMaps):
    def write(path: str) -> None:
        colours = np.array([STATUS_COLOURS[code] for code in sorted(STATUS_NAMES)], dtype=np.uint8)
        bar = np.repeat(colours, 40, axis=0)
        labels = [((code + 0.5) / len(colours), STATUS_NAMES[code]) for code in range(len(colours))]
        _preview(colours[maps.status], "map status", bar, labels, path)
    return write
