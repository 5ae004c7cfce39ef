"""The analysis of one clip: motion, frame quality, TICs, fits, parameters and maps.

:func:`analyze` works on objects in memory (the Slicer module calls it); :func:`analyze_files`
reads the clip and mask files first (the command line calls it). Both return the typed result,
:class:`~DCEUSResponseLib.ceus.results.Analysis`; neither writes anything (see
:mod:`DCEUSResponseLib.export.contract`).

Steps: find the panels; place the ROIs on the contrast panel; estimate breathing motion (on the
B-mode panel of a dual display, else on the contrast panel); find frames to exclude (dropout,
out-of-plane, duplicate, flash, and the user's); sample each ROI's TIC with the ROI moving with the
anatomy; fit the bolus model (or, for destruction-replenishment studies, one replenishment per
post-flash segment); report the contract's parameters, relative values and optionally maps.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from DCEUSResponseLib.ceus.layout import DisplayLayout, find_layout
from DCEUSResponseLib.ceus.linearize import (
    DEFAULT_DYNAMIC_RANGE_DB,
    ClippingCount,
    ColourMapping,
    check_dynamic_range,
    choose_colour_mapping,
    count_clipping,
    gray_levels,
    gray_lookup,
    linear_from_gray,
    panel_gray_uint8,
    saturation_threshold,
    stored_clipping,
)
from DCEUSResponseLib.ceus.maps import compute_parametric_maps
from DCEUSResponseLib.ceus.pixel_fits import BIN_SECONDS
from DCEUSResponseLib.ceus.motion import estimate_motion
from DCEUSResponseLib.ceus.motion_sampling import motion_compensated_tic
from DCEUSResponseLib.ceus.options import AnalysisOptions
from DCEUSResponseLib.ceus.quality import (
    ExcludedFrame,
    detect_bad_frames,
    frames_to_use,
    parse_frame_ranges,
)
from DCEUSResponseLib.ceus.results import Analysis, RoiResult
from DCEUSResponseLib.ceus.tic import place_on_contrast_panel, time_intensity_curve
from DCEUSResponseLib.clip import Clip, RoiMask
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.clips import read_any_clip
from DCEUSResponseLib.io.masks import read_roi_masks
from DCEUSResponseLib.io.timing import MAX_CLIP_DURATION_S
from DCEUSResponseLib.kinetics.base import STATUS_OK, ClipFrames
from DCEUSResponseLib.kinetics.bolus import MIN_USABLE_FRAMES
from DCEUSResponseLib.kinetics.parameters import relative_extrapolated, relative_parameters
from DCEUSResponseLib.kinetics.registry import get_family, model_choices

#: An ROI of fewer pixels is warned about. Spread of PE over speckle realisations of one synthetic
#: lesion (standard deviation / mean): 9 pixels 11 % (the clip's speckle redrawn in the ROI only) to
#: 30 % (the whole clip redrawn), 25 pixels 20 % (WiR 41 %); the threshold keeps the warning for ROIs
#: whose values no reading should rest on alone.
FEW_ROI_PIXELS = 50
#: Warn when more than this fraction of an ROI's pixels is saturated in one frame (PE about as much low),
SATURATION_WARNING_FRACTION = 0.02
#: and when more than this fraction of its samples sits at the display floor.
FLOOR_WARNING_FRACTION = 0.05


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
    if options.dynamic_range_db is not None:
        check_dynamic_range(options.dynamic_range_db)
    if not -MAX_CLIP_DURATION_S <= options.injection_time_s <= MAX_CLIP_DURATION_S:  # NaN fails too
        raise InputError(f"--injection-time {options.injection_time_s} s is not a clip time: it must lie within "
                         f"{MAX_CLIP_DURATION_S / 3600:g} h of the first frame")
    family = get_family(options.model)
    if options.maps and not family.supports_maps:
        raise InputError(f"--maps needs a model with maps ({', '.join(model_choices(maps=True))}), "
                         f"not {options.model}")
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
    layout = find_layout(clip, options.contrast_region)
    warnings = list(clip.warnings) + list(layout.warnings)
    if options.dynamic_range_source == "default":
        warnings.append(dynamic_range_default_warning())
    panel_rois = place_on_contrast_panel(rois, layout)
    mapping = choose_colour_mapping(clip, layout.contrast.slices, options.colour_table, warnings)
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
    frame_use = frames_to_use(clip.n_frames, excluded)
    if not np.any(frame_use):
        raise InputError("every frame is excluded (frame quality control and --exclude-frames); nothing to fit",
                         clip.source)

    results: dict[str, RoiResult] = {}
    family = get_family(options.model)
    prepared = family.prepare(ClipFrames(times_s, frame_use, tuple(flash_frames)), clip.source)
    for roi in panel_rois:
        report(f"fitting ROI {roi.name}")
        tic, clipping = _roi_tic(clip, layout, mapping, options.resolved_dynamic_range_db, roi.mask, motion, frame_use)
        warnings.extend(_clipping_warnings(roi.name, clipping, is_reference=roi.name == options.reference))
        pixels = int(np.count_nonzero(roi.mask))
        if pixels < FEW_ROI_PIXELS:
            warnings.append(f"ROI {roi.name!r} has only {pixels} pixels (fewer than {FEW_ROI_PIXELS}): speckle is "
                            "barely averaged, so its values can vary by tens of per cent between acquisitions "
                            "(wash-in rate and rise time most); draw it larger if the lesion allows")
        fit = family.fit(options.model, prepared, tic)
        parameters = family.parameters(options.model, fit)
        extrapolated = family.extrapolated(options.model, fit)
        if extrapolated:
            warnings.append(extrapolation_warning(roi.name, extrapolated, fit))
        results[roi.name] = RoiResult(roi.name, pixels, tic, fit, parameters,
                                      clipping=clipping, extrapolated=extrapolated)
    if options.reference is not None:
        reference = results[options.reference]
        if reference.fit.status != STATUS_OK:
            warnings.append(f"reference ROI {options.reference!r} is {reference.fit.status}: relative values "
                            "are undefined")
        for roi in results.values():
            roi.relative = relative_parameters(roi.parameters, reference.parameters)
            roi.relative_extrapolated = relative_extrapolated(roi.relative, roi.extrapolated, reference.extrapolated)
        if reference.fit.status == STATUS_OK and reference.extrapolated:
            warnings.append(f"reference ROI {options.reference!r}: {', '.join(reference.extrapolated)} are extrapolated, "
                            "so every ROI's relative values of them are too (see 'relative_extrapolated' in "
                            "results.json)")

    maps = None
    if options.maps:
        report("computing parametric maps")
        maps = _parametric_maps(clip, layout, mapping, options, times_s, frame_use, motion, panel_rois)
        fitted = int(np.count_nonzero(maps.status == 0))
        beyond = [f"{name} {count}" for name, count in maps.extrapolated.items() if count]
        if beyond:
            warnings.append(f"maps: pixels whose parameter is extrapolated beyond the fitted frames are left out "
                            f"(NaN) of that map, of {fitted} fitted: {', '.join(beyond)}")
    return Analysis(clip, layout, options, mapping, times_s, frame_use, results, warnings, motion, excluded, maps,
                    tuple(family.parameter_names), list(rois))


def dynamic_range_default_warning() -> str:
    """The warning of an analysis that assumes the default dynamic range."""
    return (f"no --dynamic-range given: assuming {DEFAULT_DYNAMIC_RANGE_DB:g} dB; every value (relative ones "
            "too) depends on it, so give the scanner's display dynamic range")


def extrapolation_warning(name: str, extrapolated: Sequence[str], fit) -> str:
    """The warning of an ROI whose ``extrapolated`` parameters lean on the curve beyond its fitted frames."""
    span = getattr(fit, "fitted_span_s", None)
    gaps = getattr(fit, "fitted_gaps_s", ())
    holes = ", no fitted frame " + ", ".join(f"from {start:.1f} to {end:.1f} s" for start, end in gaps) if gaps else ""
    where = f" ({span[0]:.1f} to {span[1]:.1f} s since injection{holes})" if span else ""
    return (f"ROI {name!r}: {', '.join(extrapolated)} depend on the fitted curve outside the fitted frames"
            f"{where}: extrapolated, not measured (see 'extrapolated' in results.json)")


def _check_rois_and_frames(clip: Clip, rois: Sequence[RoiMask], options: AnalysisOptions) -> None:
    if clip.n_frames < MIN_USABLE_FRAMES:
        # The one minimum of the analysis: the frames a bolus fit needs (kinetics.bolus).
        raise InputError(f"holds {clip.n_frames} frames; a time-intensity curve fit needs at least "
                         f"{MIN_USABLE_FRAMES} frames", clip.source)
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
    panel, kind = (bmode_gray, "bmode") if bmode_gray is not None else (contrast_gray, "contrast")
    return estimate_motion(panel, reference_frame, kind=kind, spacing_mm=layout.contrast.spacing_mm)


def _excluded_frames(clip, options, contrast_gray, bmode_gray, motion, warnings):
    """Frames kept out of the fits (one ExcludedFrame each, in frame order) and the flash frames."""
    found = {}
    if options.frame_quality_control:
        notes = []
        for excluded in detect_bad_frames(contrast_gray, clip.frame_times_s, bmode_gray=bmode_gray, motion=motion,
                                          notes=notes):
            found[excluded.frame] = excluded
        warnings.extend(f"frame QC: {note}" for note in notes)
    detected_flashes = sorted(k for k, e in found.items() if e.reason == "flash")
    flash_frames = detected_flashes
    if options.flash_frames is not None:
        flash_frames = parse_frame_ranges(options.flash_frames, clip.n_frames, "--flash-frames")
        for k in flash_frames:
            found[k] = ExcludedFrame(k, "flash", "flash frame given with --flash-frames")
    if flash_frames and get_family(options.model).flash_ends_curve:
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

    When one stored value gives one gray (grey and palette clips) only the ROI's own pixels are
    linearised, frame by frame, through a lookup table; otherwise (colour) the ROI's bounding box
    (plus the largest displacement). Memory follows the ROI's size, not the clip's.
    """
    rows, columns = np.nonzero(panel_mask)
    margin = 0
    if motion is not None:
        margin = int(math.ceil(float(np.max(np.abs(motion.displacement_px))))) + 1
    panel = layout.contrast
    r0, r1 = max(rows.min() - margin, 0), min(rows.max() + 1 + margin, panel.rows)
    c0, c1 = max(columns.min() - margin, 0), min(columns.max() + 1 + margin, panel.columns)
    frames = clip.frames[:, panel.y0 + r0:panel.y0 + r1, panel.x0 + c0:panel.x0 + c1]
    mask = panel_mask[r0:r1, c0:c1]
    table = gray_lookup(clip, mapping, frames.dtype) if frames.ndim == 3 else None
    if table is not None:
        shifts = motion.displacement_px if motion is not None else np.zeros((clip.n_frames, 2))
        lookup = linear_from_gray(table, dynamic_range_db)
        return (motion_compensated_tic(frames, mask, shifts, lookup=lookup),
                stored_clipping(frames, table, mask, frame_use, saturation_threshold(clip, mapping)))
    gray = gray_levels(frames, clip, mapping)  # colour: the gray depends on the three channels
    linear = linear_from_gray(gray, dynamic_range_db)
    clipping = count_clipping(gray, mask, frame_use, saturation_threshold(clip, mapping))
    if motion is not None:
        tic = motion_compensated_tic(linear, mask, motion.displacement_px)
    else:
        tic = time_intensity_curve(linear, mask)
    return tic, clipping


def _parametric_maps(clip, layout, mapping, options, times_s, frame_use, motion, panel_rois):
    # The maps fit frame bins of BIN_SECONDS: as many bins as a fit needs frames, or no bolus to map.
    used = np.asarray(times_s)[frame_use]
    span_s = float(used[-1] - used[0])
    if span_s < MIN_USABLE_FRAMES * BIN_SECONDS:
        raise InputError(f"--maps needs fitted frames spanning at least {MIN_USABLE_FRAMES * BIN_SECONDS:g} s "
                         f"({MIN_USABLE_FRAMES} bins of {BIN_SECONDS:g} s); this clip's span {span_s:.2f} s",
                         clip.source)
    region = None
    if options.map_region is not None:
        region = next(roi.mask for roi in panel_rois if roi.name == options.map_region)
    return compute_parametric_maps(clip, layout, mapping, options.resolved_dynamic_range_db, times_s, frame_use,
                                   model=options.model, binning=options.map_binning, region_mask=region,
                                   displacement_px=None if motion is None else motion.displacement_px)


def _clipping_warnings(name: str, clipping: ClippingCount, is_reference: bool = False) -> list[str]:
    out = []
    if clipping.peak_saturated_fraction > SATURATION_WARNING_FRACTION:
        # The reference divides every relative value: its underestimate is the others' overestimate.
        relative = (", and every ROI's values relative to this reference ROI are overestimated by about as much"
                    if is_reference else "")
        out.append(f"ROI {name!r}: up to {100 * clipping.peak_saturated_fraction:.1f} % of its pixels are saturated "
                   f"(at the top of the display scale) in a frame ({100 * clipping.saturated_fraction:.1f} % of all "
                   f"samples): PE and the values built on it are underestimated by about as much{relative}; lower "
                   "the gain or raise the dynamic range")
    if clipping.floor_fraction > FLOOR_WARNING_FRACTION:
        out.append(f"ROI {name!r}: {100 * clipping.floor_fraction:.1f} % of samples are at the display floor "
                   "(gray 0): low intensities are overestimated; raise the gain")
    return out
