"""The bundled demo study: one synthetic patient, baseline and follow-up, analysed end to end, and the
patient's whole course (three exams, the baseline injected twice) through ``study``.

The patient has a liver metastasis with a perfused rim and a necrotic core (``lesion1``), a second
solid metastasis (``lesion2``) and normal liver (``liver``, the reference). After PRRT the rim of
lesion1 loses 60 % of its blood volume (a responder), lesion2 only 10 % (a non-responder). The
follow-up was recorded with 30 % more receive gain, which changes every absolute value but not the
reference-normalised ones: that is why the response rule is relative.

Clips are dual display (B-mode | gold-tinted contrast), JPEG Baseline, as scanners export them,
recorded free-breathing (the anatomy swings by 6 px, 1.2 mm, every 4.5 s); the follow-up clip also
lost probe contact for two frames and repeats one frame. The analysis compensates the motion,
excludes those frames, and writes parametric maps and, when slicer-core is installed, a Slicer
scene per exam.

The patient also has a contrast CT and a 68Ga-DOTATATE PET (``study/ctpet/``, CI-size grids, the
lesions as spheres of known HU and SUV, ``synthetic/patient.py``) in which the CEUS plane lies at
``DEMO_CEUS_TO_PATIENT_LPS``. Six landmark pairs register each exam's plane: the centres of the
three ROIs and three points spread over the B-mode panel (the synthetic liver has no vessel or edge
in this plane); CEUS points in pixels (exact), CT points with 1 mm Gaussian noise per axis (seeded),
as a radiologist's clicks would have. ``fuse`` then measures the SUV of every ROI.

The course: a second injection at baseline (``baseline-2``: other noise and 15 % more gain, the
repeatability of the measurement) and a third exam (``followup2``, three months after ``followup``:
lesion1 falls further, to 25 % of its baseline blood volume, lesion2 progresses, +35 %). ``demo``
writes ``study/MANIFEST.csv`` for the four clips and runs ``study`` on it into ``trial/`` (ROI
analysis, no maps: the maps of the two main exams are in ``baseline/`` and ``followup/``).
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from DCEUSResponseLib.app.commands.fuse import format_fusion
from DCEUSResponseLib.app.summary import format_response, format_summary
from DCEUSResponseLib.ceus.options import AnalysisOptions
from DCEUSResponseLib.ceus.pipeline import analyze_files
from DCEUSResponseLib.export.contract import write_analysis
from DCEUSResponseLib.export.fusion_files import write_fusion
from DCEUSResponseLib.export.staging import StagedFiles, json_text, prepare_output_dir, write_staged
from DCEUSResponseLib.fusion.pipeline import fuse
from DCEUSResponseLib.export.tic_plot import analysis_panel, plot_tic_panels
from DCEUSResponseLib.longitudinal.response import compare_folders
from DCEUSResponseLib.scene.application import have_slicer_core
from DCEUSResponseLib.scene.bundle import write_scene_bundle
from DCEUSResponseLib.scene.fusion_nodes import write_fusion_scene
from DCEUSResponseLib.scene.transforms import registration_file_writer
from DCEUSResponseLib.synthetic.clips import (
    PerfusionRegion,
    breathing_motion,
    liver,
    make_clip,
    truth_parameters,
    write_clip,
    write_roi_masks,
)
from DCEUSResponseLib.synthetic.dicom_ct_pet import write_patient
from DCEUSResponseLib.synthetic.patient import (
    DEMO_CEUS_TO_PATIENT_LPS,
    demo_roi_panel,
    make_patient,
)

PANEL_SHAPE = (200, 240)
DYNAMIC_RANGE_DB = 50.0
INJECTION_TIME_S = 2.0
REFERENCE = "liver"
EXAMS = ("baseline", "followup")
PATIENT = "DEMO"
STUDY_EXAMS = ("baseline", "followup", "followup2")
STUDY_FOLDER = "trial"
STUDY_WORKERS = 2
BREATHING_AMPLITUDE_PX, BREATHING_PERIOD_S = 6.0, 4.5
FOLLOWUP_DROPOUT_FRAMES, FOLLOWUP_DUPLICATE_FRAMES = (120, 121), (150,)


def _breathing(time_s: float) -> np.ndarray:
    return breathing_motion(np.array([time_s]), BREATHING_AMPLITUDE_PX, BREATHING_PERIOD_S, (1.0, 0.3))[0]


def demo_regions(exam: str) -> list[PerfusionRegion]:
    """The demo patient's regions at ``exam`` (``"baseline"``, ``"followup"`` or ``"followup2"``)."""
    rows, columns = PANEL_SHAPE
    rim = {"O": 3e-4, "A": 0.36, "t0": 7.0, "mu": np.log(11.0), "sigma": 0.5}
    solid = {"O": 3e-4, "A": 0.26, "t0": 8.0, "mu": np.log(12.0), "sigma": 0.55}
    if exam == "followup":
        rim = {**rim, "A": rim["A"] * 0.4, "t0": 8.0, "mu": np.log(13.0)}
        solid = {**solid, "A": solid["A"] * 0.9}
    elif exam == "followup2":
        rim = {**rim, "A": rim["A"] * 0.25, "t0": 8.0, "mu": np.log(13.5)}
        solid = {**solid, "A": solid["A"] * 1.35}
    core = {"O": 3e-4, "A": 0.0, "t0": 0.0, "mu": 0.0, "sigma": 1.0}
    return [
        PerfusionRegion("liver", (rows * 0.75, columns * 0.28), 34, liver(), is_background=True),
        PerfusionRegion("lesion1", (rows * 0.40, columns * 0.62), 44, rim, inner_radius=18, echogenicity=0.6),
        PerfusionRegion("necrosis", (rows * 0.40, columns * 0.62), 18, core, echogenicity=0.3),
        PerfusionRegion("lesion2", (rows * 0.78, columns * 0.74), 22, solid, echogenicity=0.7),
    ]


LANDMARK_NOISE_MM = 1.0
# (label, row, column) on the B-mode panel for the points that are not ROI centres
_SPREAD_POINTS = (("upper_left", 20.0, 24.0), ("upper_right", 24.0, 214.0), ("lower_middle", 186.0, 120.0))


def demo_landmarks(exam: str = "baseline", noise_mm: float = LANDMARK_NOISE_MM, seed: int = 0
                   ) -> tuple[list[tuple[str, float, float]], list[tuple[str, np.ndarray]]]:
    """The demo's landmark pairs: CEUS ``(label, row, column)`` full-frame pixels on the B-mode panel and
    CT ``(label, LPS mm)``, the true pose of each CEUS point plus ``noise_mm`` Gaussian noise per axis."""

    panel = demo_roi_panel()
    dy, dx = panel.spacing_mm
    points = [(region.name, *region.center) for region in demo_regions(exam) if region.name != "necrosis"]
    points += list(_SPREAD_POINTS)
    rng = np.random.default_rng(seed)
    ceus, ct = [], []
    for label, row, column in points:
        full_row, full_column = panel.y0 + float(row), panel.x0 + float(column)
        ceus.append((label, full_row, full_column))
        exact = (DEMO_CEUS_TO_PATIENT_LPS @ [full_column * dx, full_row * dy, 0.0, 1.0])[:3]
        ct.append((label, exact + rng.normal(0.0, noise_mm, 3)))
    return ceus, ct


def write_landmark_files(folder: str, ceus, ct, prefix: str = "") -> tuple[str, str]:
    """Write CEUS (``label,row,column``) and CT (``label,x,y,z``) landmark CSVs; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    ceus_path = os.path.join(folder, f"{prefix}ceus_landmarks.csv")
    ct_path = os.path.join(folder, f"{prefix}ct_landmarks.csv")
    _write(ceus_path, "label,row,column\n" + "".join(f"{l},{float(r)!r},{float(c)!r}\n" for l, r, c in ceus))
    _write(ct_path, "label,x,y,z\n" + "".join(f"{l},{float(p[0])!r},{float(p[1])!r},{float(p[2])!r}\n" for l, p in ct))
    return ceus_path, ct_path


@dataclass(frozen=True)
class DemoClip:
    """One clip of the demo patient: its folder under the study, exam, injection and recording."""

    folder: str
    exam: str
    injection: int
    gain: float  # receive gain (scales every region alike)
    seed: int    # speckle and noise
    date: str    # DICOM StudyDate


#: The demo patient's clips in manifest order; the first of each exam keeps the folder named after it.
DEMO_CLIPS = (
    DemoClip("baseline", "baseline", 1, 1.0, 11, "20260115"),
    DemoClip("baseline-2", "baseline", 2, 1.15, 13, "20260115"),
    DemoClip("followup", "followup", 1, 1.3, 12, "20260420"),
    DemoClip("followup2", "followup2", 1, 0.85, 14, "20260720"),
)


def build_demo_study(folder: str, n_frames: int = 200, frame_interval_s: float = 0.6) -> dict:
    """Write the demo study into ``folder``: per clip of :data:`DEMO_CLIPS` a DICOM clip and its ROI
    masks, and truth.json (``exams``: the first clip of each exam; ``clips``: every clip).

    Returns ``{clip folder: {"clip": path, "segmentation": path, "masks": {name: png}}}``.
    """
    study_uid = "1.2.826.0.1.3680043.8.498.1"  # fixed: one study per exam, the same on every run
    study = {}
    truth = {"dynamic_range_db": DYNAMIC_RANGE_DB, "injection_time_s": INJECTION_TIME_S, "reference": REFERENCE,
             "model": "lognormal", "patient": PATIENT, "exams": {}, "clips": []}
    for demo_clip in DEMO_CLIPS:
        exam = demo_clip.exam
        followup = demo_clip.folder == "followup"  # the clip that lost probe contact
        clip = make_clip(demo_regions(exam), panel_shape=PANEL_SHAPE, n_frames=n_frames,
                         frame_interval_s=frame_interval_s, jitter=0.05, dynamic_range_db=DYNAMIC_RANGE_DB,
                         display="dual", colour="gold", injection_time_s=INJECTION_TIME_S,
                         gain=demo_clip.gain, seed=demo_clip.seed, motion_px=_breathing,
                         dropout_frames=FOLLOWUP_DROPOUT_FRAMES if followup else (),
                         duplicate_frames=FOLLOWUP_DUPLICATE_FRAMES if followup else ())
        clip_dir = os.path.join(folder, demo_clip.folder)
        os.makedirs(clip_dir, exist_ok=True)
        clip_path = os.path.join(clip_dir, "clip.dcm")
        write_clip(clip, clip_path, transfer_syntax="jpeg-baseline", timing="vector", study_date=demo_clip.date,
                   study_instance_uid=f"{study_uid}.{STUDY_EXAMS.index(exam) + 1}",
                   series_description=f"CEUS liver {exam}" + (f" injection {demo_clip.injection}"
                                                              if demo_clip.injection > 1 else ""))
        masks = write_roi_masks(clip, os.path.join(clip_dir, "rois"))
        study[demo_clip.folder] = {"clip": clip_path, "segmentation": masks.pop("__segmentation__"), "masks": masks}
        rois = {name: {"fit": params, "parameters": truth_parameters(params) if params["A"] > 0 else None}
                for name, params in clip.truth.items()}
        truth["exams"].setdefault(exam, rois)
        truth["clips"].append({"folder": demo_clip.folder, "exam": exam, "injection": demo_clip.injection,
                               "date": demo_clip.date, "gain": demo_clip.gain, "rois": rois})
    with open(os.path.join(folder, "truth.json"), "w", encoding="utf-8") as stream:
        json.dump(truth, stream, indent=2)
    return study


#: The ROIs the study follows (the necrotic core has no enhancement: nothing to follow).
STUDY_ROIS = ("liver", "lesion1", "lesion2")


def write_demo_manifest(folder: str, study: dict) -> str:
    """``folder/MANIFEST.csv`` for ``study`` (from :func:`build_demo_study` on ``folder``): one row per
    clip, its ROIs as PNG masks, reference liver, 50 dB, injection at 2 s; returns its path."""
    path = os.path.join(folder, "MANIFEST.csv")
    lines = ["patient,exam,date,clip,rois,reference,dynamic_range_db,injection_time_s"]
    for demo_clip in DEMO_CLIPS:
        entry = study[demo_clip.folder]
        date = f"{demo_clip.date[:4]}-{demo_clip.date[4:6]}-{demo_clip.date[6:]}"
        rois = ";".join(f"{name}={os.path.relpath(entry['masks'][name], folder)}" for name in STUDY_ROIS)
        lines.append(f"{PATIENT},{demo_clip.exam},{date},{os.path.relpath(entry['clip'], folder)},{rois},"
                     f"{REFERENCE},{DYNAMIC_RANGE_DB:g},{INJECTION_TIME_S:g}")
    _write(path, "\n".join(lines) + "\n")
    return path


CommandMain = Callable[[Sequence[str]], int]


def run_demo(out_dir: str, command_main: CommandMain | None = None) -> str:
    """Build the study under ``out_dir/study``, analyse both exams, compare, summarise; returns the summary.

    With ``command_main`` (the command line's ``main(argv) -> exit status``, which ``demo`` is given
    as ``args.cli_main``) also run ``study`` over all four clips into ``out_dir/trial``. Library
    caches (Slicer's bundle scratch, matplotlib's config) live in the staging folder of
    ``summary.txt``, written last, so nothing is written outside ``out_dir``.
    """
    out_dir = prepare_output_dir(out_dir)
    with StagedFiles(out_dir) as root:
        root.isolate_process_caches()
        summary = _analyse_study(out_dir, root.scratch("slicer"), command_main)
        root.write([("summary.txt", lambda p: _write(p, summary))])
        root.commit("summary.txt")
    return summary


def _analyse_study(out_dir: str, slicer_cache: str, command_main: CommandMain | None) -> str:
    study_dir = os.path.join(out_dir, "study")
    study = build_demo_study(study_dir)
    options = AnalysisOptions(dynamic_range_db=DYNAMIC_RANGE_DB, injection_time_s=INJECTION_TIME_S,
                              reference=REFERENCE, maps=True)
    analyses = {}
    lines = ["DCEUSResponse demo study: one patient, baseline and follow-up after PRRT", ""]
    scenes = have_slicer_core()
    for exam in EXAMS:
        analysis = analyze_files(study[exam]["clip"], [study[exam]["segmentation"]], options)
        extra = []
        if scenes:
            extra.append((f"{exam}.mrb", lambda path, a=analysis: write_scene_bundle(
                a, path, rois=a.roi_masks, cache_dir=slicer_cache)))
        write_analysis(analysis, os.path.join(out_dir, exam), extra_writers=extra)
        analyses[exam] = analysis
        lines += [f"{exam}: {study[exam]['clip']}", format_summary(analysis), ""]
    lines += _fuse_exams(out_dir, analyses, scenes)
    response = compare_folders(os.path.join(out_dir, "baseline"), os.path.join(out_dir, "followup"))
    text = json_text(response)
    write_staged(os.path.join(out_dir, "response"), [("response.json", lambda p: _write(p, text))],
                 last="response.json")
    lines += ["response (follow-up vs baseline):", format_response(response), ""]
    if command_main is not None:
        lines += _run_course(out_dir, write_demo_manifest(study_dir, study), command_main)
    plot = plot_tics(analyses, os.path.join(out_dir, "tic.png"))
    lines.append(f"results: {out_dir}/{{baseline,followup}}/results.json, parameters.csv, tic.csv, maps/, fusion/; "
                 f"{out_dir}/response/response.json" + (f"; TIC plot {plot}" if plot else ""))
    if command_main is not None:
        lines.append(f"the course: {out_dir}/{STUDY_FOLDER}/{{measurements,lesions,response,repeatability}}.csv, "
                     f"study.json, exams/, patients/{PATIENT}/report.html (manifest {out_dir}/study/MANIFEST.csv)")
    lines.append(f"Slicer scenes: {out_dir}/{{baseline,followup}}/{{baseline,followup}}.mrb" if scenes else
                 "Slicer scenes: not written (pip install slicer-core to write them)")
    return "\n".join(lines) + "\n"


def _run_course(out_dir: str, manifest: str, command_main: CommandMain) -> list[str]:
    """Run ``study`` on the demo's manifest into ``out_dir/trial``; the summary's lines about it."""
    trial = os.path.join(out_dir, STUDY_FOLDER)
    status = command_main(["study", manifest, "--out", trial, "--workers", str(STUDY_WORKERS)])
    if status != 0:
        raise RuntimeError(f"the demo's study failed (exit status {status}); see the messages above")
    with open(os.path.join(trial, "response.csv"), encoding="utf-8", newline="") as stream:
        response = [row for row in csv.DictReader(stream) if row["rule"] == "relative:WiWoAUC:-40"]
    lines = [f"the course ({len(DEMO_CLIPS)} clips, {len(STUDY_EXAMS)} exams, the baseline injected twice; "
             "study rules are exploratory):",
             f"{'lesion':<10}{'exam':<11}{'days':>5}  {'rel WiWoAUC vs baseline':>24}  {'vs previous':>12}  class"]
    for row in response:
        if row["lesion"] == REFERENCE:
            continue
        lines.append(f"{row['lesion']:<10}{row['exam']:<11}{row['days_from_baseline']:>5}  "
                     f"{_percent(row['relative_delta_percent']):>24}  "
                     f"{_percent(row['relative_delta_previous_percent']):>12}  {row['classification']}")
    repeatability = os.path.join(trial, "repeatability.csv")
    with open(repeatability, encoding="utf-8", newline="") as stream:
        rows = {row["parameter"]: row for row in csv.DictReader(stream)}
    if "rel_WiWoAUC" in rows:
        row = rows["rel_WiWoAUC"]
        lines.append(f"repeatability (two baseline injections, {row['n_lesions']} lesions): rel_WiWoAUC wCV "
                     f"{float(row['wcv_percent']):.1f} %, repeatability coefficient {float(row['rc_percent']):.1f} %")
    return lines + [f"report: {trial}/patients/{PATIENT}/report.html", ""]


def _percent(text: str) -> str:
    return f"{float(text):+.1f} %" if text else "-"


def _fuse_exams(out_dir: str, analyses: dict, scenes: bool) -> list[str]:
    """Write the patient's CT and PET, fuse both exams, and list per ROI SUV beside PE and WiWoAUC."""

    ctpet = write_patient(os.path.join(out_dir, "study", "ctpet"), make_patient(demo_regions("baseline")))
    lines = [f"PET/CT: {ctpet.ct_dir}, {ctpet.pet_dir} (landmarks: 6 pairs, CT points with "
             f"{LANDMARK_NOISE_MM:g} mm noise)"]
    for index, exam in enumerate(EXAMS):
        ceus, ct = demo_landmarks(exam, seed=index)
        landmarks = write_landmark_files(os.path.join(out_dir, "study", exam), ceus, ct)
        fusion = fuse(os.path.join(out_dir, exam), ctpet.ct_dir, ctpet.pet_dir, landmarks="=".join(landmarks))
        extra = []
        if scenes:
            extra.append((f"{exam}-fused.mrb", lambda path, f=fusion: write_fusion_scene(f, path)))
        write_fusion(fusion, os.path.join(out_dir, exam, "fusion"), extra_writers=extra,
                     registration_writer=registration_file_writer(fusion.registration.ceus_to_patient_lps))
        perfusion = {name: {"PE": roi.parameters.get("PE"), "WiWoAUC": roi.parameters.get("WiWoAUC"),
                            "rel_WiWoAUC": roi.relative.get("WiWoAUC")} for name, roi in analyses[exam].rois.items()}
        lines += [f"{exam} on PET/CT:", format_fusion(fusion, perfusion), ""]
    return lines



def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(text)


def plot_tics(analyses: dict, path: str) -> str | None:
    """Measured and fitted TICs of every ROI per exam as one PNG (one panel per exam), if matplotlib
    is installed (:func:`~DCEUSResponseLib.export.tic_plot.plot_tic_panels`)."""
    panels = [analysis_panel(analysis, exam) for exam, analysis in analyses.items()]
    staged = path + ".part.png"
    if plot_tic_panels(panels, staged) is None:
        return None
    os.replace(staged, path)
    return path
