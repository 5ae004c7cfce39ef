"""Video exports (AVI / MP4 / MKV / raw MJPEG) read into clips: pixels, timing, errors, and the same
analysis parameters as the DICOM of the same synthetic clip."""
import os
import sys

import numpy as np
import pytest

pytest.importorskip("av")

from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze# noqa: E402
from DCEUSResponseLib.io.dicom_us import read_clip# noqa: E402
from DCEUSResponseLib.errors import InputError# noqa: E402
from DCEUSResponseLib.clip import RoiMask# noqa: E402
from DCEUSResponseLib.synthetic.clips import GOLD_TINT, make_clip, make_frame_times, write_clip# noqa: E402
from DCEUSResponseLib.io.video import is_video_file, read_video_clip, write_video_clip# noqa: E402

COMPARED = ("PE", "TTP", "mTTl", "WiWoAUC", "AUC")
TOLERANCE = 0.02
DYNAMIC_RANGE_DB = 50.0
INJECTION_TIME_S = 1.5
FRAME_INTERVAL_S = 0.75
#: The gold display colour map as a --colormap table (g = 0..255 times the tint).
GOLD_TABLE = np.arange(256)[:, None] * np.asarray(GOLD_TINT)[None, :]


def luma(frames: np.ndarray) -> np.ndarray:
    """BT.601 luma of RGB frames, the frames themselves when grey (float)."""
    return frames @ np.array([0.299, 0.587, 0.114]) if frames.ndim == 4 else frames.astype(float)


@pytest.fixture(scope="module", params=["gray", "gold"])
def reference(request, tmp_path_factory):
    """A synthetic single-display clip, written as DICOM and analysed from it."""
    colour = request.param
    folder = tmp_path_factory.mktemp(f"video-{colour}")
    clip = make_clip(display="single", colour=colour, dynamic_range_db=DYNAMIC_RANGE_DB,
                     frame_interval_s=FRAME_INTERVAL_S, injection_time_s=INJECTION_TIME_S, seed=0)
    dicom_path = str(folder / "clip.dcm")
    write_clip(clip, dicom_path)
    rois = [RoiMask(name, mask, "synthetic") for name, mask in clip.roi_masks.items()]
    options = AnalysisOptions(dynamic_range_db=DYNAMIC_RANGE_DB, injection_time_s=INJECTION_TIME_S,
                              reference="liver")
    dicom_analysis = analyze(read_clip(dicom_path), rois, options)
    return clip, folder, rois, options, dicom_analysis


# (file name, write_video_clip arguments, largest pixel error allowed in gray levels)
CODECS = [
    ("ffv1.avi", {}, 0),  # lossless
    ("ffv1.mkv", {}, 0),
    ("h264-444.mp4", {"codec": "h264"}, 1),  # lossless in YUV: exact for grey, +-1 for colour
    ("h264-420-crf18.mp4", {"codec": "h264", "crf": 18, "chroma_subsampling": "4:2:0"}, None),  # a usual export
]


@pytest.mark.parametrize("name,arguments,pixel_tolerance", CODECS, ids=[c[0] for c in CODECS])
def test_video_gives_the_dicom_parameters(reference, name, arguments, pixel_tolerance):
    clip, folder, rois, options, dicom_analysis = reference
    if clip.colour == "gold" and name == "ffv1.mkv":
        pytest.skip("covered by ffv1.avi")
    path = str(folder / name)
    write_video_clip(path, clip.frames, 1.0 / FRAME_INTERVAL_S, **arguments)
    video = read_video_clip(path)

    assert video.frames.shape == clip.frames.shape  # grey stays one channel, gold stays RGB
    assert video.photometric == ("RGB" if clip.colour == "gold" else "MONOCHROME2")
    assert video.timing_source == "video timestamps"
    np.testing.assert_allclose(video.frame_times_s, clip.frame_times_s, atol=1e-6)
    assert video.regions == [] and video.pixel_spacing_mm is None
    assert any("pixels" in warning for warning in video.warnings)
    assert video.lossy == name.startswith("h264")  # H.264 is taken as lossy: a stream does not declare otherwise
    if pixel_tolerance is not None:
        assert np.abs(video.frames.astype(np.int16) - clip.frames).max() <= pixel_tolerance
    else:  # lossy: near in brightness (4:2:0 chroma is shared by 2 x 2 pixels, so compare luma)
        luma_error = np.abs(luma(video.frames) - luma(clip.frames))
        assert luma_error.mean() < 2.0

    # The video holds the whole frame, so the DICOM's full-frame masks apply unchanged. A gold video
    # needs its colour map given (--colormap): without ultrasound regions the whole frame, burned-in
    # grey annotations included, is the panel, and those are not on the gold map (see the xfail below).
    video_options = options
    if clip.colour == "gold":
        video_options = AnalysisOptions(**{**options.__dict__, "colour_table": GOLD_TABLE})
    video_analysis = analyze(video, rois, video_options)
    if clip.colour == "gold" and arguments.get("chroma_subsampling") == "4:2:0":
        # The nearest-colour lookup of --colormap suffers from chroma shared by 2 x 2 pixels (3.6 %
        # measured with PyAV 18's libx264); only the automatic tinted-map mapping, which uses luma,
        # is robust to it, and a whole-frame video panel defeats it (see the xfail below).
        assert all(video_analysis.rois[roi].fit.status == "ok" for roi in ("liver", "lesion"))
        return
    differences = {}
    for roi in ("liver", "lesion"):
        assert video_analysis.rois[roi].fit.status == "ok"
        for parameter in COMPARED:
            expected = dicom_analysis.rois[roi].parameters[parameter]
            differences[f"{roi} {parameter}"] = video_analysis.rois[roi].parameters[parameter] / expected - 1
    assert video_analysis.rois["necrosis"].fit.status == "no_enhancement"
    worst = max(differences, key=lambda key: abs(differences[key]))
    assert abs(differences[worst]) <= TOLERANCE, f"{worst}: {100 * differences[worst]:+.2f} %"


def test_gold_video_without_colour_map(reference):
    """Without regions, the live image area is found from pixel activity, so the burned-in grey
    annotations stay out of the panel and the gold tint is recognised automatically."""
    clip, folder, rois, options, dicom_analysis = reference
    if clip.colour != "gold":
        pytest.skip("gold only")
    path = str(folder / "auto.avi")
    write_video_clip(path, clip.frames, 1.0 / FRAME_INTERVAL_S)
    video_analysis = analyze(read_video_clip(path), rois, options)
    assert video_analysis.colour_mapping.kind == "tint"
    assert (video_analysis.layout.contrast.x0, video_analysis.layout.contrast.y0) == \
        (clip.contrast_region.x0, clip.contrast_region.y0)
    for roi in ("liver", "lesion"):
        for parameter in COMPARED:
            expected = dicom_analysis.rois[roi].parameters[parameter]
            assert video_analysis.rois[roi].parameters[parameter] == pytest.approx(expected, rel=TOLERANCE), \
                (roi, parameter)


# --------------------------------------------------------------------------------------------
# small clips: timing, colour, errors

def small_frames(n_frames=6, colour=False, seed=0):
    rng = np.random.default_rng(seed)
    grey = rng.integers(0, 256, (n_frames, 24, 32), dtype=np.uint8)
    if not colour:
        return grey
    return np.round(grey[..., None] * np.asarray(GOLD_TINT)).astype(np.uint8)


def test_is_video_file():
    for name in ("a.avi", "b.MP4", "c.mov", "d.mkv", "e.m4v", "f.wmv", "/x/y.Avi"):
        assert is_video_file(name)
    for name in ("clip.dcm", "folder", "mask.png", "x.mp4.dcm", "raw.mjpeg.txt"):
        assert not is_video_file(name)


@pytest.mark.parametrize("suffix,tolerance_s", [(".mkv", 5e-4), (".mp4", 1e-4)])
def test_variable_frame_rate_from_timestamps(tmp_path, suffix, tolerance_s):
    times = make_frame_times(12, 0.2, jitter=0.4, rng=np.random.default_rng(3))
    path = str(tmp_path / f"vfr{suffix}")
    write_video_clip(path, small_frames(12), 5.0, frame_times_s=times)
    clip = read_video_clip(path)
    assert clip.timing_source == "video timestamps"
    np.testing.assert_allclose(clip.frame_times_s, times - times[0], atol=tolerance_s)


def test_timestamps_with_an_incredible_gap_or_a_pause(tmp_path):
    """Video times obey the readers' bounds: a 70 s gap is refused, a 5 s pause only warned about."""
    steady = np.arange(12) * 0.2
    for gap_s, refused in ((70.0, True), (5.0, False)):
        times = np.where(np.arange(12) >= 6, steady + gap_s, steady)
        path = str(tmp_path / f"gap{gap_s:g}.mkv")
        write_video_clip(path, small_frames(12), 5.0, frame_times_s=times)
        if refused:
            with pytest.raises(InputError, match="frame interval of 70.2 s between frames 5 and 6") as error:
                read_video_clip(path)
            assert path in str(error.value)
        else:
            clip = read_video_clip(path)
            assert any("pause" in warning and "5.2 s" in warning for warning in clip.warnings), clip.warnings


def test_frame_rate_argument_overrides_the_file(tmp_path):
    path = str(tmp_path / "clip.avi")
    write_video_clip(path, small_frames(), 25.0)
    clip = read_video_clip(path, frame_rate_hz=10.0)
    assert clip.timing_source == "--frame-rate"
    np.testing.assert_allclose(clip.frame_times_s, np.arange(6) / 10.0)
    assert any("replaces the file's timing (25 frames/s)" in warning for warning in clip.warnings)


def test_raw_stream_without_timing_needs_a_frame_rate(tmp_path):
    # A bare MJPEG stream has no container timestamps and no rate in its bitstream; FFmpeg's
    # 25 frames/s for it is a default, which must not be taken for the acquisition rate.
    path = str(tmp_path / "clip.mjpeg")
    frames = small_frames()
    write_video_clip(path, frames, 7.0, codec="mjpeg")
    with pytest.raises(InputError, match="--frame-rate") as error:
        read_video_clip(path)
    assert "clip.mjpeg" in str(error.value) and "\n" not in str(error.value)
    clip = read_video_clip(path, frame_rate_hz=7.0)
    np.testing.assert_allclose(clip.frame_times_s, np.arange(6) / 7.0)
    assert clip.frames.shape == frames.shape
    assert np.abs(clip.frames.astype(int) - frames).mean() < 8  # JPEG of random noise: lossy


def test_colour_after_grey_frames_is_kept_exactly(tmp_path):
    frames = small_frames(8, colour=True)
    frames[:3] = small_frames(3)[..., None]  # three grey frames first (e.g. before any contrast)
    path = str(tmp_path / "clip.mkv")
    write_video_clip(path, frames, 4.0)
    clip = read_video_clip(path)
    assert clip.frames.ndim == 4 and clip.photometric == "RGB"
    np.testing.assert_array_equal(clip.frames, frames)


def test_grey_with_codec_noise_becomes_one_channel(tmp_path):
    frames = small_frames(4)
    noisy = np.repeat(frames[..., None], 3, axis=3).astype(np.int16)
    noisy[..., 0] += 2  # red two levels up, as codec noise may do
    path = str(tmp_path / "clip.avi")
    write_video_clip(path, np.clip(noisy, 0, 255).astype(np.uint8), 4.0)
    clip = read_video_clip(path)
    assert clip.frames.ndim == 3 and clip.photometric == "MONOCHROME2"
    assert np.abs(clip.frames.astype(int) - frames).max() <= 1


def test_pixel_spacing(tmp_path):
    path = str(tmp_path / "clip.avi")
    write_video_clip(path, small_frames(), 4.0)
    assert read_video_clip(path, pixel_spacing_mm=0.2).pixel_spacing_mm == (0.2, 0.2)
    clip = read_video_clip(path, pixel_spacing_mm=(0.3, 0.25))
    assert clip.pixel_spacing_mm == (0.3, 0.25)
    assert not any("pixels" in warning for warning in clip.warnings)
    for bad in (0, -1.0, float("nan"), "x", (0.1, 0.2, 0.3), (0.1, 0)):
        with pytest.raises(InputError, match="--pixel-spacing"):
            read_video_clip(path, pixel_spacing_mm=bad)
    with pytest.raises(InputError, match="--frame-rate"):
        read_video_clip(path, frame_rate_hz=0)


def test_repeated_frames_are_warned_about(tmp_path):
    frames = np.repeat(small_frames(4), 3, axis=0)  # every frame three times: a 3x export rate
    path = str(tmp_path / "clip.avi")
    write_video_clip(path, frames, 30.0)
    assert any("repeat the previous frame" in warning for warning in read_video_clip(path).warnings)


def test_not_a_video(tmp_path):
    text = tmp_path / "notes.avi"
    text.write_text("this is not a video\n")
    with pytest.raises(InputError, match="not a readable video file") as error:
        read_video_clip(str(text))
    assert str(error.value).startswith(str(text)) and "\n" not in str(error.value)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="not a readable video file"):
        read_video_clip(str(empty))
    with pytest.raises(InputError, match="not found"):
        read_video_clip(str(tmp_path / "missing.mp4"))
    with pytest.raises(InputError, match="folder"):
        read_video_clip(str(tmp_path))


def test_audio_only_file_has_no_video_stream(tmp_path):
    import av

    path = str(tmp_path / "sound.wav")
    with av.open(path, mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            container.mux(packet)
    with pytest.raises(InputError, match="no video stream"):
        read_video_clip(path)


def test_too_few_frames(tmp_path):
    path = str(tmp_path / "one.avi")
    write_video_clip(path, small_frames(1), 4.0)
    with pytest.raises(InputError, match="1 decodable video frame; a clip needs at least 2"):
        read_video_clip(path)


def test_missing_pyav_names_the_package(tmp_path, monkeypatch):
    path = tmp_path / "clip.avi"
    path.write_bytes(b"\0" * 16)
    monkeypatch.setitem(sys.modules, "av", None)  # makes "import av" raise ImportError
    with pytest.raises(InputError, match=r"pip install \"DCEUSResponse\[video\]\""):
        read_video_clip(str(path))
    assert os.path.exists(path)


def _mkv_with_audio(path, frames, rate_hz):
    """A Matroska file with the grey frames (FFV1) and a silent audio track of the same length."""
    import fractions

    av = pytest.importorskip("av")
    container = av.open(str(path), "w")
    video = container.add_stream("ffv1", rate=int(rate_hz))
    video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "gray"
    audio = container.add_stream("pcm_s16le", rate=8000)
    for image in frames:
        for packet in video.encode(av.VideoFrame.from_ndarray(image, format="gray")):
            container.mux(packet)
    for packet in video.encode():
        container.mux(packet)
    samples = int(8000 / rate_hz)
    for k in range(len(frames)):
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.int16), format="s16", layout="mono")
        chunk.sample_rate, chunk.pts, chunk.time_base = 8000, k * samples, fractions.Fraction(1, 8000)
        for packet in audio.encode(chunk):
            container.mux(packet)
    for packet in audio.encode():
        container.mux(packet)
    container.close()


@pytest.mark.parametrize("audio", [False, True])
def test_a_matroska_video_cut_short_is_refused(tmp_path, audio):
    """Matroska decodes up to a cut without an error: half a clip was analysed as the whole (the
    lesion's relative WiWoAUC 2.17 instead of 0.81). The declared duration (the container's, or with
    an audio track the video track's own DURATION tag) says how long the clip is."""
    frames = small_frames(60, seed=1)
    whole = tmp_path / "whole.mkv"
    if audio:
        _mkv_with_audio(whole, frames, 10.0)
    else:
        write_video_clip(whole, frames, 1.0)
    assert read_video_clip(whole).frames.shape[0] == 60  # the whole file reads as the whole clip
    data = whole.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="the file is truncated") as error:
        read_video_clip(cut)
    assert str(cut) in str(error.value) and "\n" not in str(error.value)


def test_fewer_frames_than_declared_over_the_whole_duration_is_no_cut():
    """An MP4 edit list or a frame grabber's dropped frames decode fewer frames than the container
    counts, over the whole declared time: not refused (a first version went by the count)."""
    from fractions import Fraction

    from DCEUSResponseLib.io.video import _check_complete, _Decoded

    decoded = _Decoded()
    decoded.declared_frames, decoded.declared_seconds, decoded.time_base = 60, 4.0, Fraction(1, 1000)
    decoded.pts = list(range(0, 4000, 100))  # 40 frames at 10 Hz: 4.0 s
    decoded.n_frames = len(decoded.pts)
    _check_complete(decoded, "clip.mp4")
    decoded.pts = decoded.pts[:20]  # 2.0 s of 4.0 s: a cut
    decoded.n_frames = 20
    with pytest.raises(InputError, match="ends after 2.0 s .20 frames. but its container declares 4.0 s"):
        _check_complete(decoded, "clip.mp4")
    decoded.declared_seconds, decoded.pts = None, [None] * 20  # no timing: the count decides
    with pytest.raises(InputError, match="20 of the 60 frames"):
        _check_complete(decoded, "clip.mp4")
