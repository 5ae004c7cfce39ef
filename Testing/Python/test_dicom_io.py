"""Reading ultrasound DICOM clips: round trips through the writer, bad inputs, layouts, examples."""
from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.pixels import convert_color_space

from DCEUSResponseLib.clip import Clip, UltrasoundRegion
from DCEUSResponseLib.io.dicom_us import read_clip
from DCEUSResponseLib.synthetic.dicom_us import write_ultrasound_multiframe, write_ultrasound_series
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.ceus.layout import DisplayLayout, find_layout, mirror_offset
from dicom_edits import rewrite_dicom

N_FRAMES, ROWS, COLUMNS = 6, 40, 64
# Deliberately irregular intervals (s) so a reader that assumed a constant rate would fail.
IRREGULAR_TIMES_S = np.array([0.0, 0.05, 0.11, 0.16, 0.2325, 0.30])
UNIFORM_TIMES_S = np.arange(N_FRAMES) * 0.04
SPACING_MM = (0.25, 0.2)  # (row, column)
PANELS = [
    UltrasoundRegion(0, 0, 31, 39, spacing_mm=SPACING_MM),
    UltrasoundRegion(32, 0, 63, 39, spacing_mm=SPACING_MM),
]


def grey_frames(dtype=np.uint8, seed: int = 1) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, top + 1, (N_FRAMES, ROWS, COLUMNS), dtype=dtype)


def rgb_frames(seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (N_FRAMES, ROWS, COLUMNS, 3), dtype=np.uint8)


def smooth_grey_frames() -> np.ndarray:
    """Gradients and blobs: what JPEG is made for (noise would test JPEG, not the reader)."""
    r, c = np.mgrid[0:ROWS, 0:COLUMNS]
    frames = [40 + 150 * (c / COLUMNS) + 40 * np.exp(-((r - 20) ** 2 + (c - 10 - 6 * k) ** 2) / 60) for k in range(N_FRAMES)]
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def smooth_rgb_frames() -> np.ndarray:
    grey = smooth_grey_frames().astype(float)
    rgb = np.stack([grey, 0.6 * grey + 40, 255 - grey], axis=-1)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def assert_one_line_naming(error: pytest.ExceptionInfo, path) -> None:
    message = str(error.value)
    assert os.fspath(path) in message
    assert "\n" not in message


# --------------------------------------------------------------------------------------------
# round trips


def test_monochrome_8bit_vector_timing_round_trip(tmp_path):
    frames = grey_frames()
    path = tmp_path / "mono8.dcm"
    sop_uid = write_ultrasound_multiframe(path, frames, IRREGULAR_TIMES_S + 3.0, regions=PANELS, patient_id="P-42")
    clip = read_clip(path)
    assert isinstance(clip, Clip)
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == frames.shape
    np.testing.assert_array_equal(clip.frames, frames)
    np.testing.assert_allclose(clip.frame_times_s, IRREGULAR_TIMES_S, atol=1e-6)
    assert clip.timing_source == "FrameTimeVector"
    assert (clip.photometric, clip.bits_stored, clip.palette) == ("MONOCHROME2", 8, None)
    assert clip.pixel_spacing_mm == pytest.approx(SPACING_MM)
    assert clip.regions == PANELS
    assert clip.uids["SOPInstanceUID"] == sop_uid
    assert clip.uids["PatientID"] == "P-42" and clip.uids["StudyDate"] == "20260101"
    assert set(clip.uids) >= {"StudyInstanceUID", "SeriesInstanceUID"}
    assert clip.warnings == []


def test_monochrome_16bit_round_trip(tmp_path):
    frames = grey_frames(np.uint16)
    frames[0, 0, :3] = [0, 65535, 256]  # both ends and the byte boundary
    path = tmp_path / "mono16.dcm"
    write_ultrasound_multiframe(path, frames, UNIFORM_TIMES_S, timing="frame-time")
    clip = read_clip(path)
    assert clip.frames.dtype == np.uint16 and clip.bits_stored == 16
    np.testing.assert_array_equal(clip.frames, frames)
    np.testing.assert_allclose(clip.frame_times_s, UNIFORM_TIMES_S, atol=1e-9)
    assert clip.timing_source == "FrameTime"
    assert clip.pixel_spacing_mm is None and clip.regions == []


def test_rgb_round_trip_is_exact(tmp_path):
    frames = rgb_frames()
    write_ultrasound_multiframe(tmp_path / "rgb.dcm", frames, IRREGULAR_TIMES_S, photometric="RGB")
    clip = read_clip(tmp_path / "rgb.dcm")
    assert clip.photometric == "RGB" and clip.is_colour
    np.testing.assert_array_equal(clip.frames, frames)


@pytest.mark.parametrize("photometric", ["YBR_FULL", "YBR_FULL_422"])
def test_uncompressed_ybr_is_converted_to_rgb_once(tmp_path, photometric):
    # Pairs of equal neighbouring columns make 4:2:2 chroma subsampling lossless, so both
    # variants must give exactly the RGB -> YBR -> RGB round trip of the original colours.
    frames = np.repeat(rgb_frames()[:, :, : COLUMNS // 2], 2, axis=2)
    path = tmp_path / "ybr.dcm"
    write_ultrasound_multiframe(path, frames, IRREGULAR_TIMES_S, photometric=photometric)
    assert pydicom.dcmread(path).PhotometricInterpretation == photometric
    clip = read_clip(path)
    assert clip.photometric == "RGB"
    expected = convert_color_space(convert_color_space(frames, "RGB", "YBR_FULL"), "YBR_FULL", "RGB")
    np.testing.assert_array_equal(clip.frames, expected)
    # a missing or doubled conversion would be off by tens of levels, rounding by a couple
    assert np.abs(clip.frames.astype(int) - frames).max() <= 3


def test_ybr_full_422_chroma_is_averaged_over_pixel_pairs(tmp_path):
    frames = np.zeros((2, 2, 4, 3), dtype=np.uint8)
    frames[..., 0] = [[200, 100, 50, 50]]  # red differs within the first pair only
    path = tmp_path / "pair.dcm"
    write_ultrasound_multiframe(path, frames, [0.0, 0.1], photometric="YBR_FULL_422")
    ybr = convert_color_space(frames, "RGB", "YBR_FULL").astype(int)
    stored = np.frombuffer(pydicom.dcmread(path).PixelData, dtype=np.uint8)[:8]
    # Y1 Y2 Cb Cr of the first pair, then of the second pair
    assert list(stored[:2]) == list(ybr[0, 0, :2, 0])
    assert abs(int(stored[2]) - (ybr[0, 0, 0, 1] + ybr[0, 0, 1, 1]) / 2) <= 0.5
    assert abs(int(stored[3]) - (ybr[0, 0, 0, 2] + ybr[0, 0, 1, 2]) / 2) <= 0.5


def test_palette_colour_keeps_indices_and_returns_palette(tmp_path):
    frames = grey_frames(seed=5)
    palette = np.random.default_rng(6).integers(0, 256, (256, 3), dtype=np.uint8)
    path = tmp_path / "palette.dcm"
    write_ultrasound_multiframe(path, frames, IRREGULAR_TIMES_S, photometric="PALETTE COLOR", palette=palette)
    descriptor = list(pydicom.dcmread(path).RedPaletteColorLookupTableDescriptor)
    assert descriptor == [256, 0, 16]
    clip = read_clip(path)
    assert clip.photometric == "PALETTE COLOR"
    np.testing.assert_array_equal(clip.frames, frames)
    assert clip.palette.shape == (256, 3)
    np.testing.assert_allclose(clip.palette, palette, atol=1e-9)


def test_jpeg_baseline_monochrome(tmp_path):
    frames = smooth_grey_frames()
    path = tmp_path / "jpeg_mono.dcm"
    write_ultrasound_multiframe(path, frames, IRREGULAR_TIMES_S, transfer_syntax="jpeg-baseline")
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert ds.LossyImageCompression == "01" and ds.PhotometricInterpretation == "MONOCHROME2"
    clip = read_clip(path)
    assert clip.photometric == "MONOCHROME2" and clip.frames.shape == frames.shape
    assert np.mean(np.abs(clip.frames.astype(float) - frames)) < 3
    assert np.abs(clip.frames.astype(float) - frames).max() < 40


def test_jpeg_baseline_colour_is_ybr_422_and_read_as_rgb(tmp_path):
    frames = smooth_rgb_frames()
    path = tmp_path / "jpeg_rgb.dcm"
    write_ultrasound_multiframe(path, frames, IRREGULAR_TIMES_S, photometric="RGB", transfer_syntax="jpeg-baseline")
    assert pydicom.dcmread(path).PhotometricInterpretation == "YBR_FULL_422"
    clip = read_clip(path)
    assert clip.photometric == "RGB" and clip.frames.shape == frames.shape
    error = np.abs(clip.frames.astype(float) - frames)
    assert error.mean() < 3
    # per channel too: a skipped YBR->RGB conversion would put luma in R and chroma in G, B
    assert all(error[..., channel].mean() < 4 for channel in range(3))


def _saturated_colour_frames() -> np.ndarray:
    """Reds and yellows at full saturation (a "hot" map's bright third): 4:2:2 chroma pushes them out
    of the RGB gamut, where the clipping conversion lowers their luma."""
    ramp = np.linspace(0, 255, 64)
    frames = np.zeros((3, 32, 64, 3), dtype=np.uint8)
    frames[..., 0] = 255
    frames[..., 1] = ramp[None, None, :]
    frames[:, ::2, ::3, 2] = 90  # chroma edges between neighbours of a pair
    return frames


def test_a_jpeg_stream_labelled_rgb_is_converted_as_the_ybr_it_holds(tmp_path):
    """A JPEG Baseline stream is YCbCr inside whatever the header says; labelled RGB, pydicom decoded and
    converted it with its clipping conversion (channels up to 73 levels from the YBR-labelled read of the
    same stream). It now takes the luma-keeping conversion of a stream labelled YBR_FULL_422."""
    from pydicom.pixels import get_decoder

    frames = _saturated_colour_frames()
    labelled_ybr, labelled_rgb = tmp_path / "ybr.dcm", tmp_path / "rgb.dcm"
    write_ultrasound_multiframe(labelled_ybr, frames, IRREGULAR_TIMES_S[:3], photometric="RGB",
                                transfer_syntax="jpeg-baseline")
    shutil.copyfile(labelled_ybr, labelled_rgb)
    rewrite_dicom(labelled_rgb, PhotometricInterpretation="RGB")
    as_ybr, as_rgb = read_clip(str(labelled_ybr)), read_clip(str(labelled_rgb))
    assert as_rgb.photometric == "RGB"
    np.testing.assert_array_equal(as_rgb.frames, as_ybr.frames)
    ds = pydicom.dcmread(labelled_rgb)
    with warnings.catch_warnings():  # pydicom notes the label's mismatch with the JFIF marker
        warnings.simplefilter("ignore")
        clipped_by_pydicom, _ = get_decoder(ds.file_meta.TransferSyntaxUID).as_array(ds, as_rgb=True)
    assert np.abs(clipped_by_pydicom.astype(int) - as_rgb.frames).max() > 8  # the read differs from that


def test_ybr_conversion_is_chunked_by_pixels_and_may_overwrite_its_input():
    """The same RGB in any chunking; in place, the input's own buffer is the output and no temporary
    grows with the clip (16-frame chunks held +1.2-1.7 GB for 1080p frames; the output was a second
    copy of the clip)."""
    import tracemalloc

    from DCEUSResponseLib.io.dicom_frames import rgb_from_ybr_full

    rng = np.random.default_rng(5)
    ybr = rng.integers(0, 256, size=(48, 240, 320, 3)).astype(np.uint8)
    kept = ybr.copy()
    reference = rgb_from_ybr_full(ybr)
    np.testing.assert_array_equal(ybr, kept)  # not in place: the input is left as it was
    np.testing.assert_array_equal(rgb_from_ybr_full(ybr, pixels_per_step=7777), reference)
    tracemalloc.start()
    try:
        converted = rgb_from_ybr_full(ybr, in_place=True, pixels_per_step=1 << 13)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert converted is ybr
    np.testing.assert_array_equal(converted, reference)
    assert peak < 0.2 * ybr.nbytes, peak / ybr.nbytes  # the temporaries follow the step, not the clip


def test_monochrome1_is_inverted(tmp_path):
    frames = grey_frames()
    path = tmp_path / "mono1.dcm"
    write_ultrasound_multiframe(path, frames, IRREGULAR_TIMES_S)
    rewrite_dicom(path, PhotometricInterpretation="MONOCHROME1")
    clip = read_clip(path)
    assert clip.photometric == "MONOCHROME2"
    np.testing.assert_array_equal(clip.frames, 255 - frames)


# --------------------------------------------------------------------------------------------
# timing


def test_cine_rate_gives_estimated_times_with_warning(tmp_path):
    path = tmp_path / "cine.dcm"
    write_ultrasound_multiframe(path, grey_frames(), UNIFORM_TIMES_S, timing="cine-rate")
    clip = read_clip(path)
    assert clip.timing_source == "CineRate (estimated)"
    np.testing.assert_allclose(clip.frame_times_s, np.arange(N_FRAMES) / 25.0)
    assert any("Cine Rate" in w and "estimated" in w for w in clip.warnings)


def test_recommended_display_frame_rate_is_the_last_estimate(tmp_path):
    path = tmp_path / "display_rate.dcm"
    write_ultrasound_multiframe(path, grey_frames(), UNIFORM_TIMES_S, timing="cine-rate")
    rewrite_dicom(path, CineRate=None, RecommendedDisplayFrameRate="10")
    clip = read_clip(path)
    assert clip.timing_source == "RecommendedDisplayFrameRate (estimated)"
    assert clip.frame_times_s[-1] == pytest.approx(0.5)


def test_frame_rate_argument_replaces_an_estimate_but_not_exact_timing(tmp_path):
    cine = tmp_path / "cine.dcm"
    write_ultrasound_multiframe(cine, grey_frames(), UNIFORM_TIMES_S, timing="cine-rate")
    clip = read_clip(cine, frame_rate_hz=8.0)
    assert clip.timing_source == "--frame-rate"
    np.testing.assert_allclose(clip.frame_times_s, np.arange(N_FRAMES) / 8.0)

    exact = tmp_path / "vector.dcm"
    write_ultrasound_multiframe(exact, grey_frames(), IRREGULAR_TIMES_S)
    clip = read_clip(exact, frame_rate_hz=8.0)
    assert clip.timing_source == "FrameTimeVector"
    np.testing.assert_allclose(clip.frame_times_s, IRREGULAR_TIMES_S, atol=1e-6)
    assert any("--frame-rate" in w and "ignored" in w for w in clip.warnings)


def test_missing_timing_needs_frame_rate(tmp_path):
    path = tmp_path / "untimed.dcm"
    write_ultrasound_multiframe(path, grey_frames(), UNIFORM_TIMES_S, timing="cine-rate")
    rewrite_dicom(path, CineRate=None, RecommendedDisplayFrameRate=None)
    with pytest.raises(InputError, match="--frame-rate") as error:
        read_clip(path)
    assert_one_line_naming(error, path)
    clip = read_clip(path, frame_rate_hz=12.5)
    assert clip.timing_source == "--frame-rate"
    assert clip.frame_times_s[1] == pytest.approx(0.08)


def test_frame_time_vector_first_entry_only_shifts_the_clock(tmp_path):
    path = tmp_path / "shifted.dcm"
    write_ultrasound_multiframe(path, grey_frames(), UNIFORM_TIMES_S)
    rewrite_dicom(path, FrameTimeVector=["33", "40", "40", "50", "40", "40"])
    clip = read_clip(path)
    np.testing.assert_allclose(clip.frame_times_s, [0.0, 0.04, 0.08, 0.13, 0.17, 0.21], atol=1e-9)


@pytest.mark.parametrize(
    "attributes, expected",
    [
        ({"FrameTimeVector": ["0", "40", "40", "40", "40"]}, "5 entries for 6 frames"),
        ({"FrameTimeVector": ["0", "40", "40", "-10", "40", "40"]}, "not increasing"),
        ({"FrameTimeVector": ["0", "40", "0", "40", "40", "40"]}, "not increasing"),
    ],
)
def test_bad_frame_time_vector(tmp_path, attributes, expected):
    path = tmp_path / "bad_vector.dcm"
    write_ultrasound_multiframe(path, grey_frames(), UNIFORM_TIMES_S)
    rewrite_dicom(path, **attributes)
    with pytest.raises(InputError, match=expected) as error:
        read_clip(path)
    assert_one_line_naming(error, path)


def test_zero_frame_time_is_an_error(tmp_path):
    path = tmp_path / "zero_frame_time.dcm"
    write_ultrasound_multiframe(path, grey_frames(), UNIFORM_TIMES_S, timing="frame-time")
    rewrite_dicom(path, FrameTime="0")
    with pytest.raises(InputError, match="frame interval of 0 ms; a frame interval must lie between 1 ms and 60 s") as error:
        read_clip(path)
    assert_one_line_naming(error, path)


# --------------------------------------------------------------------------------------------
# single-frame series in a folder


def test_series_folder_sorted_by_instance_number_not_file_name(tmp_path):
    folder = tmp_path / "series"
    frames = grey_frames(seed=9)
    sop_uids = write_ultrasound_series(folder, frames, IRREGULAR_TIMES_S + 100.0, regions=PANELS[:1])
    (folder / "notes.txt").write_text("not DICOM")  # must be ignored
    names = sorted(n for n in os.listdir(folder) if n.endswith(".dcm"))
    numbers_in_name_order = [int(pydicom.dcmread(folder / n).InstanceNumber) for n in names]
    assert numbers_in_name_order != sorted(numbers_in_name_order)  # the test is meaningful

    clip = read_clip(folder)
    np.testing.assert_array_equal(clip.frames, frames)
    np.testing.assert_allclose(clip.frame_times_s, IRREGULAR_TIMES_S, atol=2e-6)
    assert clip.timing_source == "AcquisitionDateTime"
    assert clip.uids["SOPInstanceUID"] == sop_uids[0]
    assert clip.regions == PANELS[:1] and clip.pixel_spacing_mm == pytest.approx(SPACING_MM)
    assert clip.source == os.fspath(folder)


def test_series_folder_colour_jpeg_with_content_time(tmp_path):
    folder = tmp_path / "series"
    frames = smooth_rgb_frames()
    write_ultrasound_series(folder, frames, IRREGULAR_TIMES_S, photometric="RGB", transfer_syntax="jpeg-baseline", timing="content-time")
    clip = read_clip(folder)
    assert clip.timing_source == "ContentTime" and clip.photometric == "RGB"
    np.testing.assert_allclose(clip.frame_times_s, IRREGULAR_TIMES_S, atol=2e-6)
    assert np.mean(np.abs(clip.frames.astype(float) - frames)) < 3


def test_series_without_times_uses_frame_rate_or_fails(tmp_path):
    folder = tmp_path / "series"
    write_ultrasound_series(folder, grey_frames(), UNIFORM_TIMES_S, timing="none")
    with pytest.raises(InputError, match="--frame-rate") as error:
        read_clip(folder)
    assert_one_line_naming(error, folder)
    clip = read_clip(folder, frame_rate_hz=20.0)
    assert clip.timing_source == "--frame-rate"
    np.testing.assert_allclose(clip.frame_times_s, np.arange(N_FRAMES) / 20.0)


def test_series_with_times_going_backwards(tmp_path):
    folder = tmp_path / "series"
    write_ultrasound_series(folder, grey_frames(), UNIFORM_TIMES_S)
    third = next(n for n in os.listdir(folder) if int(pydicom.dcmread(folder / n).InstanceNumber) == 3)
    rewrite_dicom(folder / third, AcquisitionDateTime="20260101115959.000000")
    with pytest.raises(InputError, match="backwards") as error:
        read_clip(folder)
    assert_one_line_naming(error, folder)


def test_series_of_two_series_is_refused(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    write_ultrasound_series(first, grey_frames(), UNIFORM_TIMES_S)
    write_ultrasound_series(second, grey_frames(), UNIFORM_TIMES_S)
    shutil.copy(second / sorted(os.listdir(second))[0], first / "other_series.dcm")
    with pytest.raises(InputError, match="different series") as error:
        read_clip(first)
    assert_one_line_naming(error, first)


def test_folder_with_one_image_is_a_single_frame_error(tmp_path):
    folder = tmp_path / "series"
    write_ultrasound_series(folder, grey_frames(), UNIFORM_TIMES_S)
    for name in sorted(os.listdir(folder))[1:]:
        os.remove(folder / name)
    only = folder / os.listdir(folder)[0]
    with pytest.raises(InputError, match="single frame") as error:
        read_clip(folder)
    assert_one_line_naming(error, only)


def test_folder_holding_multiframe_files(tmp_path):
    folder = tmp_path / "exam"
    folder.mkdir()
    frames = grey_frames()
    write_ultrasound_multiframe(folder / "clip1.dcm", frames, IRREGULAR_TIMES_S)
    clip = read_clip(folder)
    assert clip.source == os.fspath(folder / "clip1.dcm")
    np.testing.assert_array_equal(clip.frames, frames)
    write_ultrasound_multiframe(folder / "clip2.dcm", frames, IRREGULAR_TIMES_S)
    with pytest.raises(InputError, match="2 multi-frame") as error:
        read_clip(folder)
    assert_one_line_naming(error, folder)


def test_empty_folder_and_folder_without_dicom(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty folder") as error:
        read_clip(empty)
    assert_one_line_naming(error, empty)
    (empty / "readme.txt").write_text("hello")
    with pytest.raises(InputError, match="no DICOM image") as error:
        read_clip(empty)
    assert_one_line_naming(error, empty)


# --------------------------------------------------------------------------------------------
# bad single files


def test_not_found(tmp_path):
    with pytest.raises(InputError, match="not found") as error:
        read_clip(tmp_path / "missing.dcm")
    assert_one_line_naming(error, tmp_path / "missing.dcm")


def test_not_a_dicom_file(tmp_path):
    path = tmp_path / "clip.dcm"
    path.write_bytes(b"this is a text file, not DICOM\n" * 20)
    with pytest.raises(InputError, match="not a DICOM file") as error:
        read_clip(path)
    assert_one_line_naming(error, path)


def test_dataset_without_preamble_and_file_meta_is_read(tmp_path):
    # Old scanners wrote bare implicit-VR datasets without the 128-byte preamble and "DICM".
    path = tmp_path / "bare.dcm"
    frames = grey_frames()
    write_ultrasound_multiframe(path, frames, IRREGULAR_TIMES_S)
    ds = pydicom.dcmread(path)
    ds.preamble = None
    del ds.file_meta
    ds.save_as(path, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM"
    clip = read_clip(path)
    np.testing.assert_array_equal(clip.frames, frames)
    np.testing.assert_allclose(clip.frame_times_s, IRREGULAR_TIMES_S, atol=1e-6)


def test_dicom_without_pixel_data_is_refused(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR Storage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(InputError, match="no pixel data .*Basic Text SR") as error:
        read_clip(path)
    assert_one_line_naming(error, path)


def test_single_frame_file_is_not_a_clip(tmp_path):
    folder = tmp_path / "series"
    write_ultrasound_series(folder, grey_frames(), UNIFORM_TIMES_S)
    path = folder / sorted(os.listdir(folder))[0]
    with pytest.raises(InputError, match="single frame") as error:
        read_clip(path)
    assert_one_line_naming(error, path)


# pydicom reads a cut uncompressed file without complaint (the value is just shorter) but drops
# cut encapsulated pixel data with a warning; both must be reported as truncation.
@pytest.mark.parametrize(
    "transfer_syntax, expected",
    [("explicit", r"pixel data is truncated: \d+ bytes, \d+ expected"), ("jpeg-baseline", "is truncated")],
)
def test_truncated_file(tmp_path, transfer_syntax, expected):
    path = tmp_path / f"cut_{transfer_syntax}.dcm"
    write_ultrasound_multiframe(path, smooth_grey_frames(), UNIFORM_TIMES_S, transfer_syntax=transfer_syntax)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(InputError, match=expected) as error:
        read_clip(path)
    assert_one_line_naming(error, path)


@pytest.mark.parametrize(
    "transfer_syntax, expected",
    [("explicit", r"pixel data is truncated: \d+ bytes"), ("jpeg-baseline", "pixel data is truncated: fewer frames")],
)
def test_fewer_frames_than_number_of_frames(tmp_path, transfer_syntax, expected):
    path = tmp_path / f"short_{transfer_syntax}.dcm"
    write_ultrasound_multiframe(path, smooth_grey_frames(), UNIFORM_TIMES_S, transfer_syntax=transfer_syntax)
    rewrite_dicom(path, NumberOfFrames=str(N_FRAMES + 2), FrameTimeVector=["0"] + ["40"] * (N_FRAMES + 1))
    with pytest.raises(InputError, match=expected) as error:
        read_clip(path)
    assert_one_line_naming(error, path)


def test_other_image_sop_class_is_read_with_a_warning(tmp_path):
    path = tmp_path / "secondary_capture.dcm"
    frames = grey_frames()
    write_ultrasound_multiframe(path, frames, IRREGULAR_TIMES_S)
    sc_class = "1.2.840.10008.5.1.4.1.1.7.2"  # Multi-frame Grayscale Byte Secondary Capture
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = sc_class
    ds.file_meta.MediaStorageSOPClassUID = sc_class
    ds.save_as(path)
    clip = read_clip(path)
    np.testing.assert_array_equal(clip.frames, frames)
    assert any("Secondary Capture" in w and "not an ultrasound" in w for w in clip.warnings)


# --------------------------------------------------------------------------------------------
# regions


def test_regions_partly_and_entirely_outside_the_image(tmp_path):
    regions = [
        UltrasoundRegion(10, 5, 100, 30, spacing_mm=(0.3, 0.3)),  # beyond the 64 columns
        UltrasoundRegion(70, 0, 90, 20, spacing_mm=(0.1, 0.1)),  # entirely to the right
        UltrasoundRegion(0, 0, 63, 39, spacing_mm=(0.5, 0.5), data_type=2),  # colour flow: skipped
    ]
    path = tmp_path / "regions.dcm"
    write_ultrasound_multiframe(path, grey_frames(), UNIFORM_TIMES_S, regions=regions)
    clip = read_clip(path)
    assert clip.regions == [UltrasoundRegion(10, 5, 63, 30, spacing_mm=(0.3, 0.3))]
    assert clip.pixel_spacing_mm == pytest.approx((0.3, 0.3))
    assert any("region 1" in w and "clipped" in w for w in clip.warnings)
    assert any("region 2" in w and "entirely outside" in w for w in clip.warnings)
    assert len(clip.warnings) == 2


def test_pixel_spacing_attribute_is_the_fallback(tmp_path):
    path = tmp_path / "spacing.dcm"
    write_ultrasound_multiframe(path, grey_frames(), UNIFORM_TIMES_S)
    rewrite_dicom(path, PixelSpacing=["0.3", "0.15"])
    assert read_clip(path).pixel_spacing_mm == pytest.approx((0.3, 0.15))


# --------------------------------------------------------------------------------------------
# display layout


def dual_display_frames(contrast_on_left: bool, colour: bool = False) -> np.ndarray:
    """B-mode panel static (with a little noise), contrast panel brightening over the clip."""
    rng = np.random.default_rng(3)
    frames = np.empty((N_FRAMES, ROWS, COLUMNS), dtype=float)
    contrast, bmode = (slice(0, 32), slice(32, 64)) if contrast_on_left else (slice(32, 64), slice(0, 32))
    for k in range(N_FRAMES):
        frames[k, :, bmode] = 90 + rng.normal(0, 8, (ROWS, 32))
        frames[k, :, contrast] = 10 + 25 * k + rng.normal(0, 8, (ROWS, 32))
    frames = np.clip(np.round(frames), 0, 255).astype(np.uint8)
    return np.repeat(frames[..., np.newaxis], 3, axis=-1) if colour else frames


@pytest.mark.parametrize("contrast_on_left", [True, False])
@pytest.mark.parametrize("colour", [False, True])
def test_dual_display_contrast_panel_is_the_changing_one(tmp_path, contrast_on_left, colour):
    path = tmp_path / "dual.dcm"
    frames = dual_display_frames(contrast_on_left, colour)
    write_ultrasound_multiframe(path, frames, UNIFORM_TIMES_S, regions=PANELS, photometric="RGB" if colour else "MONOCHROME2")
    layout = find_layout(read_clip(path))
    assert isinstance(layout, DisplayLayout)
    assert layout.display == "dual" and layout.warnings == []
    left, right = PANELS
    assert (layout.contrast, layout.bmode) == ((left, right) if contrast_on_left else (right, left))
    # B-mode position + offset = contrast position
    assert mirror_offset(layout) == ((0, -32) if contrast_on_left else (0, 32))


def test_dual_display_without_a_clear_difference_warns():
    frames = np.full((N_FRAMES, ROWS, COLUMNS), 80, dtype=np.uint8)
    frames[:, :, :32] += np.arange(N_FRAMES, dtype=np.uint8)[:, None, None] * 4
    frames[:, :, 32:] += np.arange(N_FRAMES, dtype=np.uint8)[:, None, None] * 3
    clip = Clip(source="x", frames=frames, frame_times_s=UNIFORM_TIMES_S, regions=list(PANELS))
    layout = find_layout(clip)
    assert layout.display == "dual" and layout.contrast == PANELS[0]
    assert len(layout.warnings) == 1 and "similar" in layout.warnings[0]


def test_palette_dual_display_uses_display_brightness():
    # The right panel's indices change, but the palette maps all of them to one grey; the left
    # panel's indices change less yet really brighten. Only display brightness tells them apart.
    palette = np.repeat(np.arange(256, dtype=float)[:, None], 3, axis=1)
    palette[100:200] = 50.0
    frames = np.zeros((N_FRAMES, ROWS, COLUMNS), dtype=np.uint8)
    frames[:, :, :32] = (20 + 12 * np.arange(N_FRAMES)).astype(np.uint8)[:, None, None]
    frames[:, :, 32:] = (100 + 19 * np.arange(N_FRAMES)).astype(np.uint8)[:, None, None]
    clip = Clip(source="x", frames=frames, frame_times_s=UNIFORM_TIMES_S, photometric="PALETTE COLOR", palette=palette, regions=list(PANELS))
    layout = find_layout(clip)
    assert layout.contrast == PANELS[0] and layout.warnings == []


def test_single_layouts_and_extra_regions():
    frames = dual_display_frames(contrast_on_left=False)
    no_regions = Clip(source="x", frames=frames, frame_times_s=UNIFORM_TIMES_S, pixel_spacing_mm=(0.2, 0.2))
    layout = find_layout(no_regions)
    assert layout.display == "single" and layout.bmode is None
    assert layout.contrast == UltrasoundRegion(0, 0, COLUMNS - 1, ROWS - 1, spacing_mm=(0.2, 0.2))
    with pytest.raises(InputError, match="single display"):
        mirror_offset(layout)

    one = Clip(source="x", frames=frames, frame_times_s=UNIFORM_TIMES_S, regions=[PANELS[1]])
    assert find_layout(one) == DisplayLayout("single", PANELS[1], None, [])

    small = UltrasoundRegion(2, 2, 10, 10)
    three = Clip(source="x", frames=frames, frame_times_s=UNIFORM_TIMES_S, regions=[small, *PANELS])
    layout = find_layout(three)
    assert layout.display == "dual" and layout.contrast == PANELS[1] and layout.bmode == PANELS[0]
    assert len(layout.warnings) == 1 and "two largest" in layout.warnings[0]

    # Unequal regions: the one that changes is the contrast panel, not the largest (issue 9 item 6).
    unequal = Clip(source="x", frames=frames, frame_times_s=UNIFORM_TIMES_S, regions=[PANELS[0], UltrasoundRegion(40, 0, 63, 20)])
    layout = find_layout(unequal)
    assert layout.display == "single" and layout.contrast == UltrasoundRegion(40, 0, 63, 20)
    assert len(layout.warnings) == 1 and "changes most" in layout.warnings[0]


# --------------------------------------------------------------------------------------------
# pydicom's bundled ultrasound examples


def test_pydicom_example_ybr_color_clip():
    from pydicom import examples

    path = examples.ybr_color.filename
    clip = read_clip(path)
    assert clip.frames.shape == (30, 240, 320, 3) and clip.photometric == "RGB"
    assert clip.timing_source == "FrameTime"
    np.testing.assert_allclose(np.diff(clip.frame_times_s), 0.033333, atol=1e-9)
    assert clip.frame_times_s[0] == 0.0
    # its region box (x 84..595, y 31..414) reaches beyond the 320x240 image
    assert clip.regions == [UltrasoundRegion(84, 31, 319, 239, spacing_mm=pytest.approx((0.5105, 0.5105), abs=1e-4))]
    assert len(clip.warnings) == 1 and "outside the 320x240 image" in clip.warnings[0]
    assert clip.uids["PatientID"] == "204"
    # JPEG YBR_FULL_422 decoded once to RGB: this mostly grey clip must have R ~ G ~ B
    grey_pixels = clip.frames[0].astype(int)
    assert np.median(np.abs(grey_pixels[..., 0] - grey_pixels[..., 1])) <= 2


def test_pydicom_example_rgb_color_is_a_single_frame():
    from pydicom import examples

    path = examples.rgb_color.filename
    with pytest.raises(InputError, match="single frame") as error:
        read_clip(path)
    assert_one_line_naming(error, path)


def test_sixteen_bit_ybr_is_refused_not_turned_into_white(tmp_path):
    """Decoding YBR as stored skipped pydicom's 8-bit check: 16-bit YBR_FULL became all-white frames
    (the second review); it is an input error, as it was."""
    frames = np.repeat(rgb_frames()[:, :, : COLUMNS // 2], 2, axis=2)
    path = tmp_path / "ybr16.dcm"
    write_ultrasound_multiframe(path, frames, IRREGULAR_TIMES_S, photometric="YBR_FULL")
    ds = pydicom.dcmread(path)
    wide = np.frombuffer(ds.PixelData, dtype=np.uint8).astype(np.uint16) * 257
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelData = wide.astype("<u2").tobytes()
    ds.save_as(path)
    with pytest.raises(InputError, match="8 bits only"):
        read_clip(path)
