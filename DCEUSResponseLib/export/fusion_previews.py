"""``fusion/png/``: what a radiologist reads first. Four images of the one CEUS plane on the contrast
panel's pixel grid: the CEUS frame (the B-mode panel of a dual display, else the contrast panel, at
the reference frame the ROIs were drawn on) | the CT on the plane (HU, window -160..240) | the PET on
the plane (SUVbw) | the PE map over the CT; each with the ROI outlines, the landmark pairs (CEUS point
o, CT point projected onto the plane x, joined by their in-plane residual) and a colour bar in its
unit; ``overview.png`` puts the four side by side. PIL is imported inside the functions.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from DCEUSResponseLib.export.map_files import framed_with_colour_bar, sample_colour_map
from DCEUSResponseLib.fusion.inputs import PANEL_BMODE, PANEL_CONTRAST
from DCEUSResponseLib.fusion.pipeline import Fusion
from DCEUSResponseLib.spatial.registration import apply

CT_WINDOW_HU = (-160.0, 240.0)  # the abdominal soft-tissue window
PET_COLOUR_MAP, PE_COLOUR_MAP = "inferno", "magma"
PE_ALPHA = 0.65
ROI_COLOURS = ((0, 200, 255), (255, 80, 80), (80, 255, 80), (255, 200, 0), (220, 120, 255), (255, 255, 255))
CEUS_POINT, CT_POINT = (0, 255, 255), (255, 0, 255)
_NAN = (48, 48, 48)
_ZOOM_TARGET_PX = 480
_PREVIEW_NAMES = ("ceus.png", "ct.png", "pet.png", "pe_over_ct.png")


def _grey(values: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = np.clip(np.nan_to_num((values - low) / (high - low), nan=0.0), 0.0, 1.0)
    grey = (scaled * 255.0).round().astype(np.uint8)
    rgb = np.stack([grey] * 3, axis=-1)
    rgb[~np.isfinite(values)] = _NAN
    return rgb


def _coloured(values: np.ndarray, low: float, high: float, table: np.ndarray) -> np.ndarray:
    index = np.clip(np.nan_to_num((values - low) / (high - low) * 255.0, nan=0.0), 0, 255).astype(np.uint8)
    rgb = table[index]
    rgb[~np.isfinite(values)] = _NAN
    return rgb


def _on_grid(fusion: Fusion, full_frame: np.ndarray, panel: str) -> np.ndarray:
    """The part of a full-frame array on ``panel``, as an array of the contrast grid's shape."""
    layout = fusion.analysis.layout
    region = layout.bmode if panel == PANEL_BMODE else layout.contrast
    rows, columns = fusion.contrast_grid.shape
    crop = full_frame[region.y0:region.y0 + rows, region.x0:region.x0 + columns]
    out = np.zeros((rows, columns) + full_frame.shape[2:], dtype=full_frame.dtype)
    out[:crop.shape[0], :crop.shape[1]] = crop
    return out


def _ceus_rgb(fusion: Fusion) -> tuple[np.ndarray, str]:
    clip = fusion.analysis.clip
    frame_index = int(fusion.analysis.results["clip"].get("reference_frame", 0))
    frame = clip.frames[min(frame_index, clip.n_frames - 1)]
    if clip.palette is not None:
        frame = np.asarray(clip.palette)[np.minimum(frame, len(clip.palette) - 1)]
    if frame.ndim == 2:
        top = 255.0 if frame.dtype == np.uint8 else float(2 ** clip.bits_stored - 1)
        frame = np.stack([np.clip(frame / top * 255.0, 0, 255).astype(np.uint8)] * 3, axis=-1)
    panel = PANEL_BMODE if fusion.analysis.layout.bmode is not None else PANEL_CONTRAST
    label = "B-mode panel" if panel == PANEL_BMODE else "contrast panel"
    return _on_grid(fusion, np.asarray(frame, dtype=np.uint8), panel), f"CEUS {label}, frame {frame_index}"


def _outlines(fusion: Fusion) -> list[tuple[str, np.ndarray]]:
    from scipy import ndimage

    result = []
    for roi in fusion.analysis.rois:
        mask = _on_grid(fusion, roi.mask, fusion.rois[roi.name].panel)
        result.append((roi.name, mask & ~ndimage.binary_erosion(mask)))
    return result


def _landmarks_on_grid(fusion: Fusion) -> list[tuple[str, tuple[float, float], tuple[float, float]]]:
    """(label, CEUS point, CT point projected on the plane) as (row, column) of the contrast grid."""
    pairs = fusion.registration.landmarks
    if not pairs:
        return []
    dy, dx = fusion.analysis.spacing_mm
    layout = fusion.analysis.layout
    region = layout.bmode if fusion.registration_panel == PANEL_BMODE else layout.contrast
    inverse = np.linalg.inv(fusion.registration.ceus_to_patient_lps)
    out = []
    for pair in pairs:
        projected = apply(inverse, np.asarray(pair.patient_mm))
        out.append((pair.label, (pair.ceus_mm[1] / dy - region.y0, pair.ceus_mm[0] / dx - region.x0),
                    (projected[1] / dy - region.y0, projected[0] / dx - region.x0)))
    return out


def _image(rgb: np.ndarray, title: str, bar: np.ndarray | None, labels: list[tuple[float, str]],
           outlines, landmarks, legend: list[tuple[str, tuple]]):
    """A PIL image: the zoomed picture with outlines and landmarks, a title and a labelled colour bar."""
    from PIL import Image, ImageDraw, ImageFont

    rows, columns = rgb.shape[:2]
    zoom = max(1, round(_ZOOM_TARGET_PX / max(rows, columns)))
    picture = rgb.copy()
    for index, (_, outline) in enumerate(outlines):
        picture[outline] = ROI_COLOURS[index % len(ROI_COLOURS)]
    body = Image.fromarray(picture).resize((columns * zoom, rows * zoom), Image.NEAREST)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    draw_body = ImageDraw.Draw(body)
    for label, (r0, c0), (r1, c1) in landmarks:
        p0, p1 = ((c0 + 0.5) * zoom, (r0 + 0.5) * zoom), ((c1 + 0.5) * zoom, (r1 + 0.5) * zoom)
        draw_body.line([p0, p1], fill=(255, 255, 0), width=1)
        draw_body.ellipse([p0[0] - 5, p0[1] - 5, p0[0] + 5, p0[1] + 5], outline=CEUS_POINT, width=2)
        draw_body.line([p1[0] - 4, p1[1] - 4, p1[0] + 4, p1[1] + 4], fill=CT_POINT, width=2)
        draw_body.line([p1[0] - 4, p1[1] + 4, p1[0] + 4, p1[1] - 4], fill=CT_POINT, width=2)
        draw_body.text((p0[0] + 7, p0[1] - 7), label, fill=CEUS_POINT, font=font)
    canvas, x_labels = framed_with_colour_bar(body, title, bar, labels, font, label_width=230)
    draw = ImageDraw.Draw(canvas)
    y = canvas.height - 12 - 16 * len(legend)
    for text, colour in legend:  # ROI names in their outline colours, bottom right
        draw.text((x_labels + 50, y - 14), text, fill=colour, font=font)
        y += 16
    return canvas


def _ramp_labels(low: float, high: float, unit: str) -> list[tuple[float, str]]:
    return [(f, f"{low + f * (high - low):.3g} {unit}") for f in (0.0, 0.25, 0.5, 0.75, 1.0)]


def _pe_on_grid(fusion: Fusion) -> tuple[np.ndarray | None, str]:
    """The analysis' PE map (maps/PE.nrrd) on the contrast grid (nearest bin), or None and why."""
    summary = fusion.analysis.results.get("maps")
    path = os.path.join(fusion.analysis.folder, "maps", "PE.nrrd")
    if not summary or not os.path.isfile(path):
        return None, "fusion/png/pe_over_ct.png not written: the analysis has no PE map (analyze --maps)"
    import nrrd

    values, _ = nrrd.read(path, index_order="C")
    binning = int(summary.get("binning", 1))
    origin_row, origin_column = summary.get("origin_px", (0.0, 0.0))
    grid = fusion.contrast_grid
    rows = grid.first_pixel[0] + np.arange(grid.shape[0])
    columns = grid.first_pixel[1] + np.arange(grid.shape[1])
    i = np.floor((rows - origin_row) / binning + 0.5).astype(int)
    j = np.floor((columns - origin_column) / binning + 0.5).astype(int)
    inside_i, inside_j = (i >= 0) & (i < values.shape[0]), (j >= 0) & (j < values.shape[1])
    out = np.full(grid.shape, np.nan, dtype=np.float32)
    block = values[np.clip(i, 0, values.shape[0] - 1)][:, np.clip(j, 0, values.shape[1] - 1)]
    out[np.ix_(inside_i, inside_j)] = block[np.ix_(inside_i, inside_j)]
    return out, ""


def preview_images(fusion: Fusion) -> tuple[dict[str, object], list[str]]:
    """The PIL images by file name, and notes on what could not be drawn."""
    outlines = _outlines(fusion)
    landmarks = _landmarks_on_grid(fusion)
    legend = [(name, ROI_COLOURS[k % len(ROI_COLOURS)]) for k, (name, _) in enumerate(outlines)]
    legend.append(("o CEUS  x CT landmark", (90, 90, 90)))
    notes = []
    images = {}
    ceus, title = _ceus_rgb(fusion)
    grey_bar = np.stack([np.arange(256, dtype=np.uint8)] * 3, axis=1)
    images["ceus.png"] = _image(ceus, title, grey_bar, _ramp_labels(0, 255, "grey"), outlines, landmarks, legend)
    low, high = CT_WINDOW_HU
    ct_rgb = _grey(fusion.ct_on_ceus, low, high)
    images["ct.png"] = _image(ct_rgb, f"CT on the CEUS plane, {fusion.slab_mm:g} mm slab", grey_bar,
                              _ramp_labels(low, high, "HU"), outlines, landmarks, legend)
    if fusion.suv_on_ceus is not None:
        finite = fusion.suv_on_ceus[np.isfinite(fusion.suv_on_ceus)]
        top = float(np.percentile(finite, 99.5)) if finite.size else 1.0
        table = sample_colour_map(PET_COLOUR_MAP)
        images["pet.png"] = _image(_coloured(fusion.suv_on_ceus, 0.0, max(top, 1e-6), table),
                                   f"PET SUVbw on the CEUS plane, {fusion.slab_mm:g} mm slab", table,
                                   _ramp_labels(0.0, max(top, 1e-6), "g/ml"), outlines, landmarks, legend)
    else:
        notes.append("fusion/png/pet.png not written: no --pet")
    pe, why = _pe_on_grid(fusion)
    if pe is not None:
        finite = pe[np.isfinite(pe)]
        pe_low, pe_high = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
        pe_high = pe_high if pe_high > pe_low else pe_low + 1.0
        table = sample_colour_map(PE_COLOUR_MAP)
        overlay = _coloured(pe, pe_low, pe_high, table).astype(np.float32)
        blended = ct_rgb.astype(np.float32)
        shown = np.isfinite(pe)
        blended[shown] = (1 - PE_ALPHA) * blended[shown] + PE_ALPHA * overlay[shown]
        images["pe_over_ct.png"] = _image(blended.round().astype(np.uint8), "PE map over the CT (grey: CT only)",
                                          table, _ramp_labels(float(pe_low), float(pe_high), "a.u."), outlines,
                                          landmarks, legend)
    else:
        notes.append(why)
    return images, notes


def _overview(images: dict[str, object]):
    from PIL import Image

    shown = [images[name] for name in _PREVIEW_NAMES if name in images]
    canvas = Image.new("RGB", (sum(i.width for i in shown), max(i.height for i in shown)), (255, 255, 255))
    x = 0
    for image in shown:
        canvas.paste(image, (x, 0))
        x += image.width
    return canvas


def preview_writers(fusion: Fusion, folder: str = "fusion/png"
                    ) -> tuple[list[tuple[str, Callable[[str], None]]], list[str]]:
    """(relative path, writer) pairs for the previews and ``overview.png``, and notes on those left out."""
    images, notes = preview_images(fusion)
    images["overview.png"] = _overview(images)

    def writer(image):
        return lambda path: image.save(path, format="PNG", compress_level=1)
    return [(f"{folder}/{name}", writer(image)) for name, image in images.items()], notes
