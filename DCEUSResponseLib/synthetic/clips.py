"""Synthetic CEUS clips with known perfusion: the ground truth of the tests and the demo study.

A clip is built the way a scanner forms it: every tissue region has a true mean echo power
O + e(t) with a lognormal bolus e(t); a complex Gaussian scattering field blurred by a Gaussian
point-spread function gives fully developed, spatially correlated speckle (exponentially
distributed power, fresh every frame because microbubbles move); the power is log-compressed over
the display's dynamic range into 8-bit gray levels, optionally tinted through a gold colour map, and
placed in a single display or a dual display beside a static B-mode panel.

Optional degradations of a real free-breathing exam, each with its exact truth recorded: breathing
motion of the whole anatomy (sub-pixel, both panels), probe-contact dropouts, duplicated frames and
destruction flashes followed by replenishment. With none of them requested the output is exactly what
it was before they existed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from DCEUSResponseLib.clip import UltrasoundRegion
from DCEUSResponseLib.kinetics.parameters import bolus_parameters
from DCEUSResponseLib.synthetic.dicom_us import write_ultrasound_multiframe
from DCEUSResponseLib.synthetic.panels import (
    DISPLAY_COLOUR_MAPS,
    GOLD_TINT,
    PIXEL_SPACING_MM,
    black_out,
    burn_in_colour_bar,
    display_colour_map,
    sector_mask,
    bmode_panel,
    burn_in_annotations,
    coverage,
    frame_layout,
    log_compress,
    moving_bmode_panel,
    speckle,
)

# Mean echo power (a.u.) of the contrast panel during a destruction flash: 3x the display's full
# scale, so that ~3/4 of the speckle saturates at gray 255 (the flash blooms the whole image).
FLASH_POWER = 3.0
# Replenishment rate beta (1/s) after a flash, e(t) (1 - exp(-beta (t - t_flash))): a typical
# liver parenchyma value (Wei et al. 1998 report 0.1 to 1 /s), refilling ~90 % within 5 s.
REPLENISHMENT_RATE_PER_S = 0.5


@dataclass(frozen=True)
class PerfusionRegion:
    """A disk or ring of tissue (panel pixel coordinates) with a lognormal bolus.

    ``params`` are the contract's lognormal parameters: ``O`` baseline and ``A`` area (a.u. and
    a.u. s), ``t0`` arrival (s after injection), ``mu``, ``sigma``. ``A = 0`` is tissue without
    enhancement (necrosis). ``echogenicity`` is the B-mode brightness relative to liver.
    ``roi_margin_px`` shrinks the region into its ROI so that speckle blur at the border stays out.
    """

    name: str
    center: tuple[float, float]
    radius: float
    params: dict
    inner_radius: float = 0.0
    echogenicity: float = 1.0
    roi_margin_px: float = 4.0
    is_background: bool = False

    def mask(self, shape: tuple[int, int], margin: float = 0.0) -> np.ndarray:
        rows, columns = np.mgrid[0:shape[0], 0:shape[1]]
        distance = np.hypot(rows - self.center[0], columns - self.center[1])
        inner = self.inner_radius + margin if self.inner_radius > 0 else -1.0
        return (distance <= self.radius - margin) & (distance > inner)


def liver(params: dict | None = None) -> dict:
    """Lognormal parameters of normal liver parenchyma (portal-venous dominated, late and long)."""
    return dict(params or {"O": 3e-4, "A": 0.40, "t0": 12.0, "mu": np.log(25.0), "sigma": 0.6})


def default_regions(panel_shape: tuple[int, int]) -> list[PerfusionRegion]:
    """Liver background with a reference ROI, a hypervascular metastasis and a necrotic lesion."""
    rows, columns = panel_shape
    return [
        PerfusionRegion("liver", (rows * 0.70, columns * 0.30), min(rows, columns) * 0.18, liver(),
                        is_background=True),
        PerfusionRegion("lesion", (rows * 0.38, columns * 0.62), min(rows, columns) * 0.16,
                        {"O": 3e-4, "A": 0.33, "t0": 8.0, "mu": np.log(10.0), "sigma": 0.5},
                        echogenicity=0.6),
        PerfusionRegion("necrosis", (rows * 0.72, columns * 0.75), min(rows, columns) * 0.10,
                        {"O": 3e-4, "A": 0.0, "t0": 10.0, "mu": np.log(10.0), "sigma": 0.5},
                        echogenicity=0.35),
    ]


@dataclass
class SyntheticClip:
    """A generated clip with everything needed to check an analysis of it.

    ``roi_masks`` are full-frame masks (on the B-mode panel of a dual display unless
    ``rois_on_contrast``) drawn on ``reference_frame``, ``truth`` the lognormal parameters of each
    ROI (time 0 = injection). ``motion_px`` is the true (N, 2) (row, column) displacement in pixels of
    the anatomy in each frame relative to ``reference_frame`` (content at reference pixel p is at
    p + d), or None for a still clip; a duplicated frame carries the displacement of the frame it
    copies. ``dropout_frames``, ``duplicate_frames`` and ``flash_frames`` list the injected bad frames.
    After a flash the truth no longer describes the curve (the bubbles were destroyed).
    """

    frames: np.ndarray
    frame_times_s: np.ndarray
    regions: list[UltrasoundRegion]
    roi_masks: dict[str, np.ndarray]
    truth: dict[str, dict]
    dynamic_range_db: float
    injection_time_s: float
    display: str
    colour: str
    contrast_region: UltrasoundRegion
    bmode_region: UltrasoundRegion | None
    spacing_mm: tuple[float, float] = (PIXEL_SPACING_MM, PIXEL_SPACING_MM)
    notes: list[str] = field(default_factory=list)
    motion_px: np.ndarray | None = None
    reference_frame: int = 0
    dropout_frames: list[int] = field(default_factory=list)
    duplicate_frames: list[int] = field(default_factory=list)
    flash_frames: list[int] = field(default_factory=list)


def lognormal_enhancement(t: np.ndarray, params: dict) -> np.ndarray:
    """e(t) of the contract's lognormal (a.u.), zero for t <= t0."""
    tau = np.asarray(t, dtype=np.float64) - params["t0"]
    out = np.zeros_like(tau)
    positive = tau > 0
    if params["A"] == 0 or not np.any(positive):
        return out
    log_tau = np.log(tau[positive])
    out[positive] = params["A"] / (np.sqrt(2 * np.pi) * params["sigma"] * tau[positive]) * np.exp(
        -(log_tau - params["mu"]) ** 2 / (2 * params["sigma"] ** 2))
    return out


def make_frame_times(n_frames: int, frame_interval_s: float, jitter: float = 0.0,
                     rng: np.random.Generator | None = None) -> np.ndarray:
    """Frame times (s, first 0): regular, or each interval scaled by 1 + U(-jitter, jitter)."""
    if jitter <= 0:
        return np.arange(n_frames) * frame_interval_s
    rng = rng or np.random.default_rng(0)
    intervals = frame_interval_s * (1.0 + rng.uniform(-jitter, jitter, n_frames - 1))
    return np.concatenate([[0.0], np.cumsum(intervals)])


def breathing_motion(times_s: np.ndarray, amplitude_px: float, period_s: float,
                     direction: tuple[float, float] = (1.0, 0.0), phase_s: float = 0.0) -> np.ndarray:
    """Sinusoidal breathing displacement (N, 2) in pixels (row, column) at ``times_s`` (s).

    ``amplitude_px * sin(2 pi (t - phase_s) / period_s)`` along ``direction`` (row, column; scaled to
    unit length), so the anatomy swings by +-``amplitude_px`` and is at rest position at ``phase_s``.
    """
    times = np.asarray(times_s, dtype=np.float64)
    unit = np.asarray(direction, dtype=np.float64)
    if unit.shape != (2,) or not np.any(unit):
        raise ValueError(f"direction must be a non-zero (row, column) pair, not {direction!r}")
    if not period_s > 0:
        raise ValueError(f"period_s must be positive, not {period_s!r}")
    unit = unit / np.hypot(*unit)
    swing = amplitude_px * np.sin(2.0 * np.pi * (times - phase_s) / period_s)
    return swing[:, None] * unit[None, :]


def make_clip(  # long: one pass over the clip's physics (timing, motion, power, speckle, display, bad frames)
              regions: Sequence[PerfusionRegion] | None = None, *, panel_shape: tuple[int, int] = (160, 200),
              n_frames: int = 160, frame_interval_s: float = 0.75, jitter: float = 0.0,
              dynamic_range_db: float = 50.0, display: str = "single", contrast_side: str = "right",
              colour: str = "gray", speckle_sigma_px: float = 1.0, injection_time_s: float = 0.0,
              gain: float = 1.0, rois_on_contrast: bool = False, seed: int = 0,
              motion_px: np.ndarray | Callable[[float], Sequence[float]] | None = None,
              reference_frame: int = 0, dropout_frames: Sequence[int] = (),
              duplicate_frames: Sequence[int] = (), flash_frames: Sequence[int] = (),
              replenishment_rate_per_s: float = REPLENISHMENT_RATE_PER_S, colour_bar: bool = False,
              sector: bool = False) -> SyntheticClip:
    """Generate a CEUS clip (8-bit display values) with known lognormal perfusion per region.

    ``gain`` scales every region's echo power (O and A), as a different dose or receive gain does.
    ``colour`` is ``"gray"``, ``"gold"`` (contrast panel tinted with :data:`GOLD_TINT`, RGB frames) or
    one of :data:`DISPLAY_COLOUR_MAPS` (contrast panel through :func:`display_colour_map`, RGB).
    ``colour_bar`` burns the contrast panel's map in as a vertical bar (10 pixels wide, the panel's
    height, gray 0 at the bottom) in the frame's right border. ``sector`` blacks out both panels
    outside a scan sector (apex above the panel's top centre, +-40 degrees): no signal there.

    Degradations (all off by default; the clip is then bit-identical to earlier versions):

    * ``motion_px``: displacement of the whole anatomy (both panels) in pixels (row, column), an
      (N, 2) array or a function of the clip time (s) returning a pair; see :func:`breathing_motion`.
      Regions are drawn at their shifted centres with partial-volume (anti-aliased) edges and the
      static B-mode tissue speckle is moved by an exact Fourier shift of its complex field on a padded
      canvas, so sub-pixel motion is rendered faithfully. ROI masks are drawn on ``reference_frame``
      and ``SyntheticClip.motion_px`` is the displacement relative to that frame.
    * ``dropout_frames``: probe contact lost, both panels nearly black (electronic noise only).
    * ``duplicate_frames``: frame k is an exact copy of frame k - 1 (k >= 1).
    * ``flash_frames``: destruction flash, the contrast panel near saturation (mean power
      :data:`FLASH_POWER`); afterwards every region's enhancement restarts from its baseline and
      replenishes as ``O + e(t) (1 - exp(-beta (t - t_flash)))``, beta = ``replenishment_rate_per_s``.

    Dropout noise has its own random stream, so all other frames equal the clean clip's (except,
    after a flash, the contrast panel, which replenishes).
    """
    rng = np.random.default_rng(seed)
    regions = list(regions) if regions is not None else default_regions(panel_shape)
    regions = [replace(r, params={**r.params, "O": r.params["O"] * gain, "A": r.params["A"] * gain})
               for r in regions]
    frame_times = make_frame_times(n_frames, frame_interval_s, jitter, rng)
    model_times = frame_times - injection_time_s
    if not 0 <= reference_frame < n_frames:
        raise ValueError(f"reference_frame {reference_frame} is not a frame index 0..{n_frames - 1}")
    dropouts, duplicates, flashes = _check_bad_frames(n_frames, dropout_frames, duplicate_frames, flash_frames)
    anatomy_px = _anatomy_displacement(motion_px, frame_times)
    enhancement_scale = _replenishment(frame_times, flashes, replenishment_rate_per_s) if flashes else None

    if anatomy_px is None:
        contrast_power = _contrast_power(regions, panel_shape, model_times, enhancement_scale)
    else:
        contrast_power = _moving_contrast_power(regions, panel_shape, model_times, anatomy_px, enhancement_scale)
    for k in flashes:
        contrast_power[k] = FLASH_POWER
    contrast_gray = np.empty((n_frames,) + tuple(panel_shape), dtype=np.uint8)
    for k in range(n_frames):
        speckled = contrast_power[k] * speckle(panel_shape, speckle_sigma_px, rng)
        contrast_gray[k] = log_compress(speckled, dynamic_range_db)

    if sector:
        contrast_gray[:, ~sector_mask(panel_shape)] = 0
    layout = frame_layout(panel_shape, display, contrast_side, wide_border=colour_bar)
    frame_shape, contrast_region, bmode_region = layout
    if colour in DISPLAY_COLOUR_MAPS:
        table = np.round(display_colour_map(colour)).astype(np.uint8)
        frames = np.zeros((n_frames,) + frame_shape + (3,), dtype=np.uint8)
        rows, cols = contrast_region.slices
        frames[:, rows, cols, :] = table[contrast_gray]
    elif colour == "gold":
        frames = np.zeros((n_frames,) + frame_shape + (3,), dtype=np.uint8)
        tint = np.asarray(GOLD_TINT, dtype=np.float64)
        rows, cols = contrast_region.slices
        frames[:, rows, cols, :] = np.round(contrast_gray[..., None] * tint).astype(np.uint8)
    elif colour == "gray":
        frames = np.zeros((n_frames,) + frame_shape, dtype=np.uint8)
        frames[:, contrast_region.slices[0], contrast_region.slices[1]] = contrast_gray
    else:
        raise ValueError(f"colour must be 'gray', 'gold' or one of {DISPLAY_COLOUR_MAPS}, not {colour!r}")
    if bmode_region is not None:
        if anatomy_px is None:
            bmode = bmode_panel(regions, panel_shape, n_frames, speckle_sigma_px, rng)
        else:
            bmode = moving_bmode_panel(regions, panel_shape, speckle_sigma_px, rng, anatomy_px)
        if sector:
            bmode[:, ~sector_mask(panel_shape)] = 0
        rows, cols = bmode_region.slices
        frames[:, rows, cols, ...] = bmode[..., None] if frames.ndim == 4 else bmode
    if colour_bar:
        burn_in_colour_bar(frames, colour, contrast_region, frame_shape)
    if dropouts:
        black_out(frames, dropouts, contrast_region, bmode_region, colour, seed)
    burn_in_annotations(frames)
    for k in duplicates:  # ascending, so a run of duplicates repeats its first frame
        frames[k] = frames[k - 1]

    roi_panel = contrast_region if (bmode_region is None or rois_on_contrast) else bmode_region
    # ROIs are drawn on the reference frame, where the anatomy sits at its displaced position.
    drawn_regions = regions if anatomy_px is None else [
        replace(r, center=(r.center[0] + anatomy_px[reference_frame, 0], r.center[1] + anatomy_px[reference_frame, 1]))
        for r in regions]
    roi_masks, truth = {}, {}
    for region in drawn_regions:
        panel_mask = region.mask(panel_shape, region.roi_margin_px)
        if region.is_background:
            for other in drawn_regions:
                if other is not region:
                    panel_mask &= ~other.mask(panel_shape, -region.roi_margin_px)
        full = np.zeros(frame_shape, dtype=bool)
        full[roi_panel.slices] = panel_mask
        roi_masks[region.name] = full
        truth[region.name] = dict(region.params)
    panels = sorted((r for r in (contrast_region, bmode_region) if r is not None), key=lambda r: r.x0)
    clip = SyntheticClip(frames, frame_times, panels, roi_masks, truth, dynamic_range_db, injection_time_s,
                         display, colour, contrast_region, bmode_region)
    clip.reference_frame = int(reference_frame)
    if anatomy_px is not None:
        relative = anatomy_px - anatomy_px[reference_frame]
        for k in duplicates:
            relative[k] = relative[k - 1]
        clip.motion_px = relative
    clip.dropout_frames, clip.duplicate_frames, clip.flash_frames = dropouts, duplicates, flashes
    if flashes:
        clip.notes.append(f"destruction flash at frame(s) {flashes}: the lognormal truth holds only before "
                          f"frame {flashes[0]}")
    return clip


def _check_bad_frames(n_frames: int, *lists: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
    """Sorted, validated (dropout, duplicate, flash) frame lists; a frame may appear in one list only."""
    checked = []
    for name, frames in zip(("dropout_frames", "duplicate_frames", "flash_frames"), lists):
        values = sorted({int(k) for k in frames})
        lowest = 1 if name == "duplicate_frames" else 0
        if values and (values[0] < lowest or values[-1] >= n_frames):
            raise ValueError(f"{name} must lie in {lowest}..{n_frames - 1}, got {values}")
        checked.append(values)
    every = [k for values in checked for k in values]
    if len(every) != len(set(every)):
        raise ValueError("a frame can be only one of dropout, duplicate or flash")
    return checked[0], checked[1], checked[2]


def _anatomy_displacement(motion_px, frame_times: np.ndarray) -> np.ndarray | None:
    """(N, 2) float displacement of the anatomy per frame from an array or a function of time."""
    if motion_px is None:
        return None
    if callable(motion_px):
        values = np.array([np.asarray(motion_px(float(t)), dtype=np.float64) for t in frame_times])
    else:
        values = np.array(motion_px, dtype=np.float64)
    if values.shape != (frame_times.size, 2) or not np.all(np.isfinite(values)):
        raise ValueError(f"motion_px must give {frame_times.size} finite (row, column) pairs, got shape {values.shape}")
    return values


def _replenishment(frame_times: np.ndarray, flashes: Sequence[int], rate_per_s: float) -> np.ndarray:
    """Fraction of the enhancement present in each frame: 1 before the first flash, refilling after each."""
    scale = np.ones(frame_times.size)
    for k in flashes:
        after = frame_times > frame_times[k]
        scale[after] = 1.0 - np.exp(-rate_per_s * (frame_times[after] - frame_times[k]))
    return scale


def _contrast_power(regions: Sequence[PerfusionRegion], panel_shape, model_times,
                    enhancement_scale: np.ndarray | None = None) -> np.ndarray:
    """True mean echo power (N, rows, columns) of the contrast panel; later regions paint over earlier."""
    label = np.full(panel_shape, -1, dtype=np.int64)
    background = [i for i, r in enumerate(regions) if r.is_background]
    if background:
        label[:] = background[0]
    for index, region in enumerate(regions):
        if not region.is_background:
            label[region.mask(panel_shape)] = index
    curves = _region_curves(regions, model_times, enhancement_scale)
    power = np.empty((len(model_times),) + tuple(panel_shape), dtype=np.float64)
    for index in range(len(regions)):
        where = label == index
        power[:, where] = curves[index][:, None]
    power[:, label < 0] = 1e-9
    return power


def _region_curves(regions: Sequence[PerfusionRegion], model_times, enhancement_scale) -> np.ndarray:
    """(regions, N) true mean echo power O + e(t) (times the replenishment fraction after a flash)."""
    if enhancement_scale is None:
        return np.stack([r.params["O"] + lognormal_enhancement(model_times, r.params) for r in regions])
    return np.stack([r.params["O"] + lognormal_enhancement(model_times, r.params) * enhancement_scale
                     for r in regions])


def _moving_contrast_power(regions: Sequence[PerfusionRegion], panel_shape, model_times,
                           anatomy_px: np.ndarray, enhancement_scale) -> np.ndarray:
    """As :func:`_contrast_power` with the regions displaced by ``anatomy_px[k]`` in frame k and
    partial-volume edges (later regions are composited over earlier ones by their coverage)."""
    curves = _region_curves(regions, model_times, enhancement_scale)
    background = [i for i, r in enumerate(regions) if r.is_background]
    rows, columns = np.mgrid[0:panel_shape[0], 0:panel_shape[1]].astype(np.float64)
    power = np.empty((len(model_times),) + tuple(panel_shape), dtype=np.float64)
    for k in range(len(model_times)):
        frame = np.full(panel_shape, curves[background[0], k] if background else 1e-9)
        for index, region in enumerate(regions):
            if not region.is_background:
                frame += coverage(region, rows, columns, anatomy_px[k]) * (curves[index, k] - frame)
        power[k] = frame
    return power


def truth_parameters(params: dict) -> dict:
    """The contract's parameters of a true lognormal (QOF is not defined for the truth)."""
    return bolus_parameters("lognormal", params, None)


# ----------------------------------------------------------------------------------------------
# Files: DICOM clips, ROI masks and the demo study


def write_clip(clip: SyntheticClip, path: str, *, transfer_syntax: str = "explicit", timing: str = "vector",
               patient_id: str = "DEMO-001", patient_name: str = "Demo^Patient",
               study_date: str = "20260101", study_instance_uid: str | None = None,
               series_description: str = "CEUS liver") -> str:
    """Write ``clip`` as an Ultrasound Multi-frame DICOM file; returns its SOP Instance UID."""
    return write_ultrasound_multiframe(
        path, clip.frames, clip.frame_times_s, photometric="RGB" if clip.frames.ndim == 4 else "MONOCHROME2",
        transfer_syntax=transfer_syntax, timing=timing, regions=clip.regions, patient_id=patient_id,
        patient_name=patient_name, study_instance_uid=study_instance_uid, study_date=study_date,
        series_description=series_description)


def write_roi_masks(clip: SyntheticClip, folder: str, names: Sequence[str] | None = None) -> dict[str, str]:
    """Write each ROI as a PNG mask and all of them as one Slicer segmentation ``rois.seg.nrrd``.

    The segmentation uses the clip's frame geometry (pixel (r, c) at LPS (c dx, r dy, 0) mm).
    Returns ``{name: png path}`` plus ``{"__segmentation__": seg.nrrd path}``.
    """
    import slicerio
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    names = list(names) if names is not None else list(clip.roi_masks)
    paths = {}
    for name in names:
        path = os.path.join(folder, f"{name}.png")
        Image.fromarray(clip.roi_masks[name].astype(np.uint8) * 255).save(path)
        paths[name] = path
    rows, columns = clip.frames.shape[1:3]
    dy, dx = clip.spacing_mm
    ijk_to_lps = np.array([[dx, 0, 0, 0], [0, dy, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    segmentation = slicerio.create_segmentation((columns, rows, 1), ijk_to_lps)
    colours = [(0.9, 0.3, 0.3), (0.3, 0.8, 0.3), (0.3, 0.5, 0.9), (0.9, 0.8, 0.2), (0.7, 0.3, 0.8)]
    for index, name in enumerate(names):
        mask_ijk = clip.roi_masks[name].T[:, :, None]
        slicerio.add_segment(segmentation, mask_ijk, {"id": name, "name": name,
                                                       "color": list(colours[index % len(colours)])})
    seg_path = os.path.join(folder, "rois.seg.nrrd")
    slicerio.write_segmentation(seg_path, segmentation)
    paths["__segmentation__"] = seg_path
    return paths
