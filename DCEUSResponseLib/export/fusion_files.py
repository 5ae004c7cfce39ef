"""The contract's files of ``fuse``: ``fusion.json``, ``fusion.csv``, ``fusion/ct_on_ceus.nrrd``,
``fusion/suv_on_ceus.nrrd``, ``fusion/registration.h5`` and the ``fusion/png/`` previews.

All are views of one :class:`DCEUSResponseLib.fusion.pipeline.Fusion`, written atomically through
:mod:`DCEUSResponseLib.export.staging` with ``fusion.json`` last. The NRRD files carry the geometry and
header keys of ``maps/*.nrrd`` (2D, space directions the pixel spacing, space origin the first pixel's
centre in the clip's frame geometry): they overlay the contrast panel and its maps.
"""
from __future__ import annotations

import csv
import io
import math
import os
from typing import Callable, Sequence

import numpy as np

from DCEUSResponseLib import SOFTWARE_NAME, __version__
from DCEUSResponseLib.catalogue import parameter_names
from DCEUSResponseLib.export.csv_cells import csv_safe
from DCEUSResponseLib.export.fusion_previews import preview_writers
from DCEUSResponseLib.export.staging import json_text, write_staged
from DCEUSResponseLib.fusion.pipeline import Fusion, RoiFusion

# The measures of a fusion.json ROI section, in the contract's order (the catalogue's families).
PET_MEASURES, CT_MEASURES, PET3D_MEASURES = (parameter_names(family) for family in ("pet", "ct", "pet3d"))
CSV_COLUMNS = ("roi", *PET_MEASURES, *CT_MEASURES, "centroid_x_mm", "centroid_y_mm", "centroid_z_mm",
               *(f"pet3d_{name}" for name in PET3D_MEASURES), "reason")
SLICER_EXTRA_WARNING = ("fusion/registration.h5 not written: Slicer's transform storage is needed "
                        "(pip install 'DCEUSResponse[slicer]', the slicer-core wheel)")


def _volume_json(volume, extra: dict | None = None) -> dict:
    return {"source": os.path.abspath(volume.source), "series_uid": volume.series_uid,
            "frame_of_reference_uid": volume.frame_of_reference_uid, "dims": volume.dims,
            "spacing_mm": [float(v) for v in volume.spacing_mm], **(extra or {})}


def _matrix(matrix: np.ndarray | None) -> list | None:
    return None if matrix is None else [[float(v) for v in row] for row in np.asarray(matrix)]


def _roi_json(roi: RoiFusion) -> dict:
    pet = None
    if roi.pet is not None:
        pet = {name: roi.tlr if name == "TLR" else getattr(roi.pet, name) for name in PET_MEASURES}
    pet3d = None
    if roi.pet3d is not None:
        pet3d = {**{name: getattr(roi.pet3d, name) for name in PET3D_MEASURES}, "reason": roi.pet3d.reason}
    return {"pet": pet, "ct": {"HU_mean": roi.ct_hu_mean, "voxels": roi.ct_voxels}, "pet3d": pet3d,
            "centroid_patient_mm": list(roi.centroid_patient_mm), "expected_tre_mm": roi.expected_tre_mm,
            "panel": roi.panel, "reason": roi.reason}


def fusion_json(fusion: Fusion, warnings: list[str]) -> dict:
    """The ``fusion.json`` content (the contract's keys, and the extensions the contract copy lists)."""
    registration = fusion.registration
    pet = None
    if fusion.pet is not None:
        pet = _volume_json(fusion.pet, {"suv": fusion.suv_factor.to_dict(),
                                        "pet_to_ct_lps": _matrix(fusion.pet_to_ct_lps)})
    return {
        "analysis": fusion.analysis.folder,
        "ct": _volume_json(fusion.ct),
        "pet": pet,
        "registration": {
            "method": registration.method,
            "ceus_to_patient_lps": _matrix(registration.ceus_to_patient_lps),
            "landmarks": [{"label": p.label, "ceus_mm": list(p.ceus_mm), "patient_mm": list(p.patient_mm),
                           "residual_mm": p.residual_mm} for p in registration.landmarks],
            "fre_rms_mm": registration.fre_rms_mm,
            "tre_loo_rms_mm": registration.tre_loo_rms_mm,
            "warnings": list(registration.warnings),
            "source": registration.source,
            "panel": fusion.registration_panel,
            "panel_offset_px": list(fusion.analysis.panel_offset_px()),
            "contrast_panel_to_patient_lps": _matrix(fusion.panel_matrix("contrast")),
        },
        "slab_mm": fusion.slab_mm,
        "rois": {name: _roi_json(roi) for name, roi in fusion.rois.items()},
        "reference": fusion.analysis.reference,
        "pet_segmentation": os.path.abspath(fusion.pet_segmentation) if fusion.pet_segmentation else None,
        "warnings": warnings,
        "software": {"name": SOFTWARE_NAME, "version": __version__},
    }


def _number(value) -> str:
    if value is None:
        return ""
    value = float(value)
    return repr(value) if math.isfinite(value) else ""


def fusion_csv(fusion: Fusion) -> str:
    """One row per ROI with the contract's columns."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for roi in fusion.rois.values():
        pet, seg = roi.pet, roi.pet3d
        pet_cells = [_number(roi.tlr) if name == "TLR" else "" if not pet
                     else pet.voxels if name == "voxels" else _number(getattr(pet, name)) for name in PET_MEASURES]
        writer.writerow([csv_safe(roi.name), *pet_cells, _number(roi.ct_hu_mean),
                         *(_number(v) for v in roi.centroid_patient_mm),
                         *(_number(getattr(seg, key)) if seg else "" for key in PET3D_MEASURES),
                         csv_safe(roi.reason or (seg.reason if seg and seg.reason else "") or "")])
    return buffer.getvalue()


def plane_nrrd_writer(fusion: Fusion, values: np.ndarray, name: str, unit: str) -> Callable[[str], None]:
    """A contrast-panel image as NRRD with the geometry and header keys of ``maps/*.nrrd``."""
    def write(path: str) -> None:
        import nrrd

        grid = fusion.contrast_grid
        row_mm, col_mm = grid.frame_spacing_mm
        origin = (grid.first_pixel[1] * col_mm, grid.first_pixel[0] * row_mm)
        header = {"space dimension": 2, "space directions": np.array([[col_mm, 0.0], [0.0, row_mm]]),
                  "space origin": np.array(origin), "space units": ["mm", "mm"], "kinds": ["domain", "domain"],
                  "encoding": "gzip", "content": name, "DCEUS_parameter": name, "DCEUS_unit": unit,
                  "DCEUS_model": "fusion", "DCEUS_binning": "1", "DCEUS_slab_mm": repr(fusion.slab_mm)}
        nrrd.write(path, np.ascontiguousarray(values, dtype=np.float32), header, index_order="C",
                   compression_level=1)
    return write


def _text_writer(text: str) -> Callable[[str], None]:
    def write(path: str) -> None:
        with open(path, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
    return write


def write_fusion(fusion: Fusion, out_dir: str, extra_writers=(), extra_warnings=(),
                 registration_writer: Callable[[str], None] | None = None,
                 replaces: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Write every ``fuse`` output into ``out_dir`` (``fusion.json`` last); returns (paths, warnings).
    ``replaces``: an earlier run's files this one supersedes (``fuse --dicom``: the DICOM objects).

    ``registration_writer(path)`` writes ``fusion/registration.h5`` through Slicer's transform storage
    (the application passes :func:`DCEUSResponseLib.scene.transforms.registration_file_writer`'s; export
    itself builds no Slicer nodes); without it the file is left out with a warning naming the extra.
    """
    warnings = list(fusion.warnings) + list(extra_warnings)
    writers = [("fusion.csv", _text_writer(fusion_csv(fusion))),
               ("fusion/ct_on_ceus.nrrd", plane_nrrd_writer(fusion, fusion.ct_on_ceus, "CT", "HU"))]
    if fusion.suv_on_ceus is not None:
        writers.append(("fusion/suv_on_ceus.nrrd", plane_nrrd_writer(fusion, fusion.suv_on_ceus, "SUVbw", "g/ml")))
    if registration_writer is not None:
        writers.append(("fusion/registration.h5", registration_writer))
    else:
        warnings.append(SLICER_EXTRA_WARNING)
    previews, preview_notes = preview_writers(fusion)
    writers += previews
    warnings += preview_notes
    writers += list(extra_writers)
    writers.append(("fusion.json", _text_writer(json_text(fusion_json(fusion, warnings)))))
    return write_staged(out_dir, writers, last="fusion.json", replaces=replaces), warnings
