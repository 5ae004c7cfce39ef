"""The TIC plot and the map previews (issue 9 item 22): ``analyze`` writes ``tic.png`` with measured
samples, fitted curves and excluded frames; previews show the clip under the map, ROI outlines and
a scale bar."""
import inspect
import os

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402

from DCEUSResponseLib.app import demo  # noqa: E402
from DCEUSResponseLib.app.cli import main  # noqa: E402
from DCEUSResponseLib.ceus.maps import ParametricMaps  # noqa: E402
from DCEUSResponseLib.ceus.pixel_fits import STATUS_FITTED, STATUS_NO_ENHANCEMENT  # noqa: E402
from DCEUSResponseLib.export.map_files import MapUnderlay, map_writers  # noqa: E402
from DCEUSResponseLib.export.staging import write_staged  # noqa: E402
from DCEUSResponseLib.export.tic_plot import TicPanel, tic_figure  # noqa: E402
from DCEUSResponseLib.kinetics.bolus import fit_bolus  # noqa: E402
from DCEUSResponseLib.kinetics.models import BOLUS_MODELS  # noqa: E402
from DCEUSResponseLib.kinetics.parameters import PARAMETER_NAMES, bolus_extrapolated, bolus_parameters  # noqa: E402
from DCEUSResponseLib.ceus.results import RoiResult  # noqa: E402
from DCEUSResponseLib.synthetic.clips import make_clip, write_clip, write_roi_masks  # noqa: E402

TRUTH = {"O": 1e-3, "A": 0.5, "t0": 8.0, "mu": np.log(10.0), "sigma": 0.5}


def _roi(times, use, name="lesion"):
    tic = BOLUS_MODELS["lognormal"].curve(times, TRUTH)
    fit = fit_bolus(times, tic, use=use)
    extrapolated = bolus_extrapolated("lognormal", fit.params, fit.fitted_span_s)
    return RoiResult(name, 10, tic, fit, bolus_parameters("lognormal", fit.params, fit.qof), extrapolated=extrapolated)


def test_the_plot_marks_measured_fitted_excluded_and_extrapolated():
    times = np.arange(0.0, 20.0, 0.5)
    use = np.ones(times.size, dtype=bool)
    use[[5, 6, 7]] = False
    roi = _roi(times, use)
    assert "TO" in roi.extrapolated
    axis = tic_figure([TicPanel("cut", times, [roi], use)]).axes[0]
    by_style = {}
    for line in axis.get_lines():
        by_style.setdefault((line.get_marker(), line.get_linestyle()), []).append(line)
    measured = by_style[(".", "None")][0]
    excluded = by_style[("x", "None")][0]
    assert len(measured.get_xdata()) == use.sum() and list(excluded.get_xdata()) == list(times[~use])
    solid, dashed = by_style[("None", "-")][0], by_style[("None", "--")][0]
    solid_x = np.asarray(solid.get_xdata())[np.isfinite(solid.get_ydata())]
    dashed_x = np.asarray(dashed.get_xdata())[np.isfinite(dashed.get_ydata())]
    # solid over the fitted frames, dashed beyond them up to the invented wash-out landmark TO
    assert solid_x.max() <= times[use].max() + 1e-9 and dashed_x.min() > times[use].max()
    assert dashed_x.max() == pytest.approx(roi.parameters["TO"], rel=1e-6)
    assert "extrapolated: " in solid.get_label() and "TO" in solid.get_label()


def test_analyze_writes_tic_png_and_the_demo_uses_the_same_function(tmp_path):
    clip = make_clip(panel_shape=(60, 80), n_frames=40, frame_interval_s=1.0, seed=5, dropout_frames=(20,))
    path = str(tmp_path / "clip.dcm")
    write_clip(clip, path)
    masks = write_roi_masks(clip, str(tmp_path / "rois"), names=["lesion"])
    assert main(["analyze", path, f"--roi=lesion={masks['lesion']}", "--dynamic-range", "50",
                 "--out", str(tmp_path / "out")]) == 0
    with Image.open(tmp_path / "out" / "tic.png") as image:
        assert image.format == "PNG" and image.width > 500 and image.height > 300
    source = inspect.getsource(demo)
    assert "plot_tic_panels" in source and "import matplotlib" not in source  # one plotting function


def _small_maps(spacing_mm):
    """A 20 x 30 map: fitted left half (PE = 1..), no enhancement right half."""
    status = np.full((20, 30), STATUS_NO_ENHANCEMENT, dtype=np.uint8)
    status[:, :15] = STATUS_FITTED
    values = {name: np.where(status == STATUS_FITTED, 1.0 + np.arange(30)[None, :] * 0.1, np.nan).astype(np.float32)
              for name in PARAMETER_NAMES}
    return ParametricMaps(values, status, "lognormal", 1, spacing_mm, (0.0, 0.0))


@pytest.mark.parametrize("spacing_mm", [(0.5, 0.5), None])
def test_previews_show_the_clip_under_the_map_roi_outlines_and_a_scale_bar(tmp_path, spacing_mm):
    maps = _small_maps(spacing_mm)
    gray = np.tile(np.linspace(0.0, 250.0, 30), (20, 1))
    roi = np.zeros((20, 30), dtype=bool)
    roi[5:15, 18:28] = True
    write_staged(str(tmp_path), map_writers(maps, MapUnderlay(gray, (("lesion", roi),))), last="maps/PE.nrrd")
    with Image.open(tmp_path / "maps" / "png" / "PE.png") as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    zoom = round(480 / 30)
    top, left = 28, 10
    # Where the map has no value (right half), the reference frame shows in grey, as it is (x 0.8).
    r, c = 2, 25
    sample = pixels[top + r * zoom + zoom // 2, left + c * zoom + zoom // 2]
    assert sample[0] == sample[1] == sample[2] == round(gray[r, c] * 0.8)
    # The ROI's outline is drawn in cyan along its edge, not inside it.
    edge = pixels[top + 10 * zoom, left + 18 * zoom]
    inside = pixels[top + 10 * zoom, left + 22 * zoom]
    assert tuple(edge) == (0, 255, 255) and tuple(inside) != (0, 255, 255)
    # A white scale bar near the bottom-left corner only when the map is calibrated.
    corner = pixels[top + 20 * zoom - 13:top + 20 * zoom - 10, left + 9:left + 9 + 40]
    has_bar = bool(np.all(corner == 255))
    assert has_bar == (spacing_mm is not None)
    assert os.path.exists(tmp_path / "maps" / "png" / "status.png")
