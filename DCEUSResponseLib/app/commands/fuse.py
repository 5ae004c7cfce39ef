"""``python -m DCEUSResponseLib fuse``: the CEUS plane of an analysis in the patient's CT / SSTR-PET.

Options as ``docs/fusion-and-follow-up-contract.md`` states them, plus ``--pet-to-ct FILE`` (the rigid
PET -> CT transform for a PET in another Frame of Reference) and ``--transform-panel`` (which panel
of a dual display a given transform maps). Every bad input is found before anything is written.
"""
from __future__ import annotations

import argparse
import os
import sys

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.export.dicom_common import dicom_output_patterns
from DCEUSResponseLib.export.dicom_outputs import dicom_writers, fusion_dicom_outputs, require_highdicom
from DCEUSResponseLib.export.fusion_files import write_fusion
from DCEUSResponseLib.scene.application import have_slicer_core
from DCEUSResponseLib.scene.transforms import registration_file_writer
from DCEUSResponseLib.export.staging import prepare_output_dir, scene_path_inside
from DCEUSResponseLib.fusion.pipeline import fuse
from DCEUSResponseLib.scene.fusion_nodes import write_fusion_scene


def add_subparser(subparsers: argparse._SubParsersAction, summary: str) -> argparse.ArgumentParser:
    """Add ``fuse`` to the command line's subcommands."""
    fuse = subparsers.add_parser(
        "fuse", help=summary,
        description="Register the CEUS plane of an analyze output folder to the patient's CT (landmark pairs or "
        "a transform), resample CT (HU) and PET (SUVbw) on the contrast panel and measure every ROI; writes "
        "fusion.json, fusion.csv and fusion/ into --out.")
    fuse.add_argument("analysis", metavar="ANALYSIS_DIR", help="an analyze output folder")
    fuse.add_argument("--ct", required=True, metavar="CT_DIR", help="folder of one CT series (or FOLDER::SeriesUID)")
    fuse.add_argument("--pet", metavar="PET_DIR", help="folder of one PET series (or FOLDER::SeriesUID)")
    how = fuse.add_mutually_exclusive_group(required=True)
    how.add_argument("--landmarks", metavar="CEUS_POINTS=CT_POINTS",
                     help="paired point files (.mrk.json or CSV label,x,y,z; CEUS points also label,row,column)")
    how.add_argument("--transform", metavar="FILE", help="rigid CEUS -> patient transform (.h5, .tfm, .txt, .json)")
    fuse.add_argument("--transform-panel", choices=("bmode", "contrast"),
                      help="the panel of a dual display whose full-frame coordinates --transform maps "
                      "(default bmode; fusion.json registration.panel says which one a registration used)")
    fuse.add_argument("--pet-to-ct", metavar="FILE", help="rigid PET -> CT transform for a PET in another Frame of "
                      "Reference (.h5, .tfm, .txt as Slicer saves it with the PET under it; .json pet_to_ct_lps)")
    fuse.add_argument("--pet-segmentation", metavar="FILE.seg.nrrd",
                      help="Slicer segmentation on the PET grid, segments named like the CEUS ROIs")
    fuse.add_argument("--slab-mm", type=float, default=5.0, metavar="MM",
                      help="slab thickness across the CEUS plane in mm (default 5)")
    fuse.add_argument("--dicom", action="store_true", help="also write DICOM objects into dicom/: the analysis' "
                      "SEG and TID 1500 report with the PET/CT measures (and its Parametric Maps), and the Spatial "
                      "Registration of the CEUS plane to the CT (needs highdicom)")
    fuse.add_argument("--scene", metavar="FILE.mrb", help="also write a Slicer scene bundle, a path inside --out")
    fuse.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    fuse.set_defaults(run=run)
    return fuse


def run(args) -> int:
    """Run ``fuse`` from parsed arguments; prints the per-ROI summary. Raises InputError on bad input."""

    out_dir = os.path.abspath(args.out)
    scene = scene_path_inside(args.scene, out_dir) if args.scene else None
    if scene and not have_slicer_core():
        raise InputError("--scene needs slicer-core (pip install 'DCEUSResponse[slicer]')")
    if args.dicom:
        require_highdicom()  # before the work, not after it
    fusion = fuse(args.analysis, args.ct, args.pet, landmarks=args.landmarks, transform=args.transform,
                  pet_segmentation=args.pet_segmentation, slab_mm=args.slab_mm, pet_to_ct=args.pet_to_ct,
                  transform_panel=args.transform_panel)
    out_dir = prepare_output_dir(args.out)
    extra = []
    if scene:
        extra.append((scene, lambda path: write_fusion_scene(fusion, path)))
    if args.dicom:  # built before anything is written; staged with the rest, fusion.json last
        extra += dicom_writers(fusion_dicom_outputs(fusion, fusion.warnings))
    _, warnings = write_fusion(fusion, out_dir, extra_writers=extra,
                               registration_writer=registration_file_writer(fusion.registration.ceus_to_patient_lps),
                               replaces=_replaced_dicom(out_dir, args.dicom))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(format_fusion(fusion))
    print(f"fusion written to {out_dir}")
    return 0


def _replaced_dicom(out_dir: str, dicom: bool) -> tuple[str, ...]:
    """An earlier ``fuse --dicom`` run's objects in ``DIR/dicom`` describe another registration: this
    run replaces them, with ``--dicom`` or without, unless ``DIR`` is an analysis folder (its
    ``results.json`` names those objects as ``analyze``'s)."""
    if dicom or not os.path.exists(os.path.join(out_dir, "results.json")):
        return dicom_output_patterns()
    return ()


def format_fusion(fusion, parameters: dict | None = None) -> str:
    """A few lines: the registration's errors and per ROI SUVmax / SUVmean / TLR / HU (and ``parameters``,
    ``{roi: {name: value}}``, beside them)."""
    registration = fusion.registration
    lines = [f"registration: {registration.method} on the {fusion.registration_panel} panel"
             + (f", FRE {registration.fre_rms_mm:.2f} mm" if registration.fre_rms_mm is not None else "")
             + (f", LOO TRE {registration.tre_loo_rms_mm:.2f} mm" if registration.tre_loo_rms_mm is not None else "")]
    if fusion.suv_factor is not None:
        lines.append(f"SUVbw factor {fusion.suv_factor.factor:.6g} g/ml per {fusion.suv_factor.units}")
    for name, roi in fusion.rois.items():
        pet = roi.pet
        parts = [f"  {name:<10}"]
        if pet is not None and pet.SUVmax is not None:
            parts.append(f"SUVmax {pet.SUVmax:6.2f}  SUVmean {pet.SUVmean:6.2f}  SUVpeak {pet.SUVpeak:6.2f}")
        if roi.tlr is not None:
            parts.append(f"TLR {roi.tlr:5.2f}")
        if roi.ct_hu_mean is not None:
            parts.append(f"HU {roi.ct_hu_mean:6.1f}")
        if roi.expected_tre_mm is not None:
            parts.append(f"TRE~{roi.expected_tre_mm:.1f} mm")
        for key, value in (parameters or {}).get(name, {}).items():
            parts.append(f"{key} {value:.4g}" if value is not None else f"{key} -")
        if roi.reason:
            parts.append(f"({roi.reason})")
        lines.append("  ".join(parts))
    return "\n".join(lines)
