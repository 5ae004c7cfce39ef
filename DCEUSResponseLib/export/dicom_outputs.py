"""All DICOM outputs of one analysis: ``analyze --dicom``, the Slicer module's DICOM export, and
:func:`write_dicom_outputs` for an analysis folder written before.

The datasets (:func:`dicom_datasets`) are built from the contract's view of an analysis
(``results.json`` content), its full-frame ROI masks, its parameter maps, an optional
``fusion.json`` and the source clip's DICOM instances, all in memory:

* from an :class:`~DCEUSResponseLib.ceus.results.Analysis` (:func:`analysis_dicom_outputs`, what
  ``analyze`` and the module use: the ROI masks given, the maps computed);
* or from an analysis folder's files (:func:`build_dicom_outputs`: ``results.json``,
  ``maps/<PARAM>.nrrd``, ``rois/<NAME>.png`` or masks given).

The files (:func:`dicom_writers`, written staged with the other outputs, or alone by
:func:`write_dicom_outputs`, the SR last):

* ``PM_<PARAM>.dcm``: one Parametric Map per map (series "CEUS parametric maps");
* ``SEG_ROIs.dcm``: the ROIs on the reference frame;
* ``REG_ceus_to_ct.dcm``: with a fusion.json, the Spatial Registration CEUS plane -> CT;
* ``SR_measurements.dcm``: the TID 1500 measurement report referencing all of them.

The clip is a multi-frame file, or a folder of one single-frame series: the maps and the SEG are
then derived from the reference frame's instance, and the SR lists every instance as evidence.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from DCEUSResponseLib.catalogue import CATALOGUE
from DCEUSResponseLib.ceus.results import Analysis
from DCEUSResponseLib.clip import RoiMask
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.export.contract import results_have_maps, results_json
from DCEUSResponseLib.export.dicom_common import (  # noqa: F401 (the file names: also imported from here)
    DICOM_FOLDER,
    REG_FILE,
    SEG_FILE,
    SR_FILE,
    SourceClip,
    dicom_output_patterns,
    frame_geometry,
    lesion_tracking_uid,
    parametric_map_file,
    read_source_clip,
)
from DCEUSResponseLib.export.dicom_pm import MapImage, build_parametric_map, map_images, read_map_nrrd
from DCEUSResponseLib.export.dicom_registration import build_spatial_registration
from DCEUSResponseLib.export.dicom_seg import build_roi_segmentation, roi_role
from DCEUSResponseLib.export.dicom_sr import build_measurement_report
from DCEUSResponseLib.export.fusion_files import fusion_json
from DCEUSResponseLib.fusion.pipeline import Fusion
from DCEUSResponseLib.export.staging import write_staged
from DCEUSResponseLib.io.masks import read_roi_masks

HIGHDICOM_MISSING = ("the DICOM outputs need highdicom, which is not installed: "
                     "pip install 'DCEUSResponse[dicom]' (or pip install highdicom)")


@dataclass
class DicomOutputs:
    """The datasets :func:`dicom_datasets` made, by output file name."""

    datasets: dict[str, Any] = field(default_factory=dict)
    tracking_uids: dict[str, str] = field(default_factory=dict)


def require_highdicom() -> None:
    """InputError naming the ``dicom`` extra when highdicom cannot be imported (check before the work)."""
    try:
        import highdicom  # noqa: F401
    except ImportError:
        raise InputError(HIGHDICOM_MISSING) from None


def read_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except FileNotFoundError:
        raise InputError(f"{what} not found", path) from None
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {what} ({error})", path) from None


def dicom_datasets(results: Mapping[str, Any], source: SourceClip, masks: Mapping[str, np.ndarray],
                   maps: Sequence[MapImage], *, time_point: str, time_point_order: int | None = None,
                   fusion: Mapping[str, Any] | None = None, roles: Mapping[str, str] | None = None) -> DicomOutputs:
    """Every DICOM dataset of one analysis (``results``: the content of its results.json).

    ``masks``: full-frame boolean masks by ROI name (every ROI of ``results``); ``maps``: the maps to
    write (those with a catalogue code, in catalogue order); ``fusion``: fusion.json content or None;
    ``roles``: ROI name -> lesion / reference / necrosis (default :func:`dicom_seg.roi_role`).
    """
    require_highdicom()
    import highdicom as hd

    clip = results.get("clip") or {}
    recorded = (clip.get("uids") or {}).get("SOPInstanceUID")
    if recorded and recorded != source.first.SOPInstanceUID:
        raise InputError(f"results.json was made from clip {recorded}, not from this one", source.path)
    frame_shape = (int(clip["rows"]), int(clip["columns"]))
    if (int(source.first.Rows), int(source.first.Columns)) != frame_shape:
        raise InputError(f"the clip's frames are {source.first.Rows} x {source.first.Columns} but results.json "
                         f"says {frame_shape[0]} x {frame_shape[1]}", source.path)
    if clip.get("frames") is not None and int(clip["frames"]) != source.n_frames:
        raise InputError(f"the clip has {source.n_frames} frames but results.json says {clip['frames']}", source.path)
    reference, reference_number = source.frame(int(clip.get("reference_frame") or 0))
    frame = frame_geometry(source.first, clip.get("pixel_spacing_mm"))
    masks = _checked_masks(results, masks, source.path)
    roles = {name: (roles or {}).get(name) or roi_role(name, results.get("reference")) for name in masks}
    patient_id = str(source.first.get("PatientID", ""))
    tracking = {name: lesion_tracking_uid(patient_id, name, str(source.first.get("IssuerOfPatientID", "")))
                for name in masks}
    outputs = DicomOutputs(tracking_uids=tracking)

    seg = build_roi_segmentation(masks, roles, tracking, reference, frame, source_frame=reference_number,
                                 series_instance_uid=hd.UID(), sop_instance_uid=hd.UID())
    outputs.datasets[SEG_FILE] = seg
    map_series = hd.UID()
    by_name = {image.name: image for image in maps}
    for number, name in enumerate([name for name in CATALOGUE if name in by_name], start=1):
        outputs.datasets[parametric_map_file(name)] = build_parametric_map(
            by_name[name], reference, frame, frame_shape, source_frame=reference_number,
            series_instance_uid=map_series, sop_instance_uid=hd.UID(), instance_number=number)
    registration = (fusion or {}).get("registration") or {}
    ct_frame = ((fusion or {}).get("ct") or {}).get("frame_of_reference_uid")
    if registration.get("ceus_to_patient_lps") is not None and ct_frame:
        outputs.datasets[REG_FILE] = build_spatial_registration(
            registration["ceus_to_patient_lps"], ct_frame, frame.frame_of_reference_uid, reference,
            method=registration.get("method") or "landmarks", series_instance_uid=hd.UID(),
            sop_instance_uid=hd.UID())
    evidence = [ds for name, ds in outputs.datasets.items() if name != SEG_FILE]
    outputs.datasets[SR_FILE] = build_measurement_report(
        results, reference, seg, roles=roles, tracking_uids=tracking, time_point=time_point,
        time_point_order=time_point_order, fusion=fusion, source_frame=reference_number,
        source_instances=source.instances, evidence=evidence, series_instance_uid=hd.UID(),
        sop_instance_uid=hd.UID())
    return outputs


def analysis_dicom_outputs(analysis: Analysis, *, time_point: str, time_point_order: int | None = None,
                           fusion: Mapping[str, Any] | None = None,
                           roles: Mapping[str, str] | None = None,
                           source_clip_path: str | None = None) -> DicomOutputs:
    """The DICOM datasets of an analysis in memory: its ROI masks, its maps (if computed), its clip's
    DICOM instances (``source_clip_path``, default ``analysis.clip.source``: a DICOM file or a
    single-frame series folder)."""
    require_highdicom()
    if not analysis.roi_masks:
        raise InputError("the analysis has no ROI masks to write as a DICOM segmentation", analysis.clip.source)
    source = read_source_clip(source_clip_path or analysis.clip.source)
    maps = map_images(analysis.maps) if analysis.maps is not None else []
    return dicom_datasets(results_json(analysis), source, {roi.name: roi.mask for roi in analysis.roi_masks}, maps,
                          time_point=time_point, time_point_order=time_point_order, fusion=fusion, roles=roles)


def build_dicom_outputs(analysis_dir: str, source_clip_path: str, *,
                        rois: Sequence[RoiMask] | Mapping[str, np.ndarray] | None = None,
                        fusion_path: str | None = None, time_point: str | None = None,
                        time_point_order: int | None = None, roles: Mapping[str, str] | None = None) -> DicomOutputs:
    """Every DICOM dataset of one analysis folder, in memory (see :func:`write_dicom_outputs`)."""
    require_highdicom()
    results = read_json(os.path.join(analysis_dir, "results.json"), "results.json")
    source = read_source_clip(source_clip_path)
    clip = results.get("clip") or {}
    frame_shape = (int(clip["rows"]), int(clip["columns"]))
    masks = _folder_masks(analysis_dir, results, frame_shape, rois)
    maps = [read_map_nrrd(path) for path in _map_files(analysis_dir, results)]
    fusion_path = fusion_path or os.path.join(analysis_dir, "fusion.json")
    fusion = read_json(fusion_path, "fusion.json") if os.path.exists(fusion_path) else None
    return dicom_datasets(results, source, masks, maps, fusion=fusion, roles=roles, time_point_order=time_point_order,
                          time_point=time_point or os.path.basename(os.path.normpath(analysis_dir)))


def fusion_dicom_outputs(fusion: Fusion, warnings: Sequence[str] = ()) -> DicomOutputs:
    """The DICOM datasets of a ``fuse`` run: its analysis' SEG, SR (with the PET/CT measures) and maps,
    and the Spatial Registration of the CEUS plane to the CT (``fuse --dicom``)."""
    require_highdicom()
    inputs = fusion.analysis
    source = read_source_clip(inputs.clip.source)
    maps = [read_map_nrrd(path) for path in _map_files(inputs.folder, inputs.results)]
    return dicom_datasets(inputs.results, source, {roi.name: roi.mask for roi in inputs.rois}, maps,
                          fusion=fusion_json(fusion, list(warnings)),
                          time_point=os.path.basename(os.path.normpath(inputs.folder)))


def dicom_writers(outputs: DicomOutputs, folder: str = DICOM_FOLDER) -> list[tuple[str, Callable[[str], None]]]:
    """(relative path, writer(path)) of every dataset, for :func:`staging.write_staged` or
    :func:`contract.write_analysis`'s extra writers."""

    def writer(dataset):
        return lambda path: dataset.save_as(path, enforce_file_format=True)

    prefix = f"{folder}/" if folder else ""
    return [(prefix + name, writer(dataset)) for name, dataset in outputs.datasets.items()]


def write_dicom_outputs(analysis_dir: str, source_clip_path: str, out_dicom_dir: str, **options) -> list[str]:
    """Write the DICOM outputs of ``analysis_dir`` into ``out_dicom_dir``; returns the written paths.

    ``source_clip_path``: the clip's DICOM file, or the folder of its single-frame series.
    ``options`` as for :func:`build_dicom_outputs`: ``rois`` (default: ``rois/<NAME>.png`` of the
    analysis), ``fusion_path`` (default: ``fusion.json`` beside results.json, if there),
    ``time_point`` (default: the analysis folder's name), ``time_point_order``, ``roles``.
    """
    return write_datasets(build_dicom_outputs(analysis_dir, source_clip_path, **options), out_dicom_dir)


def write_datasets(outputs: DicomOutputs, out_dicom_dir: str) -> list[str]:
    """Write ``outputs`` into ``out_dicom_dir`` (staged, the SR last); returns the written paths."""
    return write_staged(out_dicom_dir, dicom_writers(outputs, folder=""), last=SR_FILE,
                        replaces=dicom_output_patterns(""))


def _map_files(analysis_dir: str, results: Mapping[str, Any]) -> list[str]:
    """``maps/<PARAM>.nrrd`` of the catalogue's quantities (not the status map), when results.json says
    its run computed maps: ``maps/`` of an earlier ``--maps`` run stays beside a later run's results
    (``maps: null``), and must not become that run's Parametric Maps."""
    if not results_have_maps(results):
        return []
    paths = glob.glob(os.path.join(glob.escape(analysis_dir), "maps", "*.nrrd"))
    return sorted(p for p in paths if os.path.basename(p)[:-len(".nrrd")] in CATALOGUE)


def _folder_masks(analysis_dir: str, results: Mapping[str, Any], frame_shape: tuple[int, int],
                  rois: Sequence[RoiMask] | Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    if rois is None:
        specs = []
        for name in results.get("rois") or {}:
            path = os.path.join(analysis_dir, "rois", f"{name}.png")
            if not os.path.isfile(path):
                raise InputError(f"mask of ROI {name!r} not found: give the ROIs, or write rois/<NAME>.png", path)
            specs.append(f"{name}={path}")
        rois = read_roi_masks(specs, frame_shape)
    return dict(rois) if isinstance(rois, Mapping) else {roi.name: roi.mask for roi in rois}


def _checked_masks(results: Mapping[str, Any], masks: Mapping[str, np.ndarray], path: str) -> dict[str, np.ndarray]:
    names = list(results.get("rois") or {})
    missing = [name for name in names if name not in masks]
    if missing:
        raise InputError(f"no mask for ROI(s) {', '.join(missing)} of results.json", path)
    return {name: np.asarray(masks[name]).astype(bool) for name in names}
