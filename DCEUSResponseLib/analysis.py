"""The analysis of one clip: linearise, sample the ROIs' time-intensity curves, fit, report.

:func:`analyze` works on objects in memory (the Slicer module calls it); :func:`analyze_files`
reads the clip and mask files first (the command line calls it). Neither writes anything: see
:mod:`DCEUSResponseLib.outputs`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from . import SOFTWARE_NAME, __version__
from .clip import Clip
from .errors import InputError
from .fitting import BolusFit, fit_bolus
from .layout import DisplayLayout, find_layout
from .linearize import (DEFAULT_DYNAMIC_RANGE_DB, ColourMapping, ClippingCount, check_dynamic_range,
                        choose_colour_mapping, count_clipping, gray_levels, linear_from_gray)
from .models import get_model
from .parameters import PARAMETER_NAMES, bolus_parameters, relative_parameters
from .rois import RoiMask, place_on_contrast_panel, read_roi_masks, time_intensity_curve

# Warn when more than these fractions of an ROI's samples sit at the ends of the display scale.
SATURATION_WARNING_FRACTION = 0.02
FLOOR_WARNING_FRACTION = 0.05


@dataclass
class AnalysisOptions:
    """What the user chooses; the defaults are the command line's defaults."""

    dynamic_range_db: float = DEFAULT_DYNAMIC_RANGE_DB
    injection_time_s: float = 0.0
    reference_frame: int = 0
    model: str = "lognormal"
    reference: str | None = None
    colour_table: np.ndarray | None = None


@dataclass
class RoiResult:
    """One ROI's curve, fit and parameters."""

    name: str
    pixels: int
    tic: np.ndarray
    fit: BolusFit
    parameters: dict[str, float | None]
    relative: dict[str, float | None] = field(default_factory=dict)
    clipping: ClippingCount | None = None


@dataclass
class Analysis:
    """Everything one analysis found; :mod:`outputs` turns it into the contract's files."""

    clip: Clip
    layout: DisplayLayout
    options: AnalysisOptions
    colour_mapping: ColourMapping
    times_s: np.ndarray  # seconds since injection, per frame
    frame_use: np.ndarray  # frames used for fitting
    rois: dict[str, RoiResult]
    warnings: list[str]

    @property
    def excluded_frames(self) -> list[int]:
        return [int(k) for k in np.flatnonzero(~self.frame_use)]

    def results(self) -> dict:
        """The contract's ``results.json`` content."""
        clip, layout = self.clip, self.layout
        return {
            "clip": {
                "source": clip.source,
                "frames": clip.n_frames,
                "rows": clip.rows,
                "columns": clip.columns,
                "frame_times_s": [round(float(t), 6) for t in clip.frame_times_s],
                "display": layout.display,
                "dynamic_range_db": float(self.options.dynamic_range_db),
                "linear_scale": ("I = 10**((g/255*DR - DR)/10) a.u., DR = "
                                 f"{self.options.dynamic_range_db:g} dB; g: {self.colour_mapping.describe()}"),
                "motion": {"compensated": False, "method": None},
                "excluded_frames": self.excluded_frames,
                "warnings": list(self.warnings),
                "timing_source": clip.timing_source,
                "injection_time_s": float(self.options.injection_time_s),
                "reference_frame": int(self.options.reference_frame),
                "photometric_interpretation": clip.photometric,
                "pixel_spacing_mm": list(layout.contrast.spacing_mm) if layout.contrast.spacing_mm else None,
                "contrast_region": _region_box(layout.contrast),
                "bmode_region": _region_box(layout.bmode) if layout.bmode is not None else None,
                "uids": dict(clip.uids),
            },
            "rois": {name: _roi_json(roi) for name, roi in self.rois.items()},
            "reference": self.options.reference,
            "software": {"name": SOFTWARE_NAME, "version": __version__},
        }


def _region_box(region) -> dict:
    return {"x0": region.x0, "y0": region.y0, "x1": region.x1, "y1": region.y1}


def _roi_json(roi: RoiResult) -> dict:
    fit = roi.fit
    out = {
        "pixels": roi.pixels,
        "status": fit.status,
        "reason": fit.reason,
        "model": fit.model,
        "fit": {name: float(value) for name, value in fit.params.items()},
        "parameters": {name: _finite_or_none(roi.parameters.get(name)) for name in PARAMETER_NAMES},
        "relative": {name: _finite_or_none(roi.relative.get(name)) for name in PARAMETER_NAMES},
        "frames_fitted": int(fit.n_frames_used),
    }
    if roi.clipping is not None:
        out["clipping"] = {"saturated_fraction": roi.clipping.saturated_fraction,
                           "floor_fraction": roi.clipping.floor_fraction}
    return out


def _finite_or_none(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def analyze_files(clip_path: str, roi_specs: Sequence[str], options: AnalysisOptions,
                  frame_rate_hz: float | None = None) -> Analysis:
    """Read ``clip_path`` and the ``--roi`` specs, then :func:`analyze`."""
    from .dicom_io import read_clip

    check_dynamic_range(options.dynamic_range_db)
    get_model(options.model)
    clip = read_clip(clip_path, frame_rate_hz=frame_rate_hz)
    rois = read_roi_masks(roi_specs, (clip.rows, clip.columns), clip.frame_spacing_mm)
    return analyze(clip, rois, options)


def analyze(clip: Clip, rois: Sequence[RoiMask], options: AnalysisOptions) -> Analysis:
    """Quantify every ROI of ``clip``; ``rois`` are full-frame masks on the reference frame."""
    check_dynamic_range(options.dynamic_range_db)
    model = get_model(options.model)
    if not rois:
        raise InputError("no ROI given (--roi NAME=MASK)", clip.source)
    names = [roi.name for roi in rois]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise InputError(f"duplicate ROI name {duplicate!r}", clip.source)
    if options.reference is not None and options.reference not in names:
        raise InputError(f"--reference {options.reference!r} is not one of the ROIs ({', '.join(names)})",
                         clip.source)
    if not 0 <= options.reference_frame < clip.n_frames:
        raise InputError(f"--reference-frame {options.reference_frame} is outside the clip's frames "
                         f"0..{clip.n_frames - 1}", clip.source)
    if not np.isfinite(options.injection_time_s) or options.injection_time_s >= clip.frame_times_s[-1]:
        raise InputError(f"--injection-time {options.injection_time_s} s is not before the clip's last "
                         f"frame ({clip.frame_times_s[-1]:.2f} s)", clip.source)

    layout = find_layout(clip)
    warnings = list(clip.warnings) + list(layout.warnings)
    for roi in rois:
        if roi.mask.shape != (clip.rows, clip.columns):
            raise InputError(f"mask of ROI {roi.name!r} is {roi.mask.shape[0]} x {roi.mask.shape[1]} pixels "
                             f"but the frames are {clip.rows} x {clip.columns}", roi.source)
    panel_rois = place_on_contrast_panel(rois, layout)

    mapping = choose_colour_mapping(clip, layout.contrast.slices, options.colour_table)
    rows, columns = layout.contrast.slices
    gray = gray_levels(clip.frames[:, rows, columns], clip, mapping)
    linear = linear_from_gray(gray, options.dynamic_range_db)
    times_s = clip.frame_times_s - options.injection_time_s
    frame_use = np.ones(clip.n_frames, dtype=bool)

    results: dict[str, RoiResult] = {}
    for roi in panel_rois:
        tic = time_intensity_curve(linear, roi.mask)
        clipping = count_clipping(gray, roi.mask, frame_use)
        warnings.extend(_clipping_warnings(roi.name, clipping))
        fit = fit_bolus(times_s, tic, model.name, use=frame_use)
        parameters = bolus_parameters(model, fit.params, fit.qof) if fit.status == "ok" else \
            {name: None for name in PARAMETER_NAMES}
        results[roi.name] = RoiResult(roi.name, int(np.count_nonzero(roi.mask)), tic, fit, parameters,
                                      clipping=clipping)
    if options.reference is not None:
        reference = results[options.reference]
        if reference.fit.status != "ok":
            warnings.append(f"reference ROI {options.reference!r} is {reference.fit.status}: relative values "
                            "are undefined")
        for roi in results.values():
            roi.relative = relative_parameters(roi.parameters, reference.parameters)
    return Analysis(clip, layout, options, mapping, times_s, frame_use, results, warnings)


def _clipping_warnings(name: str, clipping: ClippingCount) -> list[str]:
    out = []
    if clipping.saturated_fraction > SATURATION_WARNING_FRACTION:
        out.append(f"ROI {name!r}: {100 * clipping.saturated_fraction:.1f} % of samples are saturated "
                   "(gray 255): peak intensities are underestimated; lower the gain or raise the dynamic range")
    if clipping.floor_fraction > FLOOR_WARNING_FRACTION:
        out.append(f"ROI {name!r}: {100 * clipping.floor_fraction:.1f} % of samples are at the display floor "
                   "(gray 0): low intensities are overestimated; raise the gain")
    return out
