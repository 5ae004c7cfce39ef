"""Real-world clips end to end through the command line: breathing motion, bad frames,
destruction-replenishment, video exports, and their bad input."""
import csv
import json
import math

import numpy as np
import pytest

from DCEUSResponseLib.synthetic import clips as synthetic
from DCEUSResponseLib.app.cli import main
from DCEUSResponseLib.synthetic.clips import PerfusionRegion, breathing_motion, make_clip, write_clip, write_roi_masks

COMPARED = ("PE", "TTP", "mTTl", "WiWoAUC")


def _analyze(capsys, clip_path, masks, out, *extra):
    code = main(["analyze", str(clip_path), "--roi", masks["__segmentation__"], "--reference", "liver",
                 "--dynamic-range", "50", "--out", str(out), *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("display", ["dual", "single"])
def test_breathing_motion_is_compensated(tmp_path, capsys, display):
    panel = (112, 140)
    times = synthetic.make_frame_times(160, 0.75)
    motion = breathing_motion(times, 8.0, 4.5, direction=(1.0, 0.4))
    # On a single display the ROIs are drawn where the contrast image shows the anatomy (the
    # lesion's arterial phase); the B-mode panel of a dual display shows it from the first frame.
    reference_frame = 0 if display == "dual" else 24
    kwargs = dict(panel_shape=panel, display=display, colour="gold", dynamic_range_db=50.0, seed=21,
                  reference_frame=reference_frame)
    still = make_clip(**kwargs)
    moving = make_clip(motion_px=motion, **kwargs)
    results = {}
    for name, clip, extra in (("still", still, ["--no-motion-compensation"]), ("compensated", moving, []),
                              ("uncompensated", moving, ["--no-motion-compensation"])):
        folder = tmp_path / name
        folder.mkdir()
        write_clip(clip, str(folder / "clip.dcm"))
        masks = write_roi_masks(clip, str(folder / "rois"))
        results[name] = _analyze(capsys, folder / "clip.dcm", masks, folder / "out", "--reference-frame",
                                 str(reference_frame), *extra)
    motion_record = results["compensated"]["clip"]["motion"]
    estimated = np.array(motion_record["displacement_px"])
    # A contrast panel before the bolus arrives shows no anatomy: those frames carry no motion
    # information (their displacement is interpolated) and no perfusion signal either.
    measured = np.ones(len(estimated), dtype=bool)
    measured[motion_record["interpolated_frames"]] = False
    if display == "dual":
        assert measured.all()
    else:
        assert measured.sum() > 0.5 * len(measured)
    rms = float(np.sqrt(np.mean(np.sum((estimated - moving.motion_px)[measured] ** 2, axis=1))))
    assert rms < 1.0, rms
    assert results["compensated"]["clip"]["motion"]["estimated_on"] == ("bmode" if display == "dual" else "contrast")

    def errors(name):
        return {p: abs(results[name]["rois"]["lesion"]["parameters"][p]
                       / results["still"]["rois"]["lesion"]["parameters"][p] - 1) for p in COMPARED}

    compensated, uncompensated = errors("compensated"), errors("uncompensated")
    assert max(compensated.values()) < 0.10, compensated
    # what compensation removes: the fixed ROI samples the lesion's rim and the liver around it
    assert max(uncompensated.values()) > max(0.05, 2 * max(compensated.values())), (compensated, uncompensated)
    with open(tmp_path / "compensated" / "out" / "tic.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert float(rows[40]["motion_row_px"]) == pytest.approx(estimated[40][0], abs=1e-3)
    assert "motion_score" in rows[0] and ("motion_row_mm" in rows[0])


def test_bad_frames_are_found_marked_and_kept_out_of_the_fit(tmp_path, capsys):
    clip = make_clip(display="dual", dynamic_range_db=50.0, seed=22, dropout_frames=[60, 61],
                     duplicate_frames=[90])
    write_clip(clip, str(tmp_path / "clip.dcm"))
    masks = write_roi_masks(clip, str(tmp_path / "rois"))
    results = _analyze(capsys, tmp_path / "clip.dcm", masks, tmp_path / "out", "--exclude-frames", "5-6")
    reasons = {item["frame"]: item["reason"] for item in results["clip"]["excluded_frame_reasons"]}
    assert reasons == {5: "user", 6: "user", 60: "dropout", 61: "dropout", 90: "duplicate"}
    assert results["clip"]["excluded_frames"] == [5, 6, 60, 61, 90]
    with open(tmp_path / "out" / "tic.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(r["frame"]) for r in rows if r["excluded"] == "1"] == [5, 6, 60, 61, 90]
    assert rows[60]["exclusion_reason"] == "dropout"
    truth = synthetic.truth_parameters(clip.truth["lesion"])
    measured = results["rois"]["lesion"]["parameters"]
    for p in COMPARED:
        assert measured[p] == pytest.approx(truth[p], rel=0.10), p
    assert results["rois"]["lesion"]["frames_fitted"] == clip.frames.shape[0] - 5


def _infusion_clip(flashes, seed=3):
    """Constant blood concentration (infusion) with destruction flashes; beta known."""
    mode_s, sigma = 1500.0, 0.5
    shape_peak = 1.0 / (math.sqrt(2 * math.pi) * sigma * mode_s) * math.exp(-sigma ** 2 / 2)
    steady = {"O": 3e-4, "A": 0.01 / shape_peak, "t0": 15.0 - mode_s, "mu": math.log(mode_s) + sigma ** 2,
              "sigma": sigma}
    regions = [PerfusionRegion("liver", (40, 50), 60, steady, is_background=True),
               PerfusionRegion("necrosis", (40, 72), 14, {**steady, "A": 0.0})]
    return make_clip(regions, panel_shape=(80, 100), n_frames=240, frame_interval_s=0.125, dynamic_range_db=50.0,
                     flash_frames=flashes, seed=seed), steady


def test_replenishment_study(tmp_path, capsys):
    clip, steady = _infusion_clip([40, 41, 150])
    write_clip(clip, str(tmp_path / "clip.dcm"))
    masks = write_roi_masks(clip, str(tmp_path / "rois"))
    results = _analyze(capsys, tmp_path / "clip.dcm", masks, tmp_path / "out", "--model", "replenishment")
    liver = results["rois"]["liver"]
    assert liver["status"] == "ok" and len(liver["segments"]) == 2
    beta = synthetic.REPLENISHMENT_RATE_PER_S
    plateau = float(np.mean(synthetic.lognormal_enhancement(clip.frame_times_s, steady)))
    for segment in liver["segments"]:
        assert segment["parameters"]["rBV"] == pytest.approx(plateau, rel=0.10)
        assert segment["parameters"]["mTT"] == pytest.approx(1.0 / beta, rel=0.10)
    assert liver["parameters"]["rBF"] == pytest.approx(plateau * beta, rel=0.15)
    assert results["rois"]["necrosis"]["status"] == "no_enhancement"
    assert {item["frame"]: item["reason"] for item in results["clip"]["excluded_frame_reasons"]}.get(150) == "flash"
    header = (tmp_path / "out" / "parameters.csv").read_text().splitlines()[0]
    assert header.startswith("roi,status,model,rBV,mTT,rBF,PI,WiR,QOF,rel_rBV")
    # the same flashes given by hand
    given = _analyze(capsys, tmp_path / "clip.dcm", masks, tmp_path / "given", "--model", "replenishment",
                     "--flash-frames", "40-41,150")
    assert given["rois"]["liver"]["parameters"]["rBV"] == pytest.approx(liver["parameters"]["rBV"], rel=1e-6)


def test_video_export_gives_the_dicom_parameters(tmp_path, capsys):
    pytest.importorskip("av")
    from DCEUSResponseLib.io.video import write_video_clip

    clip = make_clip(dynamic_range_db=50.0, seed=23)
    write_clip(clip, str(tmp_path / "clip.dcm"))
    write_video_clip(str(tmp_path / "clip.avi"), clip.frames, 1.0 / 0.75)
    masks = write_roi_masks(clip, str(tmp_path / "rois"))
    dicom = _analyze(capsys, tmp_path / "clip.dcm", masks, tmp_path / "dicom")
    video = _analyze(capsys, tmp_path / "clip.avi", masks, tmp_path / "video", "--pixel-spacing", "0.2")
    for roi in ("liver", "lesion"):
        for p in COMPARED + ("AUC",):
            assert video["rois"][roi]["parameters"][p] == pytest.approx(dicom["rois"][roi]["parameters"][p],
                                                                        rel=0.02), (roi, p)
    assert video["clip"]["pixel_spacing_mm"] == [0.2, 0.2]


def test_bad_real_world_input_is_one_line(tmp_path, capsys):
    pytest.importorskip("av")
    from DCEUSResponseLib.io.video import write_video_clip

    clip = make_clip(panel_shape=(60, 80), n_frames=40, frame_interval_s=1.0, seed=24)
    write_clip(clip, str(tmp_path / "clip.dcm"))
    masks = write_roi_masks(clip, str(tmp_path / "rois"))
    raw = tmp_path / "clip.mjpeg"
    write_video_clip(str(raw), clip.frames, 5.0, codec="mjpeg")
    roi = ["--roi", f"lesion={masks['lesion']}"]
    cases = [([str(raw), *roi], str(raw), "--frame-rate"),
             ([str(tmp_path / "clip.dcm"), *roi, "--exclude-frames", "30-45"], None, "--exclude-frames"),
             ([str(tmp_path / "clip.dcm"), *roi, "--model", "replenishment", "--flash-frames", "39"], None,
              "--flash-frames"),
             ([str(tmp_path / "clip.dcm"), *roi, "--maps", "--model", "replenishment"], None, "--maps")]
    for argv, named, problem in cases:
        out = tmp_path / "out"
        code = main(["analyze", *argv, "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 1 and len(err.splitlines()) == 1 and problem in err, (argv, err)
        if named:
            assert named in err
        assert not (out / "results.json").exists()


def test_replenishment_results_as_slicer_tables():
    """The parameter table of a replenishment analysis carries its own parameters, with units."""
    pytest.importorskip("slicer")
    from DCEUSResponseLib.scene.tables import add_analysis_results
    from DCEUSResponseLib.scene.application import create_headless_application
    from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze
    from DCEUSResponseLib.clip import Clip
    from DCEUSResponseLib.clip import RoiMask

    clip, _ = _infusion_clip([40, 41, 150])
    in_memory = Clip("synthetic", clip.frames, clip.frame_times_s, regions=clip.regions)
    rois = [RoiMask(name, mask, "synthetic") for name, mask in clip.roi_masks.items()]
    analysis = analyze(in_memory, rois, AnalysisOptions(dynamic_range_db=50.0, model="replenishment"))
    app = create_headless_application()
    try:
        nodes = add_analysis_results(app.scene, analysis)
        table = nodes.parameter_table.GetTable()
        columns = [table.GetColumn(i).GetName() for i in range(table.GetNumberOfColumns())]
        assert columns[3:9] == ["rBV", "mTT", "rBF", "PI", "WiR", "QOF"]
        assert nodes.parameter_table.GetColumnUnitLabel("mTT") == "s"
        row = [analysis.rois[n] for n in analysis.rois].index(analysis.rois["liver"])
        assert table.GetValueByName(row, "rBV").ToDouble() == pytest.approx(
            analysis.rois["liver"].parameters["rBV"], rel=1e-6)
    finally:
        app.close()


def test_pydicom_ybr_example_end_to_end(tmp_path, capsys):
    """pydicom's examples_ybr_color.dcm (320x240 JPEG YBR_FULL_422) declares its region for 640x480
    frames: clipped, the box took in the blue toolbar and was refused as "give --colormap". The box at
    1/2 scale matches the live image, so that box (and twice the spacing) is used; the clip is grey."""
    from PIL import Image
    from pydicom.data import get_testdata_file

    path = get_testdata_file("examples_ybr_color.dcm")
    mask = np.zeros((240, 320), dtype=np.uint8)
    mask[90:130, 140:180] = 255  # inside the sector, on the heart
    Image.fromarray(mask).save(tmp_path / "roi.png")
    code = main(["analyze", path, "--roi", f"heart={tmp_path / 'roi.png'}", "--dynamic-range", "60",
                 "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    clip = results["clip"]
    assert clip["contrast_region"] == {"x0": 42, "y0": 15, "x1": 297, "y1": 206}
    assert clip["pixel_spacing_mm"] == pytest.approx([1.021, 1.021], abs=1e-3)
    assert clip["colour_map"]["kind"] == "gray"
    assert any("1/2 scale" in w for w in clip["warnings"])
    assert results["rois"]["heart"]["pixels"] == 1600 and results["rois"]["heart"]["status"] in (
        "ok", "no_enhancement", "poor_fit", "fit_failed")
    # (--maps on this 1-second clip stops in the maps' shape dictionary: reported, not in this room)


def test_maps_of_a_clip_too_short_for_a_bolus_are_a_one_line_error(tmp_path, capsys):
    """pydicom's examples_ybr_color.dcm lasts 1 s: --maps cannot fit 0.5 s bins to it (it crashed with
    'zero-size array' inside the map fitting); the ROI analysis still runs."""
    from pydicom.data import get_testdata_file
    from PIL import Image

    from DCEUSResponseLib.app.cli import main

    path = get_testdata_file("examples_ybr_color.dcm")
    mask = np.zeros((240, 320), dtype=np.uint8)
    mask[100:140, 150:190] = 255
    Image.fromarray(mask).save(tmp_path / "roi.png")
    argv = ["analyze", path, "--roi", f"heart={tmp_path / 'roi.png'}", "--dynamic-range", "60"]
    assert main(argv + ["--maps", "--out", str(tmp_path / "maps")]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--maps needs fitted frames spanning at least 4 s" in error[0], error
    assert not (tmp_path / "maps").exists()
    assert main(argv + ["--out", str(tmp_path / "rois")]) == 0
