"""Shared pytest configuration.

``--run-slow`` enables the long scientific checks (marked ``slow``). Tests that use Slicer's MRML
(``slicer-core``) are marked ``slicer`` automatically, so that ``Testing/run-tests.sh`` can run them a
second time against the Slicer version the extension targets (``pytest -m slicer``).
"""
import inspect
import pathlib
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

_USES_SLICER = re.compile(r"importorskip\(\s*[\"']slicer[\"']|^\s*import slicer\b|from DCEUSResponseLib\.scene\b",
                          re.M)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the long scientific checks marked slow")


def _uses_slicer(item) -> bool:
    module = getattr(item, "module", None)
    function = getattr(item, "function", None)
    try:
        module_source = inspect.getsource(module) if module is not None else ""
        # module level: a top-level importorskip or import of slicer / the scene rooms
        top_level = "\n".join(line for line in module_source.splitlines() if not line.startswith((" ", "\t")))
        if _USES_SLICER.search(top_level):
            return True
        return bool(function is not None and _USES_SLICER.search(inspect.getsource(function)))
    except (OSError, TypeError):
        return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _uses_slicer(item):
            item.add_marker(pytest.mark.slicer)
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow scientific check: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@dataclass
class DemoRun:
    """One run of ``python -m DCEUSResponseLib demo --out DIR``: its folder, exit status and output."""

    out: pathlib.Path
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    """The demo study run once for the whole session through its command line (it takes a minute or
    two); tests read its outputs and may only add files of their own beside them."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "golden"))
    from demo_snapshot import demo_environment  # one BLAS thread: the snapshot's numbers, on any machine

    out = tmp_path_factory.mktemp("demo") / "demo"
    run = subprocess.run([sys.executable, "-m", "DCEUSResponseLib", "demo", "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT, env=demo_environment())
    return DemoRun(out, run.returncode, run.stdout, run.stderr)


@pytest.fixture(scope="session")
def fusion_case(tmp_path_factory) -> dict:
    """A short demo clip analysed (maps binned 8), the demo patient's CT/PET, exact and noisy landmarks:
    the inputs of the fuse and fused-scene tests (built once; tests write only into folders of their own)."""
    from DCEUSResponseLib.app.demo import PANEL_SHAPE, demo_landmarks, demo_regions, write_landmark_files
    from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze_files
    from DCEUSResponseLib.export.contract import write_analysis
    from DCEUSResponseLib.synthetic.clips import make_clip, write_clip, write_roi_masks
    from DCEUSResponseLib.synthetic.dicom_ct_pet import write_patient
    from DCEUSResponseLib.synthetic.patient import make_patient

    folder = tmp_path_factory.mktemp("fuse")
    clip = make_clip(demo_regions("baseline"), panel_shape=PANEL_SHAPE, n_frames=40, frame_interval_s=1.0,
                     display="dual", colour="gold", injection_time_s=2.0, dynamic_range_db=50.0, seed=5)
    clip_path = str(folder / "clip.dcm")
    write_clip(clip, clip_path, timing="vector")
    masks = write_roi_masks(clip, str(folder / "rois"))
    options = AnalysisOptions(dynamic_range_db=50.0, injection_time_s=2.0, reference="liver", maps=True,
                              map_binning=8, motion_compensation=False)
    analysis = analyze_files(clip_path, [masks["__segmentation__"]], options)
    write_analysis(analysis, str(folder / "analysis"))
    truth = make_patient(demo_regions("baseline"))
    files = write_patient(str(folder / "patient"), truth)
    exact = write_landmark_files(str(folder), *demo_landmarks(noise_mm=0.0), prefix="exact_")
    noisy = write_landmark_files(str(folder), *demo_landmarks(noise_mm=1.0, seed=3), prefix="noisy_")
    return {"folder": folder, "clip": clip, "clip_path": clip_path, "analysis": str(folder / "analysis"),
            "truth": truth, "ct": files.ct_dir, "pet": files.pet_dir, "exact": "=".join(exact),
            "noisy": "=".join(noisy)}


@pytest.fixture(scope="session")
def fused_exact(fusion_case):
    """``fuse --scene fused.mrb`` with the exact landmarks: (output folder, fusion.json)."""
    import json

    from DCEUSResponseLib.app.cli import main

    case = fusion_case
    out = case["folder"] / "out"
    assert main(["fuse", case["analysis"], "--ct", case["ct"], "--pet", case["pet"], "--landmarks", case["exact"],
                 "--scene", "fused.mrb", "--out", str(out)]) == 0
    with open(out / "fusion.json", encoding="utf-8") as stream:
        return out, json.load(stream)
