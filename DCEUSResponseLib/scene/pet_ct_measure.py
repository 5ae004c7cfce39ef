"""The module's PET/CT Measure, Qt-free: the engine's ``fuse`` on an analysis folder, its files, its views
on the user's own nodes, and the per-ROI PET/CT table (the contract's ``fusion.csv`` columns).

Measure writes into ``out_dir`` (staged, as every output): ``landmarks/ceus_landmarks.csv`` (label,x,y,z in
CEUS frame mm) and ``landmarks/ct_landmarks.csv`` (label,x,y,z in LPS mm) from the two point lists, then
``fuse``'s own files (``fusion.json``, ``fusion.csv``, ``fusion/``). ``fuse`` reads the CT and the PET
from their DICOM files (:func:`DCEUSResponseLib.scene.volume_sources.volume_source`), so every number is the
engine's, from the headers (SUV) and the rescaled pixels; the scene shows the user's CT, the PET in SUVbw
(:func:`~DCEUSResponseLib.scene.pet_ct.suv_volume_node`: PETDICOMExtension's node as it is) and the CEUS
nodes under the registration, in the views ``fuse --scene`` builds (:func:`add_fusion_views`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from DCEUSResponseLib.catalogue import parameter_names, unit
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.export.fusion_files import write_fusion
from DCEUSResponseLib.export.staging import write_staged
from DCEUSResponseLib.fusion.pipeline import DEFAULT_SLAB_MM, Fusion, fuse
from DCEUSResponseLib.scene.fusion_nodes import CT_WINDOW_HU, GREY_COLOUR_NODE_ID
from DCEUSResponseLib.scene.fusion_views import FusionViews, add_fusion_views
from DCEUSResponseLib.scene.nodes import add_new_node
from DCEUSResponseLib.scene.pet_ct import (
    CeusNodes,
    PetSuv,
    pet_suv,
    place_ceus_nodes,
    point_list_landmarks,
    suv_volume_node,
)
from DCEUSResponseLib.scene.tables import add_double_column, add_int_column, add_string_column, nan_for_none
from DCEUSResponseLib.scene.transforms import registration_file_writer
from DCEUSResponseLib.spatial.registration import Landmarks

LANDMARK_FILES = ("landmarks/ceus_landmarks.csv", "landmarks/ct_landmarks.csv")
MEASURE_TABLE_NAME = "PET/CT measures"


@dataclass
class PetCtMeasurement:
    """What :func:`measure_pet_ct` made: the engine's :class:`Fusion`, the per-ROI table, the views, the
    PET node shown (SUVbw), the SUV check, the files written and every warning (one line each)."""

    fusion: Fusion
    table: Any
    views: FusionViews
    pet_node: Any | None
    suv: PetSuv | None
    written: list[str]
    warnings: list[str] = field(default_factory=list)


def _landmark_csv(points: Landmarks) -> str:
    rows = "".join(f"{label},{p[0]!r},{p[1]!r},{p[2]!r}\n" for label, p in
                   zip(points.labels, points.points.astype(float).tolist()))
    return "label,x,y,z\n" + rows


def write_landmark_files(out_dir: str, ceus_list: Any, patient_list: Any) -> str:
    """Write the two point lists as the contract's landmark CSVs into ``out_dir``; returns the
    ``CEUS_POINTS=CT_POINTS`` spec ``fuse`` reads (coordinates written with full precision)."""
    texts = (_landmark_csv(point_list_landmarks(ceus_list, ceus=True)),
             _landmark_csv(point_list_landmarks(patient_list, ceus=False)))

    def writer(text: str):
        def write(path: str) -> None:
            with open(path, "w", encoding="utf-8", newline="") as stream:
                stream.write(text)
        return write

    written = write_staged(out_dir, [(name, writer(text)) for name, text in zip(LANDMARK_FILES, texts)],
                           last=LANDMARK_FILES[1])
    return "=".join(written)


def measure_pet_ct(scene: Any, analysis_dir: str, ct_source: str, pet_source: str | None, out_dir: str,
                   nodes: CeusNodes, ct_node: Any, pet_node: Any = None, *, ceus_list: Any = None,
                   patient_list: Any = None, transform_path: str | None = None, slab_mm: float = DEFAULT_SLAB_MM,
                   volume_rendering_logic: Any = None, table: Any = None) -> PetCtMeasurement:
    """Run ``fuse`` on ``analysis_dir`` (an ``analyze`` / Export folder) with the CT / PET sources and either
    the two point lists or ``transform_path``, write its files into ``out_dir``, put the CEUS ``nodes``
    under its registration and set up the fused, map and 3D views on ``ct_node`` and the PET in SUVbw.
    Bad input is a one-line :class:`InputError` before anything is added to the scene."""
    if (transform_path is None) == (ceus_list is None or patient_list is None):
        raise InputError("Measure needs either both landmark point lists or a transform file")
    if pet_source is not None and pet_node is None:
        raise InputError("a PET series is given without its volume node")
    landmarks = write_landmark_files(out_dir, ceus_list, patient_list) if transform_path is None else None
    fusion = fuse(analysis_dir, ct_source, pet_source, landmarks=landmarks, transform=transform_path, slab_mm=slab_mm)
    written, warnings = write_fusion(fusion, out_dir,
                                     registration_writer=registration_file_writer(
                                         fusion.registration.ceus_to_patient_lps))
    if landmarks is not None:
        written = landmarks.split("=") + written
    place_ceus_nodes(scene, fusion.registration.ceus_to_patient_lps, fusion.registration_panel, fusion.analysis,
                     nodes)
    suv = shown_pet = None
    if pet_node is not None and fusion.pet is not None:
        suv = pet_suv(pet_node, fusion.pet, fusion.suv_factor)
        warnings += suv.warnings
        shown_pet = suv_volume_node(scene, pet_node, suv)
    _show_ct(ct_node)
    view_nodes = {"ct": ct_node, "clip": SimpleNamespace(contrast_volume=nodes.contrast_volume),
                  "segmentation": nodes.segmentation, "maps": nodes.maps}
    if shown_pet is not None:
        view_nodes["pet"] = shown_pet
    for role, node in (("ceus_landmarks", ceus_list), ("ct_landmarks", patient_list)):
        if node is not None:
            view_nodes[role] = node
    views = add_fusion_views(scene, view_nodes, fusion, volume_rendering_logic)
    table = add_measure_table(scene, fusion, table)
    return PetCtMeasurement(fusion, table, views, shown_pet, suv, written, warnings)


def _show_ct(ct_node: Any) -> None:
    display = ct_node.GetDisplayNode()
    if display is None:
        ct_node.CreateDefaultDisplayNodes()
        display = ct_node.GetDisplayNode()
    display.AutoWindowLevelOff()
    display.SetWindowLevel(*CT_WINDOW_HU)
    if not display.GetColorNodeID():
        display.SetAndObserveColorNodeID(GREY_COLOUR_NODE_ID)


def _number(value: Any) -> float:
    number = nan_for_none(value)
    return number if math.isfinite(number) else float("nan")


def add_measure_table(scene: Any, fusion: Fusion, table: Any = None, name: str = MEASURE_TABLE_NAME):
    """The per-ROI PET/CT table: the contract's ``fusion.csv`` measures (``pet.*`` SUVbw, TLR, ``ct.HU_mean``,
    the centroid in LPS mm) and the expected target error at the centroid (mm); NaN for null, the reason
    as text. ``table`` (from an earlier Measure) is refilled."""
    if table is None or table.GetScene() is not scene:
        table = add_new_node(scene, "vtkMRMLTableNode", name)
    table.RemoveAllColumns()
    rois = list(fusion.rois.values())
    add_string_column(table, "roi", [roi.name for roi in rois])
    for measure in parameter_names("pet"):
        if measure == "voxels":
            add_int_column(table, "voxels", [roi.pet.voxels if roi.pet else 0 for roi in rois],
                            "PET voxels in the ROI's footprint")
        elif measure == "TLR":
            add_double_column(table, "TLR", [_number(roi.tlr) for roi in rois], "",
                               "SUVmax / the reference ROI's SUVmean")
        else:
            add_double_column(table, measure, [_number(getattr(roi.pet, measure) if roi.pet else None)
                                                for roi in rois], unit(measure), f"{measure} (SUVbw) of the footprint")
    add_double_column(table, "HU_mean", [_number(roi.ct_hu_mean) for roi in rois], unit("HU_mean"),
                       "mean CT number of the footprint")
    for axis, letter in enumerate("xyz"):
        add_double_column(table, f"centroid_{letter}_mm", [roi.centroid_patient_mm[axis] for roi in rois], "mm",
                           f"ROI centroid, patient LPS {letter}")
    add_double_column(table, "expected_TRE_mm", [_number(roi.expected_tre_mm) for roi in rois], "mm",
                       "predicted registration error at the centroid")
    add_string_column(table, "reason", [roi.reason or "" for roi in rois])
    table.SetUseFirstColumnAsRowHeader(True)
    table.SetAttribute("DCEUS.SlabMm", repr(fusion.slab_mm))
    if fusion.suv_factor is not None:
        table.SetAttribute("DCEUS.SuvFactor", repr(float(fusion.suv_factor.factor)))
    return table
