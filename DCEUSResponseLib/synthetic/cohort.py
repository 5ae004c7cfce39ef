"""A synthetic trial cohort for ``study``: patients x exams of short clips with known perfusion.

Every patient has normal liver (``liver``, the reference ROI) and two metastases, ``lesion1`` and
``lesion2``, whose bolus area A is scaled per exam (the exam's *scale*; 1 at baseline) while their
shape stays, so every area-like parameter scales with it. Each exam is recorded with its own receive
gain (it scales every region alike and cancels in reference-normalised values). Some exams have a
second injection (gain x 1.1). The truth of each clip is recorded; :func:`relative_change_truth`
gives the reference-normalised change of any parameter vs baseline, as ``study`` computes it from
the exam means.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from DCEUSResponseLib.synthetic.clips import (
    PerfusionRegion,
    liver,
    make_clip,
    truth_parameters,
    write_clip,
    write_roi_masks,
)

LESIONS = ("lesion1", "lesion2")
REFERENCE = "liver"
DYNAMIC_RANGE_DB = 50.0
INJECTION_TIME_S = 2.0
#: Per exam (baseline first) the scale of lesion1 and lesion2 for patterns 0, 1, ... (patients cycle).
SCALE_PATTERNS = (
    {"lesion1": (1.0, 0.45, 0.30, 0.25), "lesion2": (1.0, 0.95, 0.85, 0.90)},
    {"lesion1": (1.0, 0.90, 0.80, 0.85), "lesion2": (1.0, 0.75, 0.40, 0.35)},
)
EXAM_GAINS = (1.0, 1.2, 0.9, 1.1)
EXAM_SPACING_DAYS = 56  # PRRT cycles are about 8 weeks apart
SECOND_INJECTION_GAIN = 1.1
# Fine speckle (a high-frequency probe): more independent speckle cells per ROI, so short clips on a
# small panel still measure each ROI to about 2 %.
SPECKLE_SIGMA_PX = 0.6


@dataclass(frozen=True)
class CohortClip:
    """One clip of the cohort: its manifest cells and the true lognormal parameters of each ROI."""

    patient: str
    exam: str
    date: datetime.date
    injection: int
    clip: str    # relative to the manifest
    rois: str    # the manifest's rois cell
    truth: dict  # ROI -> lognormal parameters (gain applied)


def _regions(panel_shape: tuple[int, int], scales: dict[str, float]) -> list[PerfusionRegion]:
    rows, columns = panel_shape
    size = min(rows, columns)
    return [
        PerfusionRegion(REFERENCE, (rows * 0.72, columns * 0.27), size * 0.23, liver(), is_background=True),
        PerfusionRegion("lesion1", (rows * 0.35, columns * 0.64), size * 0.21,
                        {"O": 3e-4, "A": 0.36 * scales["lesion1"], "t0": 7.0, "mu": np.log(10.0), "sigma": 0.5},
                        echogenicity=0.6),
        PerfusionRegion("lesion2", (rows * 0.74, columns * 0.74), size * 0.18,
                        {"O": 3e-4, "A": 0.26 * scales["lesion2"], "t0": 8.0, "mu": np.log(12.0), "sigma": 0.55},
                        echogenicity=0.7),
    ]


def build_cohort(folder: str, n_patients: int = 2, n_exams: int = 3, repeated: Sequence[tuple[int, int]] = ((0, 0),),
                 panel_shape: tuple[int, int] = (96, 120), n_frames: int = 60, frame_interval_s: float = 1.0,
                 first_date: datetime.date = datetime.date(2024, 1, 8), display: str = "single",
                 reference_frame: int = 0) -> tuple[str, list[CohortClip]]:
    """Write the cohort's clips, ROI masks and ``MANIFEST.csv`` into ``folder``.

    ``repeated`` lists (patient index, exam index) pairs that get a second injection. Patients are
    ``P1, P2, ...``, exams ``B, C2, C4, C6`` (every 56 days). Returns ``(manifest path, clips)``.
    """
    if not 1 <= n_exams <= len(EXAM_GAINS):
        raise ValueError(f"n_exams must be 1..{len(EXAM_GAINS)}, not {n_exams}")
    os.makedirs(folder, exist_ok=True)
    clips: list[CohortClip] = []
    for p in range(n_patients):
        pattern = SCALE_PATTERNS[p % len(SCALE_PATTERNS)]
        start = first_date + datetime.timedelta(days=7 * p)
        for e in range(n_exams):
            exam = "B" if e == 0 else f"C{2 * e}"
            scales = {name: pattern[name][e] for name in LESIONS}
            for injection in range(1, 3 if (p, e) in set(map(tuple, repeated)) else 2):
                gain = EXAM_GAINS[e] * (SECOND_INJECTION_GAIN if injection == 2 else 1.0)
                synthetic = make_clip(_regions(panel_shape, scales), panel_shape=panel_shape, n_frames=n_frames,
                                      frame_interval_s=frame_interval_s, dynamic_range_db=DYNAMIC_RANGE_DB,
                                      injection_time_s=INJECTION_TIME_S, gain=gain, display=display,
                                      reference_frame=reference_frame, speckle_sigma_px=SPECKLE_SIGMA_PX,
                                      seed=1000 * p + 10 * e + injection)
                name = f"P{p + 1}_{exam}_{injection}"
                write_clip(synthetic, os.path.join(folder, f"{name}.dcm"), patient_id=f"P{p + 1}",
                           study_date=(start + datetime.timedelta(days=EXAM_SPACING_DAYS * e)).strftime("%Y%m%d"))
                masks = write_roi_masks(synthetic, os.path.join(folder, f"{name}_rois"))
                cell = ";".join(f"{roi}={os.path.relpath(masks[roi], folder)}" for roi in (REFERENCE, *LESIONS))
                clips.append(CohortClip(f"P{p + 1}", exam, start + datetime.timedelta(days=EXAM_SPACING_DAYS * e),
                                        injection, f"{name}.dcm", cell, synthetic.truth))
    manifest = os.path.join(folder, "MANIFEST.csv")
    with open(manifest, "w", encoding="utf-8", newline="") as stream:
        stream.write("patient,exam,date,clip,rois,reference,dynamic_range_db,injection_time_s,reference_frame\n")
        for c in clips:
            stream.write(f"{c.patient},{c.exam},{c.date.isoformat()},{c.clip},{c.rois},{REFERENCE},"
                         f"{DYNAMIC_RANGE_DB:g},{INJECTION_TIME_S:g},{reference_frame}\n")
    return manifest, clips


def exam_truth(clips: Sequence[CohortClip], patient: str, exam: str, roi: str, parameter: str,
               relative: bool = False) -> float:
    """The exam mean of the clips' true ``parameter`` of ``roi`` (relative: / the reference's)."""
    values = []
    for c in clips:
        if (c.patient, c.exam) != (patient, exam):
            continue
        value = truth_parameters(c.truth[roi])[parameter]
        values.append(value / truth_parameters(c.truth[REFERENCE])[parameter] if relative else value)
    return float(np.mean(values))


def relative_change_truth(clips: Sequence[CohortClip], patient: str, exam: str, roi: str, parameter: str,
                          relative: bool = True) -> float:
    """True percent change of the exam mean vs the patient's baseline (``B``), as ``study`` reports it."""
    baseline = exam_truth(clips, patient, "B", roi, parameter, relative)
    return 100.0 * (exam_truth(clips, patient, exam, roi, parameter, relative) / baseline - 1.0)
