"""Parametric maps of a clip: every pixel of the contrast panel fitted, in row bands.

The contrast panel (optionally binned N x N, or a region of it) is linearised a band of rows at a
time, moved back onto the reference frame when the clip moves, and every pixel's curve is fitted by
:func:`.pixel_fits.fit_curves` (a shared dictionary start and batched Levenberg-Marquardt; its
module says how and how each pixel's status is decided). Pixels whose display value never changes
over the clip (outside the scan sector) are ``outside_image`` and not fitted. Every map is NaN
wherever the status is not ``fitted`` and where that pixel's parameter is extrapolated beyond the
fitted frames. Maps are float32 on the contrast panel's pixel grid; memory stays bounded for long,
large clips.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from DCEUSResponseLib.ceus.linearize import linear_intensity, linear_lookup
from DCEUSResponseLib.ceus.motion_sampling import sample_shifted
from DCEUSResponseLib.ceus.pixel_fits import (BIN_SECONDS, MIN_ENHANCEMENT_F, MIN_MAP_QOF_PERCENT, STATUS_FITTED,
                                              STATUS_NAMES, STATUS_NOT_MAPPED, STATUS_OUTSIDE_IMAGE, fit_curves)
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.kinetics.models import get_model
from DCEUSResponseLib.kinetics.parameters import (PARAMETER_NAMES, bolus_extrapolated_arrays, bolus_parameter_arrays,
                                                  fitted_gaps)

#: A pixel whose display value changes by no more than this (display levels, every channel) over the
#: whole clip carries no signal: the black background outside the scan sector, static overlays. JPEG
#: decodes an unchanged block identically, while speckle changes live pixels by tens of levels.
NO_SIGNAL_RANGE = 2


@dataclass
class ParametricMaps:
    """Per-pixel parameters of one clip.

    ``values`` maps each contract parameter (and ``QOF``) to a float32 (rows, columns) array on the
    map grid, NaN where ``status`` is not fitted and where that pixel's parameter is extrapolated
    beyond the fitted frames (``extrapolated`` counts those fitted pixels per parameter);
    ``status`` holds the ``STATUS_*`` codes. The grid
    is the contrast panel binned ``binning`` x ``binning``: ``spacing_mm`` is its (row, column)
    pixel size and ``origin_px`` the full-frame (row, column) position of its first pixel's centre.
    """

    values: dict[str, np.ndarray]
    status: np.ndarray
    model: str
    binning: int
    spacing_mm: tuple[float, float] | None
    origin_px: tuple[float, float]
    settings: dict = field(default_factory=dict)
    extrapolated: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict:
        """What ``results.json`` records about the maps."""
        counts = {STATUS_NAMES[code]: int(np.count_nonzero(self.status == code)) for code in STATUS_NAMES}
        fitted = self.status == STATUS_FITTED
        medians = {name: (float(np.nanmedian(values[fitted])) if np.any(fitted) else None)
                   for name, values in self.values.items()}
        return {"model": self.model, "rows": int(self.status.shape[0]), "columns": int(self.status.shape[1]),
                "binning": self.binning, "spacing_mm": list(self.spacing_mm) if self.spacing_mm else None,
                "origin_px": list(self.origin_px), "status_codes": {str(k): v for k, v in STATUS_NAMES.items()},
                "pixels": counts, "median_of_fitted": medians,
                "extrapolated_pixels": {name: int(self.extrapolated.get(name, 0)) for name in self.values},
                **self.settings}


# ----------------------------------------------------------------------------------------------
# Maps of a clip, in row bands


#: Each row band of linear intensities (frames x rows x columns, float32) stays below this size.
BAND_BYTES = 192 * 2**20
#: Frames linearised together before each is moved back onto the reference frame.
SHIFT_CHUNK_FRAMES = 32


def compute_parametric_maps(clip, layout, mapping, dynamic_range_db: float, times_s: np.ndarray,
                            frame_use: np.ndarray, *, model: str = "lognormal", binning: int = 1,
                            region_mask: np.ndarray | None = None,
                            displacement_px: np.ndarray | None = None) -> ParametricMaps:
    """Fit every pixel of the contrast panel (or of ``region_mask``, panel-shaped) of ``clip``.

    ``times_s`` are frame times since injection (s); only frames with ``frame_use`` are fitted.
    ``binning`` N averages N x N pixel blocks (linear intensity) before fitting (1 = full resolution).
    ``displacement_px`` (frames x 2, row/column) resamples each frame back onto the reference frame
    (bilinear) before fitting, so each map pixel follows the same tissue.
    """
    model = get_model(model)
    if binning < 1:
        raise InputError(f"--map-binning must be 1 or more, got {binning}")
    panel = layout.contrast
    rows, columns = (panel.rows // binning) * binning, (panel.columns // binning) * binning
    if rows == 0 or columns == 0:
        raise InputError(f"--map-binning {binning} is larger than the contrast panel", clip.source)
    map_shape = (rows // binning, columns // binning)
    if region_mask is not None:
        blocks = region_mask[:rows, :columns].reshape(map_shape[0], binning, map_shape[1], binning)
        map_region = blocks.mean(axis=(1, 3)) >= 0.5
    else:
        map_region = np.ones(map_shape, dtype=bool)
    outside = _no_signal(clip, panel, rows, columns, binning) & map_region
    map_region = map_region & ~outside
    used_times = np.asarray(times_s, dtype=np.float64)[frame_use]
    n_used = int(np.count_nonzero(frame_use))
    margin = 0
    if displacement_px is not None:
        margin = int(math.ceil(np.nanmax(np.abs(displacement_px[frame_use]))) + 1) if n_used else 0
    band_rows = max(binning, int(BAND_BYTES // max(n_used * (columns + 2 * margin) * 4, 1)) // binning * binning)

    values = {name: np.full(map_shape, np.nan, dtype=np.float32) for name in PARAMETER_NAMES}
    extrapolated = dict.fromkeys(PARAMETER_NAMES, 0)
    status = np.full(map_shape, STATUS_NOT_MAPPED, dtype=np.uint8)
    status[outside] = STATUS_OUTSIDE_IMAGE
    span_s = (float(used_times[0]), float(used_times[-1])) if n_used else (0.0, 0.0)
    gaps_s = fitted_gaps(used_times)
    frame_indices = np.flatnonzero(frame_use)
    for band_start in range(0, rows, band_rows):
        band_stop = min(band_start + band_rows, rows)
        map_rows = slice(band_start // binning, band_stop // binning)
        wanted = map_region[map_rows]
        if not np.any(wanted):
            continue
        linear, lookup = _band_values(clip, panel, mapping, dynamic_range_db, frame_indices, band_start, band_stop,
                                      columns, margin, displacement_px, binning)
        if binning > 1:
            linear = linear.reshape(n_used, linear.shape[1] // binning, binning, columns // binning,
                                    binning).mean(axis=(2, 4), dtype=np.float32)
        curves = linear.reshape(n_used, -1)
        if not wanted.all():
            curves = curves[:, wanted.ravel()]
        fits = fit_curves(used_times, curves, model, lookup=lookup)
        named = dict(zip(model.parameter_names, fits.params.T))
        parameters = bolus_parameter_arrays(model, named, fits.qof)
        fitted = fits.status == STATUS_FITTED
        beyond = bolus_extrapolated_arrays(model, {k: v[fitted] for k, v in named.items()}, span_s, gaps_s)
        band_status = status[map_rows]
        band_status[wanted] = fits.status
        for name in PARAMETER_NAMES:
            shown = fitted.copy()
            shown[fitted] = ~beyond[name]
            extrapolated[name] += int(np.count_nonzero(fitted)) - int(np.count_nonzero(shown))
            band_values = values[name][map_rows]
            band_values[wanted] = np.where(shown, parameters[name], np.nan).astype(np.float32)
        # Before the next band is linearised: otherwise two bands (and their curves) are alive at once.
        del linear, curves, fits
    spacing = panel.spacing_mm
    map_spacing = (spacing[0] * binning, spacing[1] * binning) if spacing else None
    origin = (panel.y0 + (binning - 1) / 2.0, panel.x0 + (binning - 1) / 2.0)
    settings = {"fit_frame_bin_s": BIN_SECONDS, "frames_fitted": n_used, "qof_threshold_percent": MIN_MAP_QOF_PERCENT,
                "enhancement_f_threshold": MIN_ENHANCEMENT_F, "motion_compensated": displacement_px is not None,
                "region": "whole contrast panel" if region_mask is None else "region mask"}
    return ParametricMaps(values, status, model.name, binning, map_spacing, origin, settings, extrapolated)


def _no_signal(clip, panel, rows: int, columns: int, binning: int) -> np.ndarray:
    """Map pixels (binned grid) of which at least half the panel pixels never change over the clip."""
    still = np.empty((rows, columns), dtype=bool)
    band = max(1, int(BAND_BYTES // max(clip.n_frames * columns * (3 if clip.frames.ndim == 4 else 1), 1)))
    for start in range(0, rows, band):
        stop = min(start + band, rows)
        # Reductions over a view: no copy of the clip.
        frames = clip.frames[:, panel.y0 + start:panel.y0 + stop, panel.x0:panel.x0 + columns]
        spread = frames.max(axis=0).astype(np.int64) - frames.min(axis=0)
        if spread.ndim == 3:
            spread = spread.max(axis=-1)
        still[start:stop] = spread <= NO_SIGNAL_RANGE
    blocks = still.reshape(rows // binning, binning, columns // binning, binning)
    return blocks.mean(axis=(1, 3)) >= 0.5


def _band_values(clip, panel, mapping, dynamic_range_db, frame_indices, band_start, band_stop, columns, margin,
                 displacement_px, binning) -> tuple[np.ndarray, np.ndarray | None]:
    """A row band's curves as :func:`_band_linear` gives them, or, where a lookup table linearises the
    frames as they are (a grey or palette clip whose frames did not move, no binning), its display
    values and that table, for :func:`.pixel_fits.fit_curves` to linearise chunk by chunk: a float copy of
    the band (130 MiB for the 320 x 240 x 720 bench clip, touched once) is never made."""
    moved = displacement_px is not None and np.any(displacement_px[frame_indices] != 0.0)
    by_lookup = not moved and binning == 1 and clip.frames.dtype in (np.uint8, np.uint16)  # colour clips: no lookup
    lookup = linear_lookup(clip, mapping, clip.frames.dtype, dynamic_range_db) if by_lookup else None
    if lookup is not None:
        top = panel.y0 + band_start
        return clip.frames[frame_indices, top:top + band_stop - band_start, panel.x0:panel.x0 + columns], lookup
    return _band_linear(clip, panel, mapping, dynamic_range_db, frame_indices, band_start, band_stop, columns, margin,
                        displacement_px), None


def _band_linear(clip, panel, mapping, dynamic_range_db, frame_indices, band_start, band_stop, columns, margin,
                 displacement_px) -> np.ndarray:
    """Linear intensity (used frames x band rows x columns, float32) of a row band of the panel.

    With motion, a margin of rows and columns around the band is read and each frame is sampled at
    the tissue's displaced position (bilinear), which brings it back onto the reference frame. Each
    frame's motion is a pure translation, so the sampling is a whole-pixel gather and a fractional
    blend per axis (:func:`.motion_sampling.sample_shifted`), and frames that did not move (all of a
    still clip's) are read as they are.
    """
    top = panel.y0 + band_start
    height = band_stop - band_start
    moved = None if displacement_px is None else np.any(displacement_px[frame_indices] != 0.0, axis=1)
    if moved is None or not moved.any():
        frames = clip.frames[frame_indices, top:top + height, panel.x0:panel.x0 + columns]
        return linear_intensity(frames, clip, mapping, dynamic_range_db)
    row_lo, row_hi = max(top - margin, 0), min(top + height + margin, clip.rows)
    col_lo, col_hi = max(panel.x0 - margin, 0), min(panel.x0 + columns + margin, clip.columns)
    out = np.empty((len(frame_indices), height, columns), dtype=np.float32)
    for start in range(0, len(frame_indices), SHIFT_CHUNK_FRAMES):
        chunk = frame_indices[start:start + SHIFT_CHUNK_FRAMES]
        linear = linear_intensity(clip.frames[chunk, row_lo:row_hi, col_lo:col_hi], clip, mapping, dynamic_range_db)
        for j, frame in enumerate(chunk):
            out[start + j] = sample_shifted(linear[j], top - row_lo, panel.x0 - col_lo, height, columns,
                                            displacement_px[frame])
    return out
