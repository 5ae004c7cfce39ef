"""Treatment response: the per-lesion change between a baseline and a follow-up analysis.

A response rule reads ``[absolute|relative]:PARAM:THRESHOLD`` (percent): an ROI is a responder when
its PARAM (relative: normalised by each exam's reference ROI) changed by THRESHOLD percent or less.
``study`` also takes ``pet:MEASURE:THRESHOLD`` on the PET measures of ``fuse`` (``pet:SUVmax:-30``).

Named rules: ``lassau2014-auc`` = ``absolute:AUC:-40`` is the criterion as Lassau et al. validated it
(Invest Radiol 2014; antiangiogenic drugs, day 30). ``lassau2014`` = ``relative:WiWoAUC:-40``, the
``compare`` default kept under its old name, is *not* that criterion: it is the reference-normalised
WiWoAUC rule. Both are exploratory for the trial: no DCE-US response rule is validated for PRRT.

Thresholds must be finite and within :data:`THRESHOLD_RANGE_PERCENT` (a positive parameter cannot
fall by more than 100 %). A ``results.json`` is checked for the types ``analyze`` writes before it is
used. Two exams whose identifiers disagree (another PatientID, the same study twice, a follow-up
dated before its baseline) are compared, with warnings: a patient may be re-registered under a new
ID, so only the reader of the response can decide.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from DCEUSResponseLib.catalogue import parameter_names
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.files import require_regular_file
from DCEUSResponseLib.kinetics.base import STATUS_NO_ENHANCEMENT, STATUS_OK
from DCEUSResponseLib.kinetics.parameters import relative_extrapolated
from DCEUSResponseLib.longitudinal.records import PET_RULE_MEASURES

RULE_ALIASES = {"lassau2014": "relative:WiWoAUC:-40", "lassau2014-auc": "absolute:AUC:-40"}
# Bolus parameters, then those of destruction-replenishment studies.
KNOWN_PARAMETERS = parameter_names("bolus", "replenishment")
DEFAULT_RULE = "lassau2014"
#: The default rules of ``study`` (see the module docstring).
DEFAULT_STUDY_RULES = ("relative:WiWoAUC:-40", "lassau2014-auc")
EXPLORATORY_NOTE = "exploratory: no DCE-US response rule is validated for PRRT"
#: Accepted rule thresholds (percent change): below -100 % no positive parameter can reach them.
THRESHOLD_RANGE_PERCENT = (-100.0, 1000.0)
#: A results.json larger than this is not one written by analyze.
MAX_RESULTS_BYTES = 64 << 20


@dataclass(frozen=True)
class ResponseRule:
    """Responder when the ``scale`` (absolute or relative) change of ``parameter`` <= ``threshold_percent``."""

    name: str
    scale: str
    parameter: str
    threshold_percent: float

    @classmethod
    def parse(cls, text: str, allow_pet: bool = False) -> "ResponseRule":
        """``text`` as a rule; ``allow_pet`` also accepts ``pet:MEASURE:PERCENT`` (``study`` only)."""
        spelled = RULE_ALIASES.get(text, text)
        parts = spelled.split(":")
        known = {"absolute": KNOWN_PARAMETERS, "relative": KNOWN_PARAMETERS}
        if allow_pet:
            known["pet"] = PET_RULE_MEASURES
        if len(parts) != 3 or parts[1] not in known.get(parts[0], ()):
            pet = ", pet:MEASURE:PERCENT (MEASURE one of " + ", ".join(PET_RULE_MEASURES) + ")" if allow_pet else ""
            raise InputError(f"unknown response rule {text!r}: use {', '.join(RULE_ALIASES)} or "
                             f"[absolute|relative]:PARAM:PERCENT, e.g. relative:WiWoAUC:-40{pet}")
        try:
            threshold = float(parts[2])
        except ValueError:
            raise InputError(f"response rule {text!r}: threshold {parts[2]!r} is not a number") from None
        lowest, highest = THRESHOLD_RANGE_PERCENT
        if not lowest <= threshold <= highest:  # NaN and inf fail too
            raise InputError(f"response rule {text!r}: threshold {parts[2]} % must be a number between "
                             f"{lowest:g} and {highest:g} %")
        return cls(text, parts[0], parts[1], threshold)

    def describe(self) -> str:
        normalised = {"relative": "reference-normalised ", "pet": "PET "}.get(self.scale, "")
        return (f"{self.name}: responder when the {normalised}{self.parameter} changes by "
                f"{self.threshold_percent:g} % or less")


def read_results(folder: str) -> dict:
    """The ``results.json`` of an ``analyze`` output folder, its types checked (see :func:`check_results`)."""
    path = os.path.join(folder, "results.json")
    if not os.path.lexists(path):
        raise InputError("not an analyze output folder (no results.json)", folder)
    require_regular_file(path, "results.json", MAX_RESULTS_BYTES)
    try:
        with open(path, encoding="utf-8") as stream:
            results = json.load(stream)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read results.json: {error}", path) from None
    except RecursionError:
        raise InputError("cannot read results.json: nested too deeply", path) from None
    check_results(results, path)
    return results


def check_results(results, path: str) -> None:
    """Refuse a results.json whose values ``compare`` uses are not of the types ``analyze`` writes.

    ROIs are objects with a ``status`` (string or null) and ``parameters`` / ``relative`` objects of
    finite numbers or null; ``reference`` is a string or null; ``clip.uids`` strings.
    """
    def refuse(problem: str) -> None:
        raise InputError(f"results.json {problem}; was it written by analyze?", path)

    if not isinstance(results, dict) or not isinstance(results.get("rois"), dict):
        refuse("has no 'rois' object")
    if not isinstance(results.get("reference"), (str, type(None))):
        refuse(f"has a 'reference' of type {type(results['reference']).__name__}, not an ROI name")
    for name, roi in results["rois"].items():
        if not isinstance(roi, dict):
            refuse(f"has ROI {name!r} as a {type(roi).__name__}, not an object")
        for key in ("status", "reason", "model"):
            if not isinstance(roi.get(key), (str, type(None))):
                refuse(f"has ROI {name!r} {key} {roi[key]!r}, not a string")
        for key in ("extrapolated", "relative_extrapolated"):
            names = roi.get(key, [])
            if not isinstance(names, list) or not all(isinstance(item, str) for item in names):
                refuse(f"has ROI {name!r} {key} {str(names)[:40]!r}, not a list of parameter names")
        for key in ("parameters", "relative"):
            values = roi.get(key, {})
            if not isinstance(values, dict):
                refuse(f"has ROI {name!r} {key} as a {type(values).__name__}, not an object")
            for parameter, value in values.items():
                if not (value is None or _is_number(value)):
                    refuse(f"has ROI {name!r} {key} {parameter} = {str(value)[:40]!r}, not a finite number or null")
    uids = (results.get("clip") or {}).get("uids", {}) if isinstance(results.get("clip"), (dict, type(None))) else None
    if not isinstance(uids, dict) or not all(isinstance(v, str) for v in uids.values()):
        refuse("has 'clip.uids' that are not strings")


def percent_change(baseline, followup) -> float | None:
    """100 (followup - baseline) / |baseline|, or None when undefined."""
    if baseline is None or followup is None:
        return None
    baseline, followup = float(baseline), float(followup)
    if not (math.isfinite(baseline) and math.isfinite(followup)) or baseline == 0:
        return None
    change = 100.0 * (followup - baseline) / abs(baseline)
    return change if math.isfinite(change) else None  # e.g. 1e308 to -1e308


def compare_results(baseline: dict, followup: dict, rule: ResponseRule,
                    baseline_name: str = "", followup_name: str = "") -> dict:
    """The contract's ``response.json`` content for two ``results.json`` contents."""
    reference = followup.get("reference")
    out_rois = {}
    for name, before in baseline["rois"].items():
        after = followup["rois"].get(name)
        if after is None:
            continue
        parameters = {}
        names = list(before.get("parameters", {})) or list(parameter_names("bolus"))
        for parameter in names:
            b = before.get("parameters", {}).get(parameter)
            f = after.get("parameters", {}).get(parameter)
            rel_b = before.get("relative", {}).get(parameter)
            rel_f = after.get("relative", {}).get(parameter)
            parameters[parameter] = {"baseline": b, "followup": f, "delta_percent": percent_change(b, f),
                                     "relative_delta_percent": percent_change(rel_b, rel_f),
                                     "baseline_relative": rel_b, "followup_relative": rel_f}
        classification, reason = classify(name, with_relative_extrapolated(before, baseline),
                                           with_relative_extrapolated(after, followup), parameters, rule,
                                           baseline.get("reference"), reference)
        out_rois[name] = {"classification": classification, "reason": reason,
                          "status": {"baseline": before.get("status"), "followup": after.get("status")},
                          "parameters": parameters}
    missing = sorted(set(baseline["rois"]) ^ set(followup["rois"]))
    return {
        "baseline": baseline_name,
        "followup": followup_name,
        "rule": rule.name,
        "rule_definition": rule.describe(),
        "reference": {"baseline": baseline.get("reference"), "followup": reference},
        "rois": out_rois,
        "unmatched_rois": missing,
        "warnings": identity_warnings(baseline, followup) + settings_warnings(baseline, followup),
    }


def with_relative_extrapolated(roi: dict, results: dict) -> dict:
    """``roi`` with ``relative_extrapolated``: as ``analyze`` records it, or, in a results.json from before
    it did, the ROI's own extrapolated parameters and those of the reference ROI."""
    if "relative_extrapolated" in roi:
        return roi
    reference = results["rois"].get(results.get("reference") or "", {})
    leaning = relative_extrapolated(roi.get("relative") or {}, roi.get("extrapolated") or (),
                                    reference.get("extrapolated") or ())
    return {**roi, "relative_extrapolated": list(leaning)}


def identity_warnings(baseline: dict, followup: dict) -> list[str]:
    """Warnings when the two exams' identifiers suggest they are not baseline and follow-up of one patient.

    Compared from ``clip.uids`` where both exams carry them: another PatientID (warned, not refused:
    a patient may be re-registered), one StudyInstanceUID (the same exam twice?), a follow-up
    StudyDate before the baseline's. Identifiers absent from either exam are not compared.
    """
    before = (baseline.get("clip") or {}).get("uids") or {}
    after = (followup.get("clip") or {}).get("uids") or {}
    notes = []
    if before.get("PatientID") and after.get("PatientID") and before["PatientID"] != after["PatientID"]:
        notes.append(f"the exams have different PatientID ({before['PatientID']} at baseline, {after['PatientID']} "
                     "at follow-up): check that they are the same patient")
    if before.get("StudyInstanceUID") and before.get("StudyInstanceUID") == after.get("StudyInstanceUID"):
        notes.append(f"baseline and follow-up are the same study (StudyInstanceUID {before['StudyInstanceUID']}): "
                     "is one exam compared with itself?")
    elif before.get("StudyDate") and after.get("StudyDate") and after["StudyDate"] < before["StudyDate"]:
        notes.append(f"the follow-up (StudyDate {after['StudyDate']}) is dated before the baseline "
                     f"({before['StudyDate']}): are they given in the right order?")
    return notes


def settings_warnings(baseline: dict, followup: dict) -> list[str]:
    """Warnings when the two analyses were not made alike: an assumed dynamic range (every value,
    relative ones too, rests on it), different dynamic ranges (right only if the scanner's display
    setting changed between the exams), different models (their parameters differ systematically)."""
    exams = {"baseline": baseline, "follow-up": followup}
    clips = {when: results.get("clip") if isinstance(results.get("clip"), dict) else {}
             for when, results in exams.items()}
    notes = [f"the {when} was analysed without --dynamic-range ({clip.get('dynamic_range_db'):g} dB assumed): "
             "its values, relative ones too, rest on that assumption; rerun analyze with the scanner's setting"
             for when, clip in clips.items()
             if clip.get("dynamic_range_source") == "default" and _is_number(clip.get("dynamic_range_db"))]
    ranges = [clip.get("dynamic_range_db") for clip in clips.values()]
    if all(_is_number(value) for value in ranges) and ranges[0] != ranges[1]:
        notes.append(f"the exams were linearised with different dynamic ranges ({ranges[0]:g} dB at baseline, "
                     f"{ranges[1]:g} dB at follow-up): right only if the scanner's display setting changed "
                     "between them")
    models = [results.get("model") for results in exams.values()]
    if all(isinstance(model, str) for model in models) and models[0] != models[1]:
        notes.append(f"the exams were fitted with different models ({models[0]} at baseline, {models[1]} at "
                     "follow-up): their parameters differ by the model as well; analyse both with one --model")
    return notes


def _is_number(value) -> bool:
    """A finite JSON number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def classify(name: str, before: dict, after: dict, parameters: dict, rule: ResponseRule,
             baseline_reference: str | None, followup_reference: str | None) -> tuple[str, str]:
    """``(classification, reason)`` of one ROI: ``before``/``after`` hold its ``status`` and ``reason``
    (and, from ``compare`` and ``study``, its ``extrapolated`` and ``relative_extrapolated`` parameters: a
    rule on a value extrapolated beyond the fitted frames is not evaluable), ``parameters[PARAM]`` its
    ``delta_percent`` and ``relative_delta_percent`` (a CEUS rule)."""
    if name in (baseline_reference, followup_reference):
        return "not-evaluable", "reference ROI"
    if rule.scale == "relative" and (baseline_reference is None or followup_reference is None):
        return "not-evaluable", "an exam has no reference ROI (analyze --reference) for a relative rule"
    status_before, status_after = before.get("status"), after.get("status")
    if status_before != STATUS_OK:
        return "not-evaluable", f"baseline ROI is {status_before}: {before.get('reason')}"
    if status_after == STATUS_NO_ENHANCEMENT:
        return "responder", f"follow-up ROI has no enhancement left ({after.get('reason')})"
    if status_after != STATUS_OK:
        return "not-evaluable", f"follow-up ROI is {status_after}: {after.get('reason')}"
    key = "relative_delta_percent" if rule.scale == "relative" else "delta_percent"
    leaning = "relative_extrapolated" if rule.scale == "relative" else "extrapolated"
    for when, roi in (("baseline", before), ("follow-up", after)):
        if rule.parameter in (roi.get(leaning) or ()):
            what = "relative value rests on values" if rule.scale == "relative" else "value is"
            return "not-evaluable", (f"{rule.parameter} {what} extrapolated beyond the fitted frames at {when} "
                                     "(the model's tail, not the data; see 'extrapolated' in its results.json)")
    if rule.parameter not in parameters:
        return "not-evaluable", f"{rule.parameter} is not a parameter of this analysis ({before.get('model')})"
    change = parameters[rule.parameter][key]
    if change is None:
        return "not-evaluable", f"{rule.parameter} change is undefined"
    verdict = "responder" if change <= rule.threshold_percent else "non-responder"
    return verdict, f"{rule.parameter} changed by {change:+.1f} % (threshold {rule.threshold_percent:g} %)"


def check_shared_rois(baseline: dict, followup: dict, baseline_dir: str, followup_source: str) -> None:
    """Raise when two ``results.json`` contents have no ROI name in common (nothing to compare)."""
    if not set(baseline["rois"]) & set(followup["rois"]):
        raise InputError(f"no ROI name is shared with the baseline {baseline_dir} (name ROIs alike in both "
                         "exams)", followup_source)


def compare_folders(baseline_dir: str, followup_dir: str, rule_text: str = DEFAULT_RULE) -> dict:
    """Read two ``analyze`` output folders and compare them."""
    rule = ResponseRule.parse(rule_text)
    baseline = read_results(baseline_dir)
    followup = read_results(followup_dir)
    check_shared_rois(baseline, followup, baseline_dir, followup_dir)
    return compare_results(baseline, followup, rule, os.path.abspath(baseline_dir), os.path.abspath(followup_dir))
