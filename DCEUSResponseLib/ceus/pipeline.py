"""The analysis of one clip: motion, frame quality, TICs, fits, parameters and maps.

:func:`analyze` works on objects in memory (the Slicer module calls it); :func:`analyze_files`
reads the clip and mask files first (the command line calls it). Neither writes anything: see
:mod:`DCEUSResponseLib.outputs`.

Steps: find the panels; place the ROIs on the contrast panel; estimate breathing motion (on the
B-mode panel of a dual display, else on the contrast panel); find frames to exclude (dropout,
out-of-plane, duplicate, flash, and the user's); sample each ROI's TIC with the ROI moving with the
anatomy; fit the bolus model (or, for destruction-replenishment studies, one replenishment per
post-flash segment); report the contract's parameters, relative values and optionally maps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from DCEUSResponseLib import SOFTWARE_NAME, __version__
from DCEUSResponseLib.ceus.layout import DisplayLayout, find_layout
from DCEUSResponseLib.ceus.linearize import (
    DEFAULT_DYNAMIC_RANGE_DB,
    ClippingCount,
    ColourMapping,
    check_dynamic_range,
    choose_colour_mapping,
    count_clipping,
    gray_levels,
    linear_from_gray,
    panel_gray_uint8,
)
from DCEUSResponseLib.ceus.tic import place_on_contrast_panel, time_intensity_curve
from DCEUSResponseLib.clip import Clip, RoiMask
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.masks import read_roi_masks
from DCEUSResponseLib.kinetics.bolus import fit_bolus
from DCEUSResponseLib.kinetics.models import BOLUS_MODELS, get_model
from DCEUSResponseLib.kinetics.parameters import (
    PARAMETER_NAMES,
    _finite_or_none,
    bolus_parameters,
    relative_parameters,
)

REPLENISHMENT = "replenishment"
MODEL_CHOICES = tuple(sorted(BOLUS_MODELS)) + (REPLENISHMENT,)

# Warn when more than these fractions of an ROI's samples sit at the ends of the display scale.
SATURATION_WARNING_FRACTION = 0.02
FLOOR_WARNING_FRACTION = 0.05


@dataclass
class AnalysisOptions:
    """What the user chooses; the defaults are the command line's defaults.

    ``exclude_frames`` and ``flash_frames`` are frame ranges as typed ("3-5,10"), checked against
    the clip once it is read. ``flash_frames`` None means: the flashes frame quality control finds.
    """

    dynamic_range_db: float = DEFAULT_DYNAMIC_RANGE_DB
    injection_time_s: float = 0.0
    reference_frame: int = 0
    model: str = "lognormal"
    reference: str | None = None
    colour_table: np.ndarray | None = None
    motion_compensation: bool = True
    frame_quality_control: bool = True
    exclude_frames: str = ""
    flash_frames: str | None = None
    maps: bool = False
    map_binning: int = 1
    map_region: str | None = None


@dataclass
class SegmentedFit:
    """Replenishment fits of one ROI, one per post-flash segment, behaving like a BolusFit.

    ``status`` is "ok" when at least one segment fitted; ``params`` are the means over the fitted
    segments; ``segments`` hold each segment's fit.
    """

    model: str
    status: str
    reason: str | None
    params: dict[str, float]
    qof: float | None
    n_frames_used: int
    segments: list  # ReplenishmentFit per segment
    segment_frames: list  # replenishment.Segment per segment

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def curve(self, t) -> np.ndarray:
        """The fitted replenishment of every segment, each from its flash to the next (NaN elsewhere)."""
        t = np.asarray(t, dtype=float)
        out = np.full(t.shape, np.nan)
        for index, fit in enumerate(self.segments):
            end = self.segments[index + 1].t_flash_s if index + 1 < len(self.segments) else np.inf
            inside = (t > fit.t_flash_s) & (t < end)
            out[inside] = fit.curve(t[inside])
        return out


@dataclass
class RoiResult:
    """One ROI's curve, fit and parameters."""

    name: str
    pixels: int
    tic: np.ndarray
    fit: object  # BolusFit or SegmentedFit
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
    motion: object | None = None  # MotionEstimate
    excluded: list = field(default_factory=list)  # ExcludedFrame, one per excluded frame
    maps: object | None = None  # ParametricMaps
    parameter_names: tuple[str, ...] = PARAMETER_NAMES
    roi_masks: list = field(default_factory=list)  # the full-frame RoiMask objects given

    @property
    def excluded_frames(self) -> list[int]:
        return [int(k) for k in np.flatnonzero(~self.frame_use)]

    def exclusion_reasons(self) -> dict[int, str]:
        """Frame index to the reason it was kept out of the fits."""
        return {int(e.frame): e.reason for e in self.excluded}

    def results(self) -> dict:
        """The contract's ``results.json`` content."""
        clip, layout = self.clip, self.layout
        motion = self.motion.to_json() if self.motion is not None else {
            "compensated": False, "method": None,
            "reason": "disabled (--no-motion-compensation)" if not self.options.motion_compensation else None}
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
                "motion": motion,
                "excluded_frames": self.excluded_frames,
                "excluded_frame_reasons": [e.to_json() for e in self.excluded],
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
            "rois": {name: _roi_json(roi, self.parameter_names) for name, roi in self.rois.items()},
            "reference": self.options.reference,
            "model": self.options.model,
            "maps": self.maps.summary() if self.maps is not None else None,
            "software": {"name": SOFTWARE_NAME, "version": __version__},
        }


def _region_box(region) -> dict:
    return {"x0": region.x0, "y0": region.y0, "x1": region.x1, "y1": region.y1}


def _roi_json(roi: RoiResult, parameter_names: Sequence[str]) -> dict:
    fit = roi.fit
    out = {
        "pixels": roi.pixels,
        "status": fit.status,
        "reason": fit.reason,
        "model": fit.model,
        "fit": {name: float(value) for name, value in fit.params.items()},
        "parameters": {name: _finite_or_none(roi.parameters.get(name)) for name in parameter_names},
        "relative": {name: _finite_or_none(roi.relative.get(name)) for name in parameter_names},
        "frames_fitted": int(fit.n_frames_used),
    }
    if isinstance(fit, SegmentedFit):
        from DCEUSResponseLib.kinetics.replenishment import replenishment_parameters

        out["segments"] = [{"flash_frames": [int(k) for k in segment.flash_frames],
                            "t_flash_s": float(fit_k.t_flash_s), "first_frame": int(segment.frames[0]),
                            "last_frame": int(segment.frames[-1]), "status": fit_k.status, "reason": fit_k.reason,
                            "fit": {k: float(v) for k, v in fit_k.params.items()},
                            "parameters": replenishment_parameters(fit_k)}
                           for segment, fit_k in zip(fit.segment_frames, fit.segments)]
    if roi.clipping is not None:
        out["clipping"] = {"saturated_fraction": roi.clipping.saturated_fraction,
                           "floor_fraction": roi.clipping.floor_fraction}
    return out


def read_any_clip(path: str, frame_rate_hz: float | None = None,
                  pixel_spacing_mm: float | tuple[float, float] | None = None) -> Clip:
    """A DICOM clip (file or folder) or a video export (by its extension)."""
    from DCEUSResponseLib.io.video import is_video_file, read_video_clip

    if is_video_file(path):
        return read_video_clip(path, frame_rate_hz=frame_rate_hz, pixel_spacing_mm=pixel_spacing_mm)
    from DCEUSResponseLib.io.dicom_us import read_clip

    clip = read_clip(path, frame_rate_hz=frame_rate_hz)
    if pixel_spacing_mm is not None:
        if any(region.spacing_mm for region in clip.regions) or clip.pixel_spacing_mm:
            clip.warnings.append("--pixel-spacing ignored: the file carries its own calibration")
        else:
            spacing = (pixel_spacing_mm, pixel_spacing_mm) if np.isscalar(pixel_spacing_mm) else pixel_spacing_mm
            clip.pixel_spacing_mm = (float(spacing[0]), float(spacing[1]))
    return clip


def analyze_files(clip_path: str, roi_specs: Sequence[str], options: AnalysisOptions,
                  frame_rate_hz: float | None = None,
                  pixel_spacing_mm: float | tuple[float, float] | None = None) -> Analysis:
    """Read ``clip_path`` and the ``--roi`` specs, then :func:`analyze`."""
    check_options(options)
    clip = read_any_clip(clip_path, frame_rate_hz, pixel_spacing_mm)
    rois = read_roi_masks(roi_specs, (clip.rows, clip.columns), clip.frame_spacing_mm)
    return analyze(clip, rois, options)


def check_options(options: AnalysisOptions) -> None:
    """Option errors that need no clip, raised before any file is read."""
    check_dynamic_range(options.dynamic_range_db)
    if options.model != REPLENISHMENT:
        get_model(options.model)
    if options.maps and options.model == REPLENISHMENT:
        raise InputError("--maps needs a bolus model (lognormal, gamma, ldrw, fpt), not replenishment")
    if options.map_binning < 1:
        raise InputError(f"--map-binning must be 1 or more, got {options.map_binning}")


def analyze(clip: Clip, rois: Sequence[RoiMask], options: AnalysisOptions, progress=None) -> Analysis:
    """Quantify every ROI of ``clip``; ``rois`` are full-frame masks on the reference frame.

    ``progress``, if given, is called with a short description before each step (the Slicer module
    shows it and may raise from it to cancel).
    """
    report = progress or (lambda step: None)
    check_options(options)
    _check_rois_and_frames(clip, rois, options)

    report("finding the display panels")
    layout = find_layout(clip)
    warnings = list(clip.warnings) + list(layout.warnings)
    panel_rois = place_on_contrast_panel(rois, layout)
    mapping = choose_colour_mapping(clip, layout.contrast.slices, options.colour_table)
    times_s = clip.frame_times_s - options.injection_time_s

    contrast_gray = bmode_gray = None
    if options.motion_compensation or options.frame_quality_control:
        contrast_gray = panel_gray_uint8(clip, layout.contrast.slices, mapping)
        if layout.bmode is not None:
            try:
                bmode_mapping = choose_colour_mapping(clip, layout.bmode.slices)
            except InputError:
                bmode_mapping = ColourMapping("gray")
            bmode_gray = panel_gray_uint8(clip, layout.bmode.slices, bmode_mapping)

    motion = None
    if options.motion_compensation:
        report("estimating breathing motion")
        motion = _estimate_motion(clip, layout, contrast_gray, bmode_gray, options.reference_frame)
        warnings.extend(motion.warnings)

    report("checking frame quality")
    excluded, flash_frames = _excluded_frames(clip, options, contrast_gray, bmode_gray, motion, warnings)
    from DCEUSResponseLib.ceus.quality import frames_to_use

    frame_use = frames_to_use(clip.n_frames, excluded)
    if not np.any(frame_use):
        raise InputError("every frame is excluded (frame quality control and --exclude-frames); nothing to fit",
                         clip.source)

    results: dict[str, RoiResult] = {}
    parameter_names = PARAMETER_NAMES
    segments = None
    if options.model == REPLENISHMENT:
        from DCEUSResponseLib.kinetics.replenishment import (
            REPLENISHMENT_PARAMETER_NAMES,
            segments_after_flashes,
        )

        parameter_names = REPLENISHMENT_PARAMETER_NAMES
        if not flash_frames:
            raise InputError("no flash found for --model replenishment; give the flash frames with --flash-frames",
                             clip.source)
        segments = segments_after_flashes(times_s, flash_frames, frame_use)
    for roi in panel_rois:
        report(f"fitting ROI {roi.name}")
        tic, clipping = _roi_tic(clip, layout, mapping, options.dynamic_range_db, roi.mask, motion, frame_use)
        warnings.extend(_clipping_warnings(roi.name, clipping))
        if segments is not None:
            fit = _fit_replenishment(times_s, tic, segments)
            from DCEUSResponseLib.kinetics.replenishment import replenishment_parameters

            parameters = _mean_parameters([replenishment_parameters(f) for f in fit.segments], parameter_names)
        else:
            fit = fit_bolus(times_s, tic, options.model, use=frame_use)
            parameters = bolus_parameters(options.model, fit.params, fit.qof) if fit.status == "ok" else \
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

    maps = None
    if options.maps:
        report("computing parametric maps")
        maps = _parametric_maps(clip, layout, mapping, options, times_s, frame_use, motion, panel_rois)
    return Analysis(clip, layout, options, mapping, times_s, frame_use, results, warnings, motion, excluded, maps,
                    tuple(parameter_names), list(rois))


def _check_rois_and_frames(clip: Clip, rois: Sequence[RoiMask], options: AnalysisOptions) -> None:
    if not rois:
        raise InputError("no ROI given (--roi NAME=MASK)", clip.source)
    names = [roi.name for roi in rois]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise InputError(f"duplicate ROI name {duplicate!r}", clip.source)
    for option, name in (("--reference", options.reference), ("--map-region", options.map_region)):
        if name is not None and name not in names:
            raise InputError(f"{option} {name!r} is not one of the ROIs ({', '.join(names)})", clip.source)
    if not 0 <= options.reference_frame < clip.n_frames:
        raise InputError(f"--reference-frame {options.reference_frame} is outside the clip's frames "
                         f"0..{clip.n_frames - 1}", clip.source)
    if not np.isfinite(options.injection_time_s) or options.injection_time_s >= clip.frame_times_s[-1]:
        raise InputError(f"--injection-time {options.injection_time_s} s is not before the clip's last "
                         f"frame ({clip.frame_times_s[-1]:.2f} s)", clip.source)
    for roi in rois:
        if roi.mask.shape != (clip.rows, clip.columns):
            raise InputError(f"mask of ROI {roi.name!r} is {roi.mask.shape[0]} x {roi.mask.shape[1]} pixels "
                             f"but the frames are {clip.rows} x {clip.columns}", roi.source)


def _estimate_motion(clip: Clip, layout: DisplayLayout, contrast_gray: np.ndarray, bmode_gray: np.ndarray | None,
                     reference_frame: int):
    """Motion on the B-mode panel of a dual display (anatomy visible throughout), else on the contrast panel."""
    from DCEUSResponseLib.ceus.motion import estimate_motion

    panel, kind = (bmode_gray, "bmode") if bmode_gray is not None else (contrast_gray, "contrast")
    return estimate_motion(panel, reference_frame, kind=kind, spacing_mm=layout.contrast.spacing_mm)


def _excluded_frames(clip, options, contrast_gray, bmode_gray, motion, warnings):
    """Frames kept out of the fits (one ExcludedFrame each, in frame order) and the flash frames."""
    from DCEUSResponseLib.ceus.quality import (
        ExcludedFrame,
        detect_bad_frames,
        parse_frame_ranges,
    )

    found = {}
    if options.frame_quality_control:
        for excluded in detect_bad_frames(contrast_gray, clip.frame_times_s, bmode_gray=bmode_gray, motion=motion):
            found[excluded.frame] = excluded
    detected_flashes = sorted(k for k, e in found.items() if e.reason == "flash")
    flash_frames = detected_flashes
    if options.flash_frames is not None:
        flash_frames = parse_frame_ranges(options.flash_frames, clip.n_frames, "--flash-frames")
        for k in flash_frames:
            found[k] = ExcludedFrame(k, "flash", "flash frame given with --flash-frames")
    if flash_frames and options.model != REPLENISHMENT:
        # A flash destroys the bubbles: after it the bolus curve no longer holds.
        after = range(flash_frames[0] + 1, clip.n_frames)
        for k in after:
            found.setdefault(k, ExcludedFrame(k, "after_flash", f"after the flash at frame {flash_frames[0]}"))
        warnings.append(f"flash (destruction) frames at {_ranges(flash_frames)}: the bolus is fitted up to the "
                        "first flash; if this is a destruction-replenishment study, use --model replenishment")
    for k in parse_frame_ranges(options.exclude_frames, clip.n_frames, "--exclude-frames"):
        found.setdefault(k, ExcludedFrame(k, "user", "excluded with --exclude-frames"))
    if options.reference_frame in found and found[options.reference_frame].reason != "user":
        warnings.append(f"the reference frame {options.reference_frame} is itself excluded "
                        f"({found[options.reference_frame].reason}); draw the ROIs on a good frame")
    return [found[k] for k in sorted(found)], flash_frames


def _ranges(frames: Sequence[int]) -> str:
    runs, start = [], None
    for index, frame in enumerate(frames):
        if start is None:
            start = frame
        if index + 1 == len(frames) or frames[index + 1] != frame + 1:
            runs.append(f"{start}-{frame}" if frame != start else f"{frame}")
            start = None
    return ",".join(runs)


def _roi_tic(clip: Clip, layout: DisplayLayout, mapping: ColourMapping, dynamic_range_db: float,
             panel_mask: np.ndarray, motion, frame_use: np.ndarray) -> tuple[np.ndarray, ClippingCount]:
    """The ROI's TIC (moving with the anatomy when motion is given) and its clipping counts.

    Only the ROI's bounding box (plus the largest displacement) is linearised, so memory follows
    the ROI's size, not the clip's.
    """
    rows, columns = np.nonzero(panel_mask)
    margin = 0
    if motion is not None:
        margin = int(math.ceil(float(np.max(np.abs(motion.displacement_px))))) + 1
    panel = layout.contrast
    r0, r1 = max(rows.min() - margin, 0), min(rows.max() + 1 + margin, panel.rows)
    c0, c1 = max(columns.min() - margin, 0), min(columns.max() + 1 + margin, panel.columns)
    frames = clip.frames[:, panel.y0 + r0:panel.y0 + r1, panel.x0 + c0:panel.x0 + c1]
    gray = gray_levels(frames, clip, mapping)
    linear = linear_from_gray(gray, dynamic_range_db)
    mask = panel_mask[r0:r1, c0:c1]
    if motion is not None:
        from DCEUSResponseLib.ceus.motion_sampling import motion_compensated_tic

        tic = motion_compensated_tic(linear, mask, motion.displacement_px)
    else:
        tic = time_intensity_curve(linear, mask)
    return tic, count_clipping(gray, mask, frame_use)


def _fit_replenishment(times_s: np.ndarray, tic: np.ndarray, segments) -> SegmentedFit:
    from DCEUSResponseLib.kinetics.replenishment import fit_segments

    fits = fit_segments(times_s, tic, segments)
    fitted = [f for f in fits if f.ok]
    if fitted:
        status, reason = "ok", None
        if len(fitted) < len(fits):
            reason = f"{len(fitted)} of {len(fits)} segments fitted"
        params = {name: float(np.mean([f.params[name] for f in fitted])) for name in fitted[0].params}
        qof = float(np.mean([f.qof for f in fitted]))
    else:
        status, reason, params, qof = fits[0].status, fits[0].reason, {}, None
    return SegmentedFit(REPLENISHMENT, status, reason, params, qof, sum(f.n_frames_used for f in fits), fits,
                        list(segments))


def _mean_parameters(per_segment: list[dict], names: Sequence[str]) -> dict[str, float | None]:
    """Mean of each parameter over the segments where it is defined (None where none is)."""
    out = {}
    for name in names:
        values = [p[name] for p in per_segment if p.get(name) is not None]
        out[name] = float(np.mean(values)) if values else None
    return out


def _parametric_maps(clip, layout, mapping, options, times_s, frame_use, motion, panel_rois):
    from DCEUSResponseLib.ceus.maps import compute_parametric_maps

    region = None
    if options.map_region is not None:
        region = next(roi.mask for roi in panel_rois if roi.name == options.map_region)
    return compute_parametric_maps(clip, layout, mapping, options.dynamic_range_db, times_s, frame_use,
                                   model=options.model, binning=options.map_binning, region_mask=region,
                                   displacement_px=None if motion is None else motion.displacement_px)


def _clipping_warnings(name: str, clipping: ClippingCount) -> list[str]:
    out = []
    if clipping.saturated_fraction > SATURATION_WARNING_FRACTION:
        out.append(f"ROI {name!r}: {100 * clipping.saturated_fraction:.1f} % of samples are saturated "
                   "(gray 255): peak intensities are underestimated; lower the gain or raise the dynamic range")
    if clipping.floor_fraction > FLOOR_WARNING_FRACTION:
        out.append(f"ROI {name!r}: {100 * clipping.floor_fraction:.1f} % of samples are at the display floor "
                   "(gray 0): low intensities are overestimated; raise the gain")
    return out
