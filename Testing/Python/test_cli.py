"""The command line on bad input: one line naming the file and the problem, exit 1, no results."""
import os
import subprocess
import sys

import numpy as np
import pytest

from DCEUSResponseLib.app.cli import main
from DCEUSResponseLib.synthetic.clips import make_clip, write_clip, write_roi_masks

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A small dual-display clip with its ROI masks, and broken variants of it."""
    import pydicom

    folder = tmp_path_factory.mktemp("cli")
    clip = make_clip(panel_shape=(60, 80), n_frames=40, frame_interval_s=2.0, display="dual", seed=3)
    good = str(folder / "clip.dcm")
    write_clip(clip, good, timing="vector")
    masks = write_roi_masks(clip, str(folder / "rois"))
    variants = {}

    def variant(name, change):
        ds = pydicom.dcmread(good)
        change(ds)
        path = str(folder / f"{name}.dcm")
        ds.save_as(path, enforce_file_format=True)
        variants[name] = path

    def no_pixels(ds):
        del ds.PixelData

    def one_frame(ds):
        ds.NumberOfFrames = 1
        ds.FrameTimeVector = [0]
        ds.PixelData = ds.PixelData[: ds.Rows * ds.Columns]

    def truncated(ds):
        ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]

    def no_timing(ds):
        del ds.FrameTimeVector
        del ds.FrameIncrementPointer

    def backwards(ds):
        vector = [float(v) for v in ds.FrameTimeVector]
        vector[10] = -500.0
        ds.FrameTimeVector = vector

    for name, change in [("no_pixels", no_pixels), ("one_frame", one_frame), ("truncated", truncated),
                         ("no_timing", no_timing), ("backwards", backwards)]:
        variant(name, change)
    text = folder / "notes.dcm"
    text.write_text("this is not DICOM\n")
    variants["not_dicom"] = str(text)
    np.save(folder / "small.npy", np.ones((10, 10)))
    np.save(folder / "empty.npy", np.zeros(clip.frames.shape[1:3]))
    both = clip.roi_masks["lesion"].copy()
    both[clip.contrast_region.slices] |= clip.roi_masks["lesion"][clip.bmode_region.slices]
    np.save(folder / "both.npy", both)
    (folder / "a_file").write_text("")
    return {"folder": folder, "clip": good, "masks": masks, "variants": variants}


def _run(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _bad_cases(study):
    folder, v, m = study["folder"], study["variants"], study["masks"]
    lesion = f"lesion={m['lesion']}"
    return [
        ("not DICOM", [v["not_dicom"], "--roi", lesion], v["not_dicom"], "not a DICOM"),
        ("no pixel data", [v["no_pixels"], "--roi", lesion], v["no_pixels"], "pixel data"),
        ("single frame", [v["one_frame"], "--roi", lesion], v["one_frame"], "frame"),
        ("truncated", [v["truncated"], "--roi", lesion], v["truncated"], "truncated"),
        ("no timing", [v["no_timing"], "--roi", lesion], v["no_timing"], "--frame-rate"),
        ("non-monotonic", [v["backwards"], "--roi", lesion], v["backwards"], "monotonic|increas"),
        ("mask size", [study["clip"], "--roi", f"x={folder / 'small.npy'}"], str(folder / "small.npy"), "10 x 10"),
        ("empty mask", [study["clip"], "--roi", f"x={folder / 'empty.npy'}"], str(folder / "empty.npy"), "empty"),
        ("both panels", [study["clip"], "--roi", f"x={folder / 'both.npy'}"], str(folder / "both.npy"),
         "spans both"),
        ("duplicate names", [study["clip"], "--roi", lesion, "--roi", lesion], m["lesion"], "duplicate"),
        ("unknown reference", [study["clip"], "--roi", lesion, "--reference", "liver"], study["clip"],
         "--reference 'liver'"),
        ("dynamic range", [study["clip"], "--roi", lesion, "--dynamic-range", "0"], None, "dynamic range"),
    ]


@pytest.mark.parametrize("case", range(12))
def test_bad_input_is_one_line_naming_file_and_problem(study, tmp_path, capsys, case):
    import re

    label, argv, named_file, problem = _bad_cases(study)[case]
    out = tmp_path / "out"
    code, stdout, stderr = _run(capsys, ["analyze", *argv, "--out", str(out)])
    assert code == 1, label
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, (label, stderr)
    assert re.search(problem, lines[0]), (label, lines[0])
    if named_file:
        assert named_file in lines[0], (label, lines[0])
    assert not (out / "results.json").exists()
    assert not list(out.glob(".dceus-staging-*")) if out.exists() else True


def test_unwritable_output_folder(study, capsys):
    blocked = study["folder"] / "a_file" / "out"
    code, _, stderr = _run(capsys, ["analyze", study["clip"], "--roi", f"lesion={study['masks']['lesion']}",
                                    "--out", str(blocked)])
    assert code == 1
    assert "not writable" in stderr and str(blocked) in stderr and len(stderr.strip().splitlines()) == 1


def test_a_failed_run_leaves_earlier_results_untouched(study, tmp_path, capsys):
    out = tmp_path / "out"
    lesion = f"lesion={study['masks']['lesion']}"
    assert _run(capsys, ["analyze", study["clip"], "--roi", lesion, "--out", str(out)])[0] == 0
    before = (out / "results.json").read_bytes()
    code, _, _ = _run(capsys, ["analyze", study["variants"]["truncated"], "--roi", lesion, "--out", str(out)])
    assert code == 1
    assert (out / "results.json").read_bytes() == before
    assert sorted(os.listdir(out)) == ["parameters.csv", "results.json", "rois", "tic.csv", "tic.png"]  # rois/: for fuse


def test_input_files_are_not_modified(study, tmp_path, capsys):
    import hashlib

    paths = [study["clip"], *study["masks"].values()]
    digest = {p: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths}
    seg = study["masks"]["__segmentation__"]
    assert _run(capsys, ["analyze", study["clip"], "--roi", seg, "--reference", "liver",
                         "--out", str(tmp_path / "o")])[0] == 0
    assert digest == {p: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths}


def test_module_entry_point_runs_as_a_process(study, tmp_path):
    result = subprocess.run([sys.executable, "-m", "DCEUSResponseLib", "analyze", study["clip"], "--roi",
                             f"lesion={study['masks']['lesion']}", "--dynamic-range", "-3", "--out",
                             str(tmp_path / "o")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "dynamic range" in result.stderr
    usage = subprocess.run([sys.executable, "-m", "DCEUSResponseLib", "analyze", "--bogus"], capture_output=True,
                           text=True, cwd=REPO)
    assert usage.returncode == 2


def test_scene_bundle_from_the_command_line(study, tmp_path, capsys):
    """analyze --scene writes a bundle inside --out that slicer-core reads back with every node."""
    pytest.importorskip("slicer")
    from DCEUSResponseLib.scene.application import create_headless_application

    out = tmp_path / "out"
    code, _, stderr = _run(capsys, ["analyze", study["clip"], "--roi", study["masks"]["__segmentation__"],
                                    "--reference", "liver", "--maps", "--map-binning", "2", "--scene", "exam.mrb",
                                    "--out", str(out)])
    assert code == 0, stderr
    assert (out / "exam.mrb").is_file() and (out / "results.json").is_file()
    app = create_headless_application()
    try:
        assert app.scene.ReadFromMRB(str(out / "exam.mrb"))
        classes = [app.scene.GetNthNode(i).GetClassName() for i in range(app.scene.GetNumberOfNodes())]
        for wanted in ("vtkMRMLSequenceBrowserNode", "vtkMRMLSegmentationNode", "vtkMRMLTableNode",
                       "vtkMRMLPlotChartNode", "vtkMRMLScalarVolumeNode"):
            assert wanted in classes, wanted
        segmentation = next(app.scene.GetNthNode(i) for i in range(app.scene.GetNumberOfNodes())
                            if app.scene.GetNthNode(i).IsA("vtkMRMLSegmentationNode"))
        names = {segmentation.GetSegmentation().GetNthSegment(i).GetName()
                 for i in range(segmentation.GetSegmentation().GetNumberOfSegments())}
        assert names == {"liver", "lesion", "necrosis"}
    finally:
        app.close()


def test_scene_outside_the_output_folder_is_refused(study, tmp_path, capsys):
    code, _, stderr = _run(capsys, ["analyze", study["clip"], "--roi", f"lesion={study['masks']['lesion']}",
                                    "--scene", str(tmp_path / "elsewhere.mrb"), "--out", str(tmp_path / "out")])
    assert code == 1 and "outside --out" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "elsewhere.mrb").exists() and not (tmp_path / "out" / "results.json").exists()


def test_a_command_line_imports_only_its_own_subcommand(tmp_path):
    """``analyze`` does not pay for the other subcommands' imports (study's scipy.stats and longitudinal
    engine, demo's synthetic patient); ``--help`` still lists every subcommand."""
    code = ("import sys\nfrom DCEUSResponseLib.app.cli import main\n"
            f"main(['analyze', {str(tmp_path / 'missing.dcm')!r}, '--roi', 'x.png', '--out', {str(tmp_path / 'out')!r}])\n"
            "print(' '.join(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(result.stdout.split())
    assert "clip not found" in result.stderr
    assert "DCEUSResponseLib.app.commands.analyze" in loaded
    for module in ("scipy.stats", "DCEUSResponseLib.longitudinal.study", "DCEUSResponseLib.app.commands.study",
                   "DCEUSResponseLib.app.commands.fuse", "DCEUSResponseLib.app.demo", "DCEUSResponseLib.synthetic.patient"):
        assert module not in loaded, module
    listing = subprocess.run([sys.executable, "-m", "DCEUSResponseLib", "--help"], capture_output=True, text=True,
                             check=True).stdout
    for name in ("analyze", "fit-tic", "compare", "fuse", "study", "demo"):
        assert f"    {name} " in listing
