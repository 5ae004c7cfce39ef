"""The measurements as a DICOM Structured Report, TID 1500 "Measurement Report" (highdicom).

One ROI measurement group per ROI of ``results.json``, TID 1411 "Volumetric ROI Measurements"
although the ROI is planar: it is the ROI's SEG segment (one frame, on the clip's reference frame),
referenced by segment number. TID 1410 would reference a SEG frame *and* a segment number, which
the Image Reference macro forbids together, and QuantitativeReporting reads SEG-based groups as
TID 1411. its Tracking Identifier is the ROI's name and its Tracking
Unique Identifier :func:`dicom_common.lesion_tracking_uid` (patient + ROI name, so one lesion has
one UID at every exam); the exam is the group's Time Point Context. Measurements: every non-null
parameter (its code in :mod:`DCEUSResponseLib.catalogue`), every non-null reference-normalised
value (same concept, derivation "Relative to reference ROI", unit {ratio}), and, when a
``fusion.json`` is given, the PET / CT measures (the catalogue's ``pet``, ``ct``, ``pet3d`` families, each with its
method: CEUS slab footprint or 3D segment). The ROI's fit status is a qualitative evaluation.
Null values are left out (a NUM needs a number).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from DCEUSResponseLib.catalogue import (
    ANATOMIC_REGION,
    FIT_STATUS_CONCEPT,
    FIT_STATUS_VALUES,
    MEASUREMENT_METHODS,
    PROCEDURE_REPORTED,
    RELATIVE_DERIVATION,
    RELATIVE_UCUM,
    SEGMENT_ROLE_CODES,
    dicom_quantity,
    parameter_info,
    parameter_names,
)
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.export.dicom_common import (
    MANUFACTURER,
    MODEL_NAME,
    add_private_coding_scheme,
    coded,
    derived_uid,
    equipment,
    software_version,
    ucum,
)

if TYPE_CHECKING:  # for annotations only: pydicom / highdicom are imported inside functions
    from pydicom import Dataset

# The fusion.json sections of an ROI, in report order (each section's measures: its catalogue family).
FUSION_SECTIONS = ("pet", "ct", "pet3d")


def roi_measurements(roi: Mapping[str, Any], fusion_roi: Mapping[str, Any] | None, model: str) -> list:
    """The TID 300 measurements of one ROI of results.json (and of fusion.json), nulls left out."""
    import highdicom as hd

    algorithm = hd.sr.AlgorithmIdentification(name=MODEL_NAME, version=software_version(),
                                              parameters=[f"model={model}"])
    method = coded(MEASUREMENT_METHODS["kinetic_fit"])
    measurements = []
    for name, value in (roi.get("parameters") or {}).items():
        if value is None:
            continue
        code, unit = dicom_quantity(name)
        measurements.append(hd.sr.Measurement(name=coded(code), value=float(value), unit=ucum(unit),
                                              method=method, algorithm_id=algorithm))
    for name, value in (roi.get("relative") or {}).items():
        if value is None:
            continue
        measurements.append(hd.sr.Measurement(name=coded(dicom_quantity(name)[0]), value=float(value),
                                              unit=ucum(RELATIVE_UCUM), derivation=coded(RELATIVE_DERIVATION),
                                              method=method, algorithm_id=algorithm))
    for section in FUSION_SECTIONS:
        values = (fusion_roi or {}).get(section) or {}
        for name in parameter_names(section):
            value = values.get(name)
            if value is None:
                continue
            code, unit = dicom_quantity(name)
            derivation = parameter_info(name).derivation_code
            measurements.append(hd.sr.Measurement(
                name=coded(code), value=float(value), unit=ucum(unit), method=coded(MEASUREMENT_METHODS[section]),
                derivation=coded(derivation) if derivation else None))
    return measurements


def build_measurement_report(results: Mapping[str, Any], source: "Dataset", segmentation: "Dataset", *,
                             roles: Mapping[str, str], tracking_uids: Mapping[str, str], time_point: str,
                             time_point_order: int | None = None, fusion: Mapping[str, Any] | None = None,
                             source_frame: int | None = 1, source_instances: Sequence["Dataset"] = (),
                             evidence: Sequence["Dataset"] = (),
                             series_instance_uid: str, sop_instance_uid: str, instance_number: int = 1,
                             series_number: int = 903) -> "Dataset":
    """A Comprehensive SR (TID 1500) of ``results`` (results.json as a dict) and ``fusion`` (fusion.json).

    ``source`` is the header of the clip's instance holding the reference frame, ``source_frame``
    the frame's number there (None for a single-frame instance); ``segmentation`` is the SEG of the
    ROIs (segment labels = ROI names). The clip (``source``, or every instance of a single-frame
    series: ``source_instances``), the SEG and ``evidence`` (e.g. the parametric maps) are listed
    as the report's evidence.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    segments = _segment_numbers(segmentation)
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid("device", MANUFACTURER, MODEL_NAME), name=MANUFACTURER, manufacturer_name=MANUFACTURER,
            model_name=MODEL_NAME))
    context = hd.sr.TimePointContext(time_point=time_point, time_point_order=time_point_order,
                                     subject_time_point_identifier=source.get("StudyID") or None)
    source_image = hd.sr.SourceImageForSegmentation(source.SOPClassUID, source.SOPInstanceUID,
                                                    [source_frame] if source_frame is not None else None)
    fusion_rois = (fusion or {}).get("rois") or {}
    groups = []
    for name, roi in results["rois"].items():
        if name not in segments:
            raise InputError(f"ROI {name!r} of results.json has no segment in the segmentation")
        segment_number = segments[name]
        role = roles.get(name, "lesion")
        status = FIT_STATUS_VALUES.get(roi.get("status"))
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uids[name], identifier=name),
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=segmentation.SOPClassUID, sop_instance_uid=segmentation.SOPInstanceUID,
                segment_number=segment_number, source_images=[source_image]),
            time_point_context=context, finding_type=coded(SEGMENT_ROLE_CODES[role][1]),
            finding_sites=[hd.sr.FindingSite(coded(ANATOMIC_REGION))],
            measurements=roi_measurements(roi, fusion_rois.get(name), str(roi.get("model") or results.get("model"))),
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(coded(FIT_STATUS_CONCEPT), coded(status))]
            if status else None))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=coded(PROCEDURE_REPORTED), imaging_measurements=groups)
    sr = hd.sr.ComprehensiveSR(
        evidence=[*(source_instances or [source]), segmentation, *evidence], content=report[0], series_instance_uid=series_instance_uid,
        series_number=series_number, sop_instance_uid=sop_instance_uid, instance_number=instance_number,
        is_complete=True, **equipment())
    sr.SeriesDescription = "CEUS perfusion measurements"
    add_private_coding_scheme(sr)
    return sr


def _segment_numbers(segmentation: "Dataset") -> dict[str, int]:
    """Segment label -> segment number in a SEG."""
    return {str(item.SegmentLabel): int(item.SegmentNumber) for item in segmentation.SegmentSequence}
