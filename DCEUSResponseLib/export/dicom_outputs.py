"""All DICOM outputs of one analysis, from its files: ``write_dicom_outputs`` (``analyze --dicom``).

Works on the documented outside view only: ``results.json``, ``maps/<PARAM>.nrrd``, the ROI masks
(``rois/<NAME>.png`` of the analysis, or given), an optional ``fusion.json`` and the source clip's
DICOM file. Writes into ``out_dicom_dir`` (staged: every file is written into a staging folder
inside it, then moved into place, the SR last):

* ``PM_<PARAM>.dcm``: one Parametric Map per map (series "CEUS parametric maps");
* ``SEG_ROIs.dcm``: the ROIs on the reference frame;
* ``REG_ceus_to_ct.dcm``: with a fusion.json, the Spatial Registration CEUS plane -> CT;
* ``SR_measurements.dcm``: the TID 1500 measurement report referencing all of them.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from DCEUSResponseLib.clip import RoiMask
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.export.dicom_codes import PARAMETER_CODES
from DCEUSResponseLib.export.dicom_common import frame_geometry, lesion_tracking_uid, read_source_header
from DCEUSResponseLib.export.dicom_pm import build_parametric_map, read_map_nrrd
from DCEUSResponseLib.export.dicom_registration import build_spatial_registration
from DCEUSResponseLib.export.dicom_seg import build_roi_segmentation, roi_role
from DCEUSResponseLib.export.dicom_sr import build_measurement_report
from DCEUSResponseLib.export.staging import write_staged
from DCEUSResponseLib.io.masks import read_roi_masks

SR_FILE = "SR_measurements.dcm"
SEG_FILE = "SEG_ROIs.dcm"
REG_FILE = "REG_ceus_to_ct.dcm"


@dataclass
class DicomOutputs:
    """The datasets :func:`build_dicom_outputs` made, by output file name."""

    datasets: dict[str, Any] = field(default_factory=dict)
    tracking_uids: dict[str, str] = field(default_factory=dict)


def read_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except FileNotFoundError:
        raise InputError(f"{what} not found", path) from None
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {what} ({error})", path) from None


def build_dicom_outputs(analysis_dir: str, source_clip_path: str, *,
                        rois: Sequence[RoiMask] | Mapping[str, np.ndarray] | None = None,
                        fusion_path: str | None = None, time_point: str | None = None,
                        time_point_order: int | None = None, roles: Mapping[str, str] | None = None) -> DicomOutputs:
    """Every DICOM dataset of one analysis folder, in memory (see :func:`write_dicom_outputs`)."""
    import highdicom as hd

    results = read_json(os.path.join(analysis_dir, "results.json"), "results.json")
    source = read_source_header(source_clip_path)
    clip = results.get("clip") or {}
    recorded = (clip.get("uids") or {}).get("SOPInstanceUID")
    if recorded and recorded != source.SOPInstanceUID:
        raise InputError(f"results.json was made from clip {recorded}, not from this file", source_clip_path)
    frame_shape = (int(clip["rows"]), int(clip["columns"]))
    if (int(source.Rows), int(source.Columns)) != frame_shape:
        raise InputError(f"the clip's frames are {source.Rows} x {source.Columns} but results.json says "
                         f"{frame_shape[0]} x {frame_shape[1]}", source_clip_path)
    reference_frame = int(clip.get("reference_frame") or 0)
    frame = frame_geometry(source, clip.get("pixel_spacing_mm"))
    masks = _roi_masks(analysis_dir, results, frame_shape, rois)
    roles = {name: (roles or {}).get(name) or roi_role(name, results.get("reference")) for name in masks}
    patient_id = str(source.get("PatientID", ""))
    tracking = {name: lesion_tracking_uid(patient_id, name, str(source.get("IssuerOfPatientID", "")))
                for name in masks}
    outputs = DicomOutputs(tracking_uids=tracking)

    seg = build_roi_segmentation(masks, roles, tracking, source, frame, reference_frame=reference_frame,
                                 series_instance_uid=hd.UID(), sop_instance_uid=hd.UID())
    outputs.datasets[SEG_FILE] = seg
    map_series = hd.UID()
    for number, path in enumerate(_map_files(analysis_dir), start=1):
        image = read_map_nrrd(path)
        outputs.datasets[f"PM_{image.name}.dcm"] = build_parametric_map(
            image, source, frame, frame_shape, reference_frame=reference_frame, series_instance_uid=map_series,
            sop_instance_uid=hd.UID(), instance_number=number)
    fusion_path = fusion_path or os.path.join(analysis_dir, "fusion.json")
    fusion = read_json(fusion_path, "fusion.json") if os.path.exists(fusion_path) else None
    registration = (fusion or {}).get("registration") or {}
    ct_frame = ((fusion or {}).get("ct") or {}).get("frame_of_reference_uid")
    if registration.get("ceus_to_patient_lps") is not None and ct_frame:
        outputs.datasets[REG_FILE] = build_spatial_registration(
            registration["ceus_to_patient_lps"], ct_frame, frame.frame_of_reference_uid, source,
            method=registration.get("method") or "landmarks", series_instance_uid=hd.UID(),
            sop_instance_uid=hd.UID())
    evidence = [ds for name, ds in outputs.datasets.items() if name != SEG_FILE]
    outputs.datasets[SR_FILE] = build_measurement_report(
        results, source, seg, roles=roles, tracking_uids=tracking,
        time_point=time_point or os.path.basename(os.path.normpath(analysis_dir)), time_point_order=time_point_order,
        fusion=fusion, reference_frame=reference_frame, evidence=evidence, series_instance_uid=hd.UID(),
        sop_instance_uid=hd.UID())
    return outputs


def write_dicom_outputs(analysis_dir: str, source_clip_path: str, out_dicom_dir: str, **options) -> list[str]:
    """Write the DICOM outputs of ``analysis_dir`` into ``out_dicom_dir``; returns the written paths.

    ``options`` as for :func:`build_dicom_outputs`: ``rois`` (default: ``rois/<NAME>.png`` of the
    analysis), ``fusion_path`` (default: ``fusion.json`` beside results.json, if there),
    ``time_point`` (default: the analysis folder's name), ``time_point_order``, ``roles``.
    """
    outputs = build_dicom_outputs(analysis_dir, source_clip_path, **options)

    def writer(dataset):
        return lambda path: dataset.save_as(path, enforce_file_format=True)

    return write_staged(out_dicom_dir, [(name, writer(ds)) for name, ds in outputs.datasets.items()], last=SR_FILE)


def _map_files(analysis_dir: str) -> list[str]:
    """``maps/<PARAM>.nrrd`` for the parameters with a code, in the order of the code table."""
    found = {os.path.basename(p)[:-len(".nrrd")]: p for p in glob.glob(os.path.join(analysis_dir, "maps", "*.nrrd"))}
    return [found[name] for name in PARAMETER_CODES if name in found]


def _roi_masks(analysis_dir: str, results: Mapping[str, Any], frame_shape: tuple[int, int],
               rois: Sequence[RoiMask] | Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    names = list(results.get("rois") or {})
    if rois is None:
        specs = []
        for name in names:
            path = os.path.join(analysis_dir, "rois", f"{name}.png")
            if not os.path.isfile(path):
                raise InputError(f"mask of ROI {name!r} not found: give the ROIs, or write rois/<NAME>.png", path)
            specs.append(f"{name}={path}")
        rois = read_roi_masks(specs, frame_shape)
    masks = dict(rois) if isinstance(rois, Mapping) else {roi.name: roi.mask for roi in rois}
    missing = [name for name in names if name not in masks]
    if missing:
        raise InputError(f"no mask for ROI(s) {', '.join(missing)} of results.json", analysis_dir)
    return {name: np.asarray(masks[name]).astype(bool) for name in names}
