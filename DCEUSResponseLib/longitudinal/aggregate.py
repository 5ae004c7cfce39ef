"""A study's tables from its clips' results: measurements, lesions, response, repeatability, statistics.

Input: the checked manifest, each clip's ``results.json`` content (and ``fusion.json`` when fused)
keyed by :attr:`ClipRow.key` ``(patient, exam, injection)``; a clip without results (it failed) is
simply absent. Lesions are ROI names; an exam's value of a lesion is the mean over its clips
(repeated injections) of the values of the clips whose fit is ``ok``. Changes are percent, vs the
patient's baseline and vs the previous exam. Rules as in ``compare`` plus ``pet:MEASURE:PERCENT``
(:mod:`DCEUSResponseLib.longitudinal.response`); every default rule is exploratory.

``beyond_repeatability`` (when some lesion had repeated injections): the change of the exam means on
the rule's scale exceeds the 95 % repeatability limit of a difference of means of n_a and n_b clips,
``RC sqrt((1/n_a + 1/n_b) / 2)`` (= RC for single clips), RC over all non-reference lesions
(:mod:`DCEUSResponseLib.longitudinal.statistics`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.export.csv_cells import csv_text
from DCEUSResponseLib.longitudinal.manifest import Manifest, Outcomes
from DCEUSResponseLib.longitudinal.records import (
    FUSION_MEASURES,
    ClipRow,
    Exam,
    LesionExam,
    Measurement,
    ResponseRow,
    unit_of,
)
from DCEUSResponseLib.longitudinal.response import (
    DEFAULT_STUDY_RULES,
    EXPLORATORY_NOTE,
    KNOWN_PARAMETERS,
    ResponseRule,
    classify,
    percent_change,
    read_results,
    with_relative_extrapolated,
)
from DCEUSResponseLib.longitudinal.statistics import (
    DEFAULT_BOOTSTRAP_RESAMPLES,
    Repeatability,
    RocResult,
    repeatability,
    roc_analysis,
)

if TYPE_CHECKING:
    from DCEUSResponseLib.export.staging import StagedFiles

ClipKey = tuple[str, str, int]
_COLUMN_OF = {m.name: m.column for m in FUSION_MEASURES}


@dataclass
class _ClipRoi:
    """One ROI of one analysed clip: its values by lesions.csv column stem."""

    row: ClipRow
    name: str
    is_reference: bool
    reference: str | None
    status: str
    reason: str | None
    model: str | None
    values: dict[str, float | None]      # CEUS parameters
    relative: dict[str, float | None]    # CEUS parameters / the reference ROI's
    fusion: dict[str, float | None]      # fusion measures by column stem (pet_SUVmax, ...)
    extrapolated: frozenset[str] = frozenset()           # CEUS parameters extrapolated beyond the fitted frames
    relative_extrapolated: frozenset[str] = frozenset()  # relative values resting on an extrapolated value


@dataclass(frozen=True)
class StatisticsRow:
    """One row of ``statistics.csv``: the ROC analysis of one change at one exam."""

    exam: str
    parameter: str
    n_undefined: int
    roc: RocResult


@dataclass
class StudyTables:
    """Every table of a study; ``csv_texts()`` renders them, ``write_csvs`` stages them."""

    measurements: list[Measurement]
    lesions: list[LesionExam]
    parameters: list[str]
    fusion_columns: list[str]
    response: list[ResponseRow]
    repeatability: dict[str, tuple[Repeatability, int]] = field(default_factory=dict)
    statistics: list[StatisticsRow] | None = None
    #: about the inputs (an outcome for a lesion no clip has), for stderr and study.json
    warnings: list[str] = field(default_factory=list)

    def measurements_csv(self) -> str:
        return csv_text(Measurement.COLUMNS, (m.row() for m in self.measurements))

    def lesions_csv(self) -> str:
        stems = self.parameters + self.fusion_columns
        header = ["patient", "lesion", "exam", "date", "days_from_baseline", "n_clips", *stems,
                  *(f"rel_{p}" for p in self.parameters), *(f"cv_{c}" for c in stems), "status", "is_reference"]
        rows = ([le.patient, le.lesion, le.exam, le.date.isoformat(), le.days_from_baseline, le.n_clips,
                 *(le.values.get(c) for c in stems), *(le.relative.get(p) for p in self.parameters),
                 *(le.cv_percent.get(c) for c in stems), le.status, le.is_reference] for le in self.lesions)
        return csv_text(header, rows)

    def response_csv(self) -> str:
        return csv_text(ResponseRow.COLUMNS, (r.row() for r in self.response))

    def repeatability_csv(self) -> str:
        header = ["parameter", "unit", "n_lesions", "n_lesion_exams", "n_measurements", "mean", "wsd",
                  "wcv_percent", "rc", "rc_percent"]
        # a reference-normalised value (rel_*) is a ratio of two values in one unit: it has none
        rows = ([column, "" if column.startswith("rel_") else unit_of(_parameter_of(column)), n_lesions, r.n_groups, r.n_measurements, r.mean, r.wsd,
                 r.wcv_percent, r.rc, r.rc_percent] for column, (r, n_lesions) in self.repeatability.items())
        return csv_text(header, rows)

    def statistics_csv(self) -> str:
        header = ["exam", "parameter", "change", "n_responders", "n_non_responders", "n_undefined", "auc",
                  "auc_ci_low", "auc_ci_high", "youden_threshold_percent", "sensitivity", "specificity", "reason"]
        rows = ([s.exam, s.parameter, "percent vs baseline; a fall predicts response", s.roc.n_responders,
                 s.roc.n_non_responders, s.n_undefined, s.roc.auc, s.roc.auc_ci_low, s.roc.auc_ci_high,
                 s.roc.threshold, s.roc.sensitivity, s.roc.specificity, s.roc.reason] for s in self.statistics or [])
        return csv_text(header, rows)

    def csv_texts(self) -> dict[str, str]:
        """File name -> CSV text; ``repeatability.csv`` only with repeated injections, ``statistics.csv``
        only with outcomes."""
        texts = {"measurements.csv": self.measurements_csv(), "lesions.csv": self.lesions_csv(),
                 "response.csv": self.response_csv()}
        if self.repeatability:
            texts["repeatability.csv"] = self.repeatability_csv()
        if self.statistics is not None:
            texts["statistics.csv"] = self.statistics_csv()
        return texts

    def write_csvs(self, staged: "StagedFiles", folder: str = "") -> list[str]:
        """Write every CSV into ``staged`` (under ``folder``); returns the relative paths."""
        written = []
        for name, text in self.csv_texts().items():
            relative = os.path.join(folder, name) if folder else name
            with open(staged.path(relative), "w", encoding="utf-8", newline="") as stream:
                stream.write(text)
            written.append(relative)
        return written


def _parameter_of(column: str) -> str:
    stem = column[4:] if column.startswith("rel_") else column
    return next((m.name for m in FUSION_MEASURES if m.column == stem), stem)


def read_clip_outputs(manifest: Manifest, out_dir: str) -> tuple[dict[ClipKey, dict], dict[ClipKey, dict]]:
    """``(results_by_clip, fusion_by_clip)`` from ``out_dir/exams/<patient>/<exam>/<k>/results.json`` and
    its ``fusion/fusion.json``; a clip whose folder has no ``results.json`` (it failed) is left out."""
    results, fusion = {}, {}
    for row in manifest.rows:
        folder = os.path.join(out_dir, row.output_dir)
        if not os.path.isfile(os.path.join(folder, "results.json")):
            continue
        results[row.key] = read_results(folder)
        fusion_path = os.path.join(folder, "fusion", "fusion.json")
        if row.fused and os.path.isfile(fusion_path):
            try:
                with open(fusion_path, encoding="utf-8") as stream:
                    fusion[row.key] = json.load(stream)
            except (OSError, ValueError) as error:
                raise InputError(f"cannot read fusion.json: {error}", fusion_path) from None
    return results, fusion


def aggregate(manifest: Manifest, results_by_clip: Mapping[ClipKey, dict],
              fusion_by_clip: Mapping[ClipKey, dict] | None = None,
              rules: Sequence[str | ResponseRule] = DEFAULT_STUDY_RULES, outcomes: Outcomes | None = None,
              n_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES, seed: int = 0) -> StudyTables:
    """All study tables from the clips' results (``results.json`` / ``fusion.json`` contents)."""
    parsed = [r if isinstance(r, ResponseRule) else ResponseRule.parse(r, allow_pet=True) for r in rules]
    clip_rois = _clip_rois(manifest, results_by_clip, fusion_by_clip or {})
    seen = {p for c in clip_rois for p in c.values}
    parameters = [p for p in KNOWN_PARAMETERS if p in seen] + sorted(seen - set(KNOWN_PARAMETERS))
    fusion_columns = [m.column for m in FUSION_MEASURES if any(m.column in c.fusion for c in clip_rois)]
    groups: dict[tuple[str, str, str], list[_ClipRoi]] = {}
    for item in clip_rois:
        groups.setdefault((item.row.patient, item.name, item.row.exam), []).append(item)
    lesions = {key: _lesion_exam(manifest.exam_of(items[0].row), key[1], items, parameters, fusion_columns)
               for key, items in groups.items()}
    ordered = [lesions[(e.patient, name, e.exam)] for e in manifest.exams
               for name in _lesion_names(clip_rois, e.patient) if (e.patient, name, e.exam) in lesions]
    rep = _repeatability(groups, parameters, fusion_columns)
    response = [row for patient in manifest.patients
                for row in _patient_response(manifest.exams_of(patient), _lesion_names(clip_rois, patient),
                                             lesions, parsed, rep)]
    statistics, warnings = None, []
    if outcomes is not None:
        statistics = _statistics(manifest, lesions, clip_rois, outcomes, parameters, fusion_columns,
                                 n_resamples, seed)
        references = {(c.row.patient, c.name) for c in clip_rois if c.is_reference}
        warnings = unused_outcome_warnings(outcomes, {p: [n for n in _lesion_names(clip_rois, p) if (p, n) not in references]
                                                      for p in manifest.patients})
    return StudyTables(measurements=_measurements(manifest, clip_rois), lesions=ordered, parameters=parameters,
                       fusion_columns=fusion_columns, response=response, repeatability=rep, statistics=statistics,
                       warnings=warnings)


def unused_outcome_warnings(outcomes: Outcomes, lesions_by_patient: Mapping[str, Sequence[str]]) -> list[str]:
    """A warning per lesion outcome that names no lesion of its patient's analysed clips (a typo, a
    lesion renamed, a clip that failed): its outcome would be left out of the ROC analysis silently."""
    warnings = []
    for (patient, lesion), line in sorted(outcomes.lesion_lines.items(), key=lambda item: item[1]):
        known = list(lesions_by_patient.get(patient) or [])
        if lesion in known:
            continue
        close = [name for name in known if name.casefold() == lesion.casefold()]
        hint = f" (did you mean {close[0]!r}?)" if close else (f" (its lesions: {', '.join(known)})" if known else "")
        warnings.append(f"{outcomes.path}: line {line}: patient {patient!r} has no lesion {lesion!r} in the "
                        f"analysed clips{hint}; that outcome is not used")
    return warnings


def _clip_rois(manifest: Manifest, results_by_clip, fusion_by_clip) -> list[_ClipRoi]:
    out = []
    for row in manifest.rows:
        results = results_by_clip.get(row.key)
        if results is None:
            continue
        reference = results.get("reference")
        fusion = fusion_by_clip.get(row.key)
        for name, roi in results["rois"].items():
            leaning = with_relative_extrapolated(roi, results)
            out.append(_ClipRoi(row, name, name == reference, reference, roi.get("status") or "unknown",
                                roi.get("reason"), roi.get("model") or results.get("model"),
                                dict(roi.get("parameters") or {}), dict(roi.get("relative") or {}),
                                _fusion_values(fusion, name), frozenset(roi.get("extrapolated") or ()),
                                frozenset(leaning["relative_extrapolated"])))
    return out


def _fusion_values(fusion: dict | None, name: str) -> dict[str, float | None]:
    """Column stem -> value of ROI ``name`` in ``fusion.json``: CT measures always, PET ones when a PET
    was fused, ``pet3d`` ones when the ROI has a PET segment; null (an empty footprint) stays None."""
    if fusion is None:
        return {}
    roi = (fusion.get("rois") or {}).get(name) or {}
    values = {}
    for measure in FUSION_MEASURES:
        section = roi.get(measure.section)
        present = {"ct": True, "pet": fusion.get("pet") is not None, "pet3d": isinstance(section, dict)}
        if present[measure.section]:
            values[measure.column] = (section or {}).get(measure.key)
    return values


def _lesion_names(clip_rois: list[_ClipRoi], patient: str) -> list[str]:
    return list(dict.fromkeys(c.name for c in clip_rois if c.row.patient == patient))


def _exam_status(items: list[_ClipRoi]) -> tuple[str, str | None]:
    ok = [c for c in items if c.status == "ok"]
    if ok:
        return "ok", None if len(ok) == len(items) else f"mean over {len(ok)} of {len(items)} clips (others not ok)"
    failed = [c for c in items if c.status != "no_enhancement"] or items
    return failed[0].status, failed[0].reason


def _mean_and_cv(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = float(np.mean(values))
    # The shared contract's sample SD / mean x 100, signed: a negative mean (WoR) gives a negative CV
    # (read its magnitude); repeatability.csv's wCV leaves such parameters out.
    cv = 100.0 * float(np.std(values, ddof=1)) / mean if len(values) > 1 and mean != 0 else None
    return mean, cv


def _lesion_exam(exam: Exam, lesion: str, items: list[_ClipRoi], parameters: list[str],
                 fusion_columns: list[str]) -> LesionExam:
    status, reason = _exam_status(items)
    ok = [c for c in items if c.status == "ok"]
    le = LesionExam(exam.patient, lesion, exam.exam, exam.date, exam.days_from_baseline, len(items),
                    any(c.is_reference for c in items), status, reason,
                    reference=items[0].reference if all(c.reference for c in items) else None, model=items[0].model)
    for column in parameters + fusion_columns:
        fused = column in fusion_columns
        # CEUS values count only from ok fits; PET/CT measures do not depend on the TIC fit.
        values = [v for v in (c.fusion.get(column) if fused else c.values.get(column) for c in (items if fused else ok))
                  if v is not None]
        le.values[column], le.cv_percent[column] = _mean_and_cv(values)
        le.counts[column] = len(values)
        if not fused:
            relative = [c.relative[column] for c in ok if c.relative.get(column) is not None]
            le.relative[column] = _mean_and_cv(relative)[0]
            le.relative_counts[column] = len(relative)
            if any(column in c.extrapolated and c.values.get(column) is not None for c in ok):
                le.extrapolated.add(column)
            if any(column in c.relative_extrapolated and c.relative.get(column) is not None for c in ok):
                le.relative_extrapolated.add(column)
    return le


def _measurements(manifest: Manifest, clip_rois: list[_ClipRoi]) -> list[Measurement]:
    out = []
    for c in clip_rois:
        exam = manifest.exam_of(c.row)
        rows = [("CEUS", p, v, c.relative.get(p), c.status) for p, v in c.values.items()]
        rows += [(m.modality, m.name, c.fusion[m.column], None,
                  "ok" if c.fusion[m.column] is not None else "not_measured")
                 for m in FUSION_MEASURES if m.column in c.fusion]
        for modality, parameter, value, relative, status in rows:
            out.append(Measurement(c.row.patient, c.row.exam, exam.date, exam.days_from_baseline, c.row.clip_text,
                                   c.name, c.is_reference, modality, parameter, value, unit_of(parameter), relative,
                                   status, c.row.injection))
    return out


def _repeatability(groups, parameters: list[str], fusion_columns: list[str]) -> dict[str, tuple[Repeatability, int]]:
    """Per lesions.csv column (and ``rel_`` column), over non-reference lesions with repeated clips."""
    repeated = {key: items for key, items in groups.items()
                if len(items) >= 2 and not any(c.is_reference for c in items)}
    out = {}
    for column in parameters + [f"rel_{p}" for p in parameters] + fusion_columns:
        relative = column.startswith("rel_") and column[4:] in parameters
        fused = column in fusion_columns
        stem = column[4:] if relative else column
        series = {}
        for key, items in repeated.items():
            usable = [c for c in items if c.status == "ok" or fused]
            values = [(c.fusion if fused else c.relative if relative else c.values).get(stem) for c in usable]
            series[key] = [v for v in values if v is not None]
        result = repeatability(list(series.values()))
        if result is not None:
            n_lesions = len({(k[0], k[1]) for k, v in series.items() if len(v) >= 2})
            out[column] = (result, n_lesions)
    return out


def _patient_response(exams: tuple[Exam, ...], names: list[str], lesions: dict, rules: list[ResponseRule],
                      rep: dict) -> list[ResponseRow]:
    rows = []
    baseline = exams[0]
    for name in names:
        before = lesions.get((baseline.patient, name, baseline.exam))
        for k, exam in enumerate(exams[1:], start=1):
            now = lesions.get((exam.patient, name, exam.exam))
            previous = lesions.get((exam.patient, name, exams[k - 1].exam))
            for rule in rules:
                rows.append(_response_row(exam, name, before, now, previous, rule, rep))
    return rows


def _response_row(exam: Exam, name: str, before: LesionExam | None, now: LesionExam | None,
                  previous: LesionExam | None, rule: ResponseRule, rep: dict) -> ResponseRow:
    pet = rule.scale == "pet"
    column = _COLUMN_OF[rule.parameter] if pet else rule.parameter

    def value(le, relative=False):
        if le is None or (relative and pet):
            return None
        return (le.relative if relative else le.values).get(column)

    b, v, rb, rv = value(before), value(now), value(before, True), value(now, True)
    if before is None or now is None:
        where = "baseline" if before is None else "this exam"
        classification, reason = "not-evaluable", f"no analysed clip of {where} has ROI {name!r}"
    elif pet:
        classification, reason = _classify_pet(name, before, now, rule, b, v)
    else:
        parameters = {}
        if column in before.values or column in now.values:
            parameters[column] = {"delta_percent": percent_change(b, v),
                                  "relative_delta_percent": percent_change(rb, rv)}
        classification, reason = classify(
            name, {"status": before.status, "reason": before.reason, "model": before.model,
                   "extrapolated": sorted(before.extrapolated), "relative_extrapolated": sorted(before.relative_extrapolated)},
            {"status": now.status, "reason": now.reason, "extrapolated": sorted(now.extrapolated),
             "relative_extrapolated": sorted(now.relative_extrapolated)},
            parameters, rule, before.reference, now.reference)
    beyond, limit = _beyond(rule, column, before, now, rep)
    return ResponseRow(exam.patient, name, exam.exam, exam.date, exam.days_from_baseline, rule.name, rule.parameter,
                       b, v, percent_change(b, v), rb, rv, percent_change(rb, rv), percent_change(value(previous), v),
                       percent_change(value(previous, True), rv), beyond, classification, reason,
                       f"{rule.describe()} ({EXPLORATORY_NOTE})", limit)


def _classify_pet(name: str, before: LesionExam, now: LesionExam, rule: ResponseRule, b, v) -> tuple[str, str]:
    if before.is_reference or now.is_reference:
        return "not-evaluable", "reference ROI"
    if b is None or v is None:
        where = "baseline" if b is None else "this exam"
        return "not-evaluable", (f"PET {rule.parameter} of {name!r} is not measured at {where} "
                                 "(no fusion, or an empty footprint)")
    change = percent_change(b, v)
    if change is None:
        return "not-evaluable", f"PET {rule.parameter} change is undefined"
    verdict = "responder" if change <= rule.threshold_percent else "non-responder"
    return verdict, f"PET {rule.parameter} changed by {change:+.1f} % (threshold {rule.threshold_percent:g} %)"


def _beyond(rule: ResponseRule, column: str, before: LesionExam | None, now: LesionExam | None,
            rep: dict) -> tuple[bool | None, float | None]:
    relative = rule.scale == "relative"
    key = f"rel_{column}" if relative else column
    if key not in rep or before is None or now is None:
        return None, None
    values, counts = (("relative", "relative_counts") if relative else ("values", "counts"))
    a, b = getattr(before, values).get(column), getattr(now, values).get(column)
    n_a, n_b = getattr(before, counts).get(column, 0), getattr(now, counts).get(column, 0)
    if a is None or b is None or not n_a or not n_b:
        return None, None
    limit = rep[key][0].limit(n_a, n_b)
    return bool(abs(b - a) > limit), limit


def _statistics(manifest: Manifest, lesions: dict, clip_rois: list[_ClipRoi], outcomes: Outcomes,
                parameters: list[str], fusion_columns: list[str], n_resamples: int, seed: int) -> list[StatisticsRow]:
    """Per follow-up exam label and change (vs baseline), the ROC analysis over lesions with an outcome."""
    labels = list(dict.fromkeys(e.exam for e in manifest.exams if not e.is_baseline))
    changes = [(p, "values") for p in parameters] + [(p, "relative") for p in parameters] + \
              [(c, "values") for c in fusion_columns]
    rows = []
    for label in labels:
        for column, kind in changes:
            responders, non_responders, undefined = [], [], 0
            for patient in manifest.patients:
                exams = manifest.exams_of(patient)
                if label not in [e.exam for e in exams[1:]]:
                    continue
                for name in _lesion_names(clip_rois, patient):
                    before, now = lesions.get((patient, name, exams[0].exam)), lesions.get((patient, name, label))
                    outcome = outcomes.outcome(patient, name)
                    if outcome is None or before is None or now is None or before.is_reference or now.is_reference:
                        continue
                    change = percent_change(getattr(before, kind).get(column), getattr(now, kind).get(column))
                    if change is None:
                        undefined += 1
                    else:
                        (responders if outcome == "responder" else non_responders).append(change)
            name = f"rel_{column}" if kind == "relative" else column
            if responders or non_responders or undefined:
                rows.append(StatisticsRow(label, name, undefined,
                                          roc_analysis(responders, non_responders, n_resamples, seed)))
    return rows
