"""The typed records of a study: a manifest row (one clip), an exam, a measurement, a lesion at an exam.

A *lesion* is an ROI name: ROIs named alike in different exams of one patient are the same lesion
(the contract). An *exam* is one ``patient, exam`` pair of the manifest; its rows are repeated
injections, numbered ``injection`` = 1, 2, ... in manifest order. ``days_from_baseline`` counts
calendar days from the patient's earliest exam (the baseline).
"""
from __future__ import annotations

import dataclasses
import datetime
import os
from dataclasses import dataclass, field

from DCEUSResponseLib.ceus.pipeline import AnalysisOptions
from DCEUSResponseLib.catalogue import CATALOGUE, parameter_names

MODALITIES = ("CEUS", "PET", "CT")


@dataclass(frozen=True)
class FusionMeasure:
    """A per-ROI measure of ``fuse``: ``fusion.json`` ``rois.NAME.<section>.<key>``."""

    name: str        # the measurement's ``parameter`` and the rule's PARAM (``pet:SUVmax:-30``)
    modality: str    # PET or CT
    section: str     # pet, pet3d or ct
    key: str
    unit: str

    @property
    def column(self) -> str:
        """Its column stem in ``lesions.csv``: ``pet_SUVmax``, ``pet3d_SUVmax``, ``ct_HU_mean``."""
        return self.name if self.section == "pet3d" else f"{self.section}_{self.name}"


def _fusion_measure(section: str, key: str) -> FusionMeasure:
    name = f"pet3d_{key}" if section == "pet3d" else key
    return FusionMeasure(name, "CT" if section == "ct" else "PET", section, key, CATALOGUE[key].unit)


#: The fusion contract's per-ROI measures, in the order of ``fusion.csv`` (the catalogue's pet, ct
#: and pet3d families, with their units).
FUSION_MEASURES: tuple[FusionMeasure, ...] = tuple(
    _fusion_measure(section, key) for section in ("pet", "ct", "pet3d") for key in parameter_names(section))
FUSION_MEASURES_BY_NAME = {m.name: m for m in FUSION_MEASURES}
#: Measures a ``pet:MEASURE:PERCENT`` rule may name.
PET_RULE_MEASURES = tuple(m.name for m in FUSION_MEASURES if m.modality == "PET" and m.key != "voxels")


def unit_of(parameter: str) -> str:
    """The unit of a CEUS parameter or a fusion measure ("" when unknown)."""
    measure = FUSION_MEASURES_BY_NAME.get(parameter)
    info = CATALOGUE.get(measure.key if measure else parameter)
    return info.unit if info is not None else ""


@dataclass(frozen=True)
class ClipRow:
    """One manifest row: a clip of one injection at one exam, with its ROIs and options.

    Paths are absolute (the manifest gives them relative to itself); ``clip_text`` is the cell as
    written. Optional settings are None when the cell was empty (the ``analyze`` / ``fuse`` default).
    ``roi_specs`` are ready for ``analyze --roi``; ``roi_names`` is None for a ``.seg.nrrd``, whose
    segments name the ROIs.
    """

    line: int
    patient: str
    exam: str
    date: datetime.date
    injection: int
    clip: str
    clip_text: str
    roi_specs: tuple[str, ...]
    roi_names: tuple[str, ...] | None
    reference: str | None = None
    dynamic_range_db: float | None = None
    injection_time_s: float | None = None
    model: str | None = None
    reference_frame: int | None = None
    ct: str | None = None
    pet: str | None = None
    landmarks: tuple[str, str] | None = None
    transform: str | None = None
    pet_segmentation: str | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        """``(patient, exam, injection)``: how aggregation finds this clip's results."""
        return (self.patient, self.exam, self.injection)

    @property
    def output_dir(self) -> str:
        """This clip's folder relative to the study's ``--out``: ``exams/<patient>/<exam>/<k>``."""
        return os.path.join("exams", self.patient, self.exam, str(self.injection))

    @property
    def fused(self) -> bool:
        return self.ct is not None

    def analysis_options(self, **overrides) -> AnalysisOptions:
        """The ``analyze`` options of this row (empty cells keep the defaults), then ``overrides``."""
        given = {"dynamic_range_db": self.dynamic_range_db, "injection_time_s": self.injection_time_s,
                 "model": self.model, "reference_frame": self.reference_frame, "reference": self.reference}
        options = AnalysisOptions(**{k: v for k, v in given.items() if v is not None})
        return dataclasses.replace(options, **overrides)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["date"] = self.date.isoformat()
        return out


@dataclass(frozen=True)
class Exam:
    """One exam of one patient: its date, its distance from the baseline and its clips."""

    patient: str
    exam: str
    date: datetime.date
    days_from_baseline: int
    clips: tuple[ClipRow, ...]

    @property
    def is_baseline(self) -> bool:
        return self.days_from_baseline == 0


@dataclass(frozen=True)
class Measurement:
    """One value of ``measurements.csv`` (tidy: one row per clip, ROI and parameter)."""

    patient: str
    exam: str
    date: datetime.date
    days_from_baseline: int
    clip: str
    roi: str
    is_reference: bool
    modality: str
    parameter: str
    value: float | None
    unit: str
    relative_value: float | None
    status: str
    injection: int = 1

    COLUMNS = ("patient", "exam", "date", "days_from_baseline", "clip", "roi", "is_reference", "modality",
               "parameter", "value", "unit", "relative_value", "status", "injection")

    def row(self) -> tuple:
        return (self.patient, self.exam, self.date.isoformat(), self.days_from_baseline, self.clip, self.roi,
                self.is_reference, self.modality, self.parameter, self.value, self.unit, self.relative_value,
                self.status, self.injection)


@dataclass
class LesionExam:
    """One lesion at one exam: means over the exam's clips (repeated injections).

    ``values`` and ``cv_percent`` are keyed by column stem (CEUS parameter, ``pet_SUVmax`` ...),
    ``relative`` by CEUS parameter; ``counts`` is how many clips gave each value. ``status`` is ``ok``
    when any clip's fit is ``ok`` (the means are over those clips), otherwise the clips' status.
    ``reference`` is the exam's reference ROI (None when a clip of the exam had none).
    """

    patient: str
    lesion: str
    exam: str
    date: datetime.date
    days_from_baseline: int
    n_clips: int
    is_reference: bool
    status: str
    reason: str | None
    values: dict[str, float | None] = field(default_factory=dict)
    relative: dict[str, float | None] = field(default_factory=dict)
    cv_percent: dict[str, float | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    relative_counts: dict[str, int] = field(default_factory=dict)
    reference: str | None = None
    model: str | None = None
    #: CEUS parameters whose mean (absolute / relative) includes a value extrapolated beyond a clip's
    #: fitted frames (``results.json`` ``extrapolated`` / ``relative_extrapolated`` of any clip averaged).
    extrapolated: set[str] = field(default_factory=set)
    relative_extrapolated: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class ResponseRow:
    """One row of ``response.csv``: a lesion at a follow-up exam under one rule."""

    patient: str
    lesion: str
    exam: str
    date: datetime.date
    days_from_baseline: int
    rule: str
    parameter: str
    baseline: float | None
    value: float | None
    delta_percent: float | None
    relative_baseline: float | None
    relative_value: float | None
    relative_delta_percent: float | None
    delta_previous_percent: float | None
    relative_delta_previous_percent: float | None
    beyond_repeatability: bool | None
    classification: str
    reason: str
    rule_definition: str = ""
    repeatability_limit: float | None = None

    COLUMNS = ("patient", "lesion", "exam", "date", "days_from_baseline", "rule", "parameter", "baseline",
               "value", "delta_percent", "relative_baseline", "relative_value", "relative_delta_percent",
               "delta_previous_percent", "relative_delta_previous_percent", "beyond_repeatability",
               "classification", "reason", "rule_definition", "repeatability_limit")

    def row(self) -> tuple:
        values = dataclasses.astuple(self)
        return values[:3] + (self.date.isoformat(),) + values[4:]
