"""Hostile and absurd input to the readers (issue 9, items 7, 8, 9, 18, 19, 20, 21).

One section per fuzz class: memory bomb, hang, partial input, unsafe path, wrong number, internal
error, and the leaks to stderr (warnings, multi-line messages). Every hostile file is crafted here in
``tmp_path`` with the synthetic writers and pydicom. Cases that could exhaust the machine or block
for ever before the fix run in a child process with an address-space limit and a timeout, so that a
regression fails the test instead of taking the test run down.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
import zlib

import numpy as np
import pydicom
import pytest

from DCEUSResponseLib.app.cli import main
from DCEUSResponseLib.ceus.linearize import read_colour_table
from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze, check_options
from DCEUSResponseLib.ceus.quality import parse_frame_ranges
from DCEUSResponseLib.clip import RoiMask, UltrasoundRegion
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.dicom_us import read_clip
from DCEUSResponseLib.io.masks import read_roi_masks
from DCEUSResponseLib.kinetics.bolus import MIN_USABLE_FRAMES
from DCEUSResponseLib.kinetics.parameters import PARAMETER_NAMES
from DCEUSResponseLib.longitudinal.response import ResponseRule, compare_folders, compare_results
from DCEUSResponseLib.synthetic.dicom_us import write_ultrasound_multiframe, write_ultrasound_series
from dicom_edits import rewrite_dicom

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N_FRAMES, ROWS, COLUMNS = 10, 32, 48
TIMES_S = np.arange(N_FRAMES) * 0.1
SPACING_MM = (0.3, 0.3)
# The documented timing bounds (docs/quantification-contract.md, "Bad input").
MIN_FRAME_INTERVAL_S, MAX_FRAME_INTERVAL_S, MAX_CLIP_DURATION_S = 0.001, 60.0, 7200.0
#: Address space a child may use: the interpreter with numpy, pydicom and the engine needs ~0.6 GiB.
CHILD_MEMORY_BYTES = 3 << 29  # 1.5 GiB
CHILD_TIMEOUT_S = 90


def frames(value: int = 120, n_frames: int = N_FRAMES) -> np.ndarray:
    ramp = np.linspace(0, 60, n_frames, dtype=np.float64)[:, None, None]
    return np.clip(value + ramp + np.zeros((n_frames, ROWS, COLUMNS)), 0, 255).astype(np.uint8)


def one_line_naming(error: pytest.ExceptionInfo, path) -> str:
    message = str(error.value)
    assert os.fspath(path) in message, message
    assert "\n" not in message and "\r" not in message
    return message


def run_isolated(code: str, *, memory_bytes: int | None = CHILD_MEMORY_BYTES,
                 timeout_s: float = CHILD_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter under an address-space limit; fail the test on a hang.

    The child prints ``InputError: <message>`` when the engine refuses the input; anything else
    (MemoryError, a traceback) ends it with a non-zero status.
    """
    preamble = textwrap.dedent(f"""
        import resource, sys
        if {memory_bytes!r}:
            resource.setrlimit(resource.RLIMIT_AS, ({memory_bytes!r}, {memory_bytes!r}))
        from DCEUSResponseLib.errors import InputError
    """)
    body = "try:\n" + textwrap.indent(textwrap.dedent(code), "    ") + \
        "\nexcept InputError as error:\n    print('InputError:', error)\n"
    environment = dict(os.environ, PYTHONPATH=REPO, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
                       MKL_NUM_THREADS="1")
    try:
        return subprocess.run([sys.executable, "-c", preamble + body], capture_output=True, text=True,
                              timeout=timeout_s, env=environment)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the reader hangs: no answer within {timeout_s} s")


def assert_refused(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("InputError: "), result.stdout + result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ============================================================================================
# memory bombs: sizes are checked from the headers before anything is allocated


@pytest.mark.parametrize("transfer_syntax", ["explicit", "jpeg-baseline"])
def test_number_of_frames_bomb_is_refused_before_allocating(tmp_path, transfer_syntax):
    path = tmp_path / "bomb.dcm"
    write_ultrasound_multiframe(path, frames(), TIMES_S, timing="frame-time", transfer_syntax=transfer_syntax)
    rewrite_dicom(path, NumberOfFrames="2147483647")
    result = run_isolated(f"""
        from DCEUSResponseLib.io.dicom_us import read_clip
        read_clip({str(path)!r})
    """)
    assert_refused(result, str(path), "2147483647")


def test_compressed_frames_claiming_a_huge_image_are_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.dcm"
    write_ultrasound_multiframe(path, frames(), TIMES_S, transfer_syntax="jpeg-baseline")
    rewrite_dicom(path, Rows=65535, Columns=65535)  # 10 JPEG frames of 1.5 kB each would decode to 120 GiB
    result = run_isolated(f"""
        from DCEUSResponseLib.io.dicom_us import read_clip
        read_clip({str(path)!r})
    """)
    assert_refused(result, str(path), "65535")


def _gzip_nrrd_of_zeros(path, rows: int, columns: int) -> None:
    """A valid gzip NRRD of rows x columns zero bytes, written without holding them in memory.

    Every 1 MiB block of zeros is deflated once and repeated: a full flush makes each copy
    independent of the previous ones, so the repeated bytes are a valid deflate stream.
    """
    total = rows * columns
    block = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    n_blocks, tail = divmod(total, len(block))
    crc = 0
    for _ in range(n_blocks):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(bytes(tail), crc)
    tail_deflated = compressor.compress(bytes(tail)) + compressor.flush(zlib.Z_FINISH)
    header = (f"NRRD0004\ntype: uint8\ndimension: 2\nsizes: {columns} {rows}\nencoding: gzip\n"
              "endian: little\n\n").encode()
    with open(path, "wb") as stream:
        stream.write(header)
        stream.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # gzip member header
        for _ in range(n_blocks):
            stream.write(deflated)
        stream.write(tail_deflated)
        stream.write(crc.to_bytes(4, "little") + (total & 0xFFFFFFFF).to_bytes(4, "little"))


def test_gzip_nrrd_mask_claiming_a_huge_image_is_refused_from_its_header(tmp_path):
    small = tmp_path / "small.nrrd"
    _gzip_nrrd_of_zeros(small, 3, 700_000)  # the writer itself: a valid file pynrrd reads back
    import nrrd

    data, _ = nrrd.read(str(small), index_order="C")
    assert data.shape == (3, 700_000) and not data.any()

    path = tmp_path / "bomb.nrrd"
    _gzip_nrrd_of_zeros(path, 40000, 40000)  # 1.6 GB of pixels in a 1.6 MB file
    assert os.path.getsize(path) < 2_000_000
    result = run_isolated(f"""
        from DCEUSResponseLib.io.masks import read_roi_masks
        read_roi_masks(["lesion={path}"], ({ROWS}, {COLUMNS}))
    """)
    assert_refused(result, str(path), "40000 x 40000")


def test_npy_mask_header_claiming_a_huge_array_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.npy"
    with open(path, "wb") as stream:
        np.lib.format.write_array_header_1_0(stream, {"descr": "<f8", "fortran_order": False,
                                                      "shape": (40000, 40000)})
        stream.write(bytes(4096))  # 12 GB claimed, 4 kB present
    result = run_isolated(f"""
        from DCEUSResponseLib.io.masks import read_roi_masks
        read_roi_masks(["lesion={path}"], ({ROWS}, {COLUMNS}))
    """)
    assert_refused(result, str(path), "40000 x 40000")


def test_png_mask_of_a_huge_image_is_refused_before_decoding(tmp_path):
    from PIL import Image

    path = tmp_path / "big.png"
    Image.new("1", (10000, 10000)).save(path)  # 100 Mpixel: Pillow warns of a decompression bomb
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InputError, match="10000 x 10000") as error:
            read_roi_masks([f"lesion={path}"], (ROWS, COLUMNS))
    one_line_naming(error, path)
    assert [str(w.message) for w in caught] == []


# ============================================================================================
# hangs: only regular files are opened


def _fifo(tmp_path, name: str) -> str:
    path = str(tmp_path / name)
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("name", ["clip.dcm", "clip.mp4"])
def test_fifo_as_the_clip_is_refused_without_blocking(tmp_path, name):
    path = _fifo(tmp_path, name)
    result = run_isolated(f"""
        from DCEUSResponseLib.ceus.pipeline import read_any_clip
        read_any_clip({path!r})
    """, memory_bytes=None, timeout_s=60)
    assert_refused(result, path, "not a regular file")


def test_dev_zero_as_the_clip_is_refused_without_reading_it():
    result = run_isolated("""
        from DCEUSResponseLib.io.dicom_us import read_clip
        read_clip('/dev/zero')
    """, timeout_s=60)
    assert_refused(result, "/dev/zero", "not a regular file")


def test_fifo_as_a_mask_or_colour_table_is_refused_without_blocking(tmp_path):
    mask = _fifo(tmp_path, "mask.npy")
    with pytest.raises(InputError, match="not a regular file") as error:
        read_roi_masks([f"lesion={mask}"], (ROWS, COLUMNS))
    one_line_naming(error, mask)
    table = _fifo(tmp_path, "gold.csv")
    result = run_isolated(f"""
        from DCEUSResponseLib.ceus.linearize import read_colour_table
        read_colour_table({table!r})
    """, memory_bytes=None, timeout_s=60)
    assert_refused(result, table, "not a regular file")


# ============================================================================================
# partial input: a clip is never silently shorter than what was stored


def test_number_of_frames_smaller_than_the_pixel_data_is_refused(tmp_path):
    path = tmp_path / "short.dcm"
    write_ultrasound_multiframe(path, frames(), TIMES_S, timing="frame-time")
    rewrite_dicom(path, NumberOfFrames="4")  # the file holds 10 frames; reading 4 would drop 60 % silently
    with pytest.raises(InputError, match="10 frames") as error:
        read_clip(path)
    one_line_naming(error, path)


def test_a_damaged_frame_file_in_a_series_folder_is_reported(tmp_path):
    folder = tmp_path / "series"
    write_ultrasound_series(folder, frames(), TIMES_S)
    damaged = sorted(os.listdir(folder))[3]
    with open(folder / damaged, "r+b") as stream:
        stream.write(bytes(200))  # preamble, magic and meta header gone: no longer recognisable as DICOM
    clip = read_clip(folder)
    assert clip.n_frames == N_FRAMES - 1
    assert any(damaged in warning and "not DICOM" in warning for warning in clip.warnings), clip.warnings
    assert any("Instance Number" in warning and "missing" in warning for warning in clip.warnings), clip.warnings


# ============================================================================================
# unsafe paths: a mask reads only its own file


@pytest.mark.parametrize("suffix", [".nrrd", ".seg.nrrd"])
def test_nrrd_mask_pointing_to_a_detached_data_file_is_refused(tmp_path, suffix):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    secret = elsewhere / "secret.raw"
    secret.write_bytes(np.ones((ROWS, COLUMNS), np.uint8).tobytes())
    path = tmp_path / f"mask{suffix}"
    path.write_text(f"NRRD0004\ntype: uint8\ndimension: 2\nsizes: {COLUMNS} {ROWS}\nencoding: raw\n"
                    f"endian: little\ndata file: {secret}\n\n")
    with pytest.raises(InputError, match="data file") as error:
        read_roi_masks([f"lesion={path}"], (ROWS, COLUMNS))
    one_line_naming(error, path)


# ============================================================================================
# wrong numbers: absurd values are refused, suspicious ones warned about


@pytest.mark.parametrize("attributes,fragment", [
    ({"FrameTimeVector": ["0"] + ["1e-6"] * (N_FRAMES - 1)}, "frame interval"),
    ({"FrameTimeVector": ["0"] + ["1e308"] * (N_FRAMES - 1)}, "frame interval"),  # times overflow to inf
    ({"FrameTimeVector": ["0", "100"] + ["3600000"] + ["100"] * (N_FRAMES - 3)}, "frame interval"),
], ids=["1e-6 ms", "1e308 ms", "1 h gap"])
def test_absurd_frame_time_vector_is_refused(tmp_path, attributes, fragment):
    path = tmp_path / "vector.dcm"
    write_ultrasound_multiframe(path, frames(), TIMES_S)
    rewrite_dicom(path, **attributes)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(InputError, match=fragment) as error:
            read_clip(path)
    one_line_naming(error, path)


@pytest.mark.parametrize("frame_time_ms", ["1e308", "1e-300", "0.5", "61000"])
def test_absurd_frame_time_is_refused(tmp_path, frame_time_ms):
    path = tmp_path / "frame_time.dcm"
    write_ultrasound_multiframe(path, frames(), TIMES_S, timing="frame-time")
    rewrite_dicom(path, FrameTime=frame_time_ms)
    with pytest.raises(InputError, match="frame interval") as error:
        read_clip(path)
    one_line_naming(error, path)


def test_timing_bounds_accept_their_limits(tmp_path):
    """1 ms and 60 s intervals are read; a clip longer than 2 h is not."""
    path = tmp_path / "limits.dcm"
    write_ultrasound_multiframe(path, frames(), TIMES_S, timing="frame-time")
    for interval_ms in (MIN_FRAME_INTERVAL_S * 1000, MAX_FRAME_INTERVAL_S * 1000):
        rewrite_dicom(path, FrameTime=f"{interval_ms:g}")
        clip = read_clip(path)
        assert clip.frame_times_s[-1] == pytest.approx((N_FRAMES - 1) * interval_ms / 1000)
    long_clip = tmp_path / "long.dcm"
    n_long = int(MAX_CLIP_DURATION_S / 59.0) + 2
    write_ultrasound_multiframe(long_clip, frames(n_frames=n_long), np.arange(n_long) * 0.1, timing="frame-time")
    rewrite_dicom(long_clip, FrameTime="59000")
    with pytest.raises(InputError, match="2 h") as error:
        read_clip(long_clip)
    one_line_naming(error, long_clip)


@pytest.mark.parametrize("rate", [1e-300, 1e308, float("nan"), 0.001, 5000.0])
def test_absurd_frame_rate_argument_is_refused(tmp_path, rate):
    path = tmp_path / "untimed.dcm"
    write_ultrasound_multiframe(path, frames(), TIMES_S, timing="frame-time")
    rewrite_dicom(path, FrameTime=None, FrameIncrementPointer=None)
    with pytest.raises(InputError, match="--frame-rate"):
        read_clip(path, frame_rate_hz=rate)
    from DCEUSResponseLib.io.video import read_video_clip

    with pytest.raises(InputError, match="--frame-rate"):
        read_video_clip(tmp_path / "absent.mp4", frame_rate_hz=rate)
    assert read_clip(path, frame_rate_hz=25.0).frame_times_s[1] == pytest.approx(0.04)


@pytest.mark.parametrize("injection_time_s", [-1e308, 1e308, float("inf"), -7300.0])
def test_absurd_injection_time_is_refused_before_reading(injection_time_s):
    with pytest.raises(InputError, match="--injection-time"):
        check_options(AnalysisOptions(injection_time_s=injection_time_s))
    check_options(AnalysisOptions(injection_time_s=-30.0))  # injected 30 s before the recording


def test_bits_stored_below_the_stored_values_is_refused(tmp_path):
    path = tmp_path / "bits.dcm"
    write_ultrasound_multiframe(path, frames(200), TIMES_S)
    rewrite_dicom(path, BitsStored=4, HighBit=3)  # 200 would silently become 200 & 15 = 8
    with pytest.raises(InputError, match="Bits Stored") as error:
        read_clip(path)
    one_line_naming(error, path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_in_a_float_mask_are_refused(tmp_path, bad):
    mask = np.zeros((ROWS, COLUMNS))
    mask[10:20, 10:20] = 1.0
    mask[0, 0] = bad  # counted as inside before
    path = tmp_path / "mask.npy"
    np.save(path, mask)
    with pytest.raises(InputError, match="NaN or infinite") as error:
        read_roi_masks([f"lesion={path}"], (ROWS, COLUMNS))
    one_line_naming(error, path)


def _roi(wiwoauc: float, reference: float) -> dict:
    parameters = {p: 1.0 for p in PARAMETER_NAMES}
    parameters["WiWoAUC"] = wiwoauc
    relative = {p: 1.0 for p in PARAMETER_NAMES}
    relative["WiWoAUC"] = wiwoauc / reference
    return {"status": "ok", "reason": None, "parameters": parameters, "relative": relative}


def _results(lesion_wiwoauc: float, **uids) -> dict:
    return {"rois": {"liver": _roi(10.0, 10.0), "lesion": _roi(lesion_wiwoauc, 10.0)}, "reference": "liver",
            "clip": {"uids": uids}}


@pytest.mark.parametrize("threshold", ["nan", "inf", "-inf", "-150", "1e308"])
def test_non_finite_or_unreachable_rule_thresholds_are_refused(threshold):
    with pytest.raises(InputError, match="threshold"):
        ResponseRule.parse(f"relative:WiWoAUC:{threshold}")
    fall = compare_results(_results(20.0), _results(8.0), ResponseRule.parse("relative:WiWoAUC:-40"))
    assert fall["rois"]["lesion"]["classification"] == "responder"  # the 60 % fall the nan rule missed


def test_compare_warns_about_exams_of_different_patients_or_one_study(tmp_path):
    baseline = _results(20.0, PatientID="P-1", StudyInstanceUID="1.2.3", StudyDate="20260101")
    other_patient = _results(8.0, PatientID="P-2", StudyInstanceUID="1.2.4", StudyDate="20260401")
    same_study = _results(8.0, PatientID="P-1", StudyInstanceUID="1.2.3", StudyDate="20260101")
    earlier = _results(8.0, PatientID="P-1", StudyInstanceUID="1.2.5", StudyDate="20251201")
    proper = _results(8.0, PatientID="P-1", StudyInstanceUID="1.2.6", StudyDate="20260401")
    rule = ResponseRule.parse("lassau2014")
    assert any("PatientID" in w and "P-1" in w and "P-2" in w
               for w in compare_results(baseline, other_patient, rule)["warnings"])
    assert any("same study" in w for w in compare_results(baseline, same_study, rule)["warnings"])
    assert any("before the baseline" in w for w in compare_results(baseline, earlier, rule)["warnings"])
    assert compare_results(baseline, proper, rule)["warnings"] == []
    # the command line still writes response.json (a patient may be re-registered), with the warning
    for name, results in (("a", baseline), ("b", other_patient)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(results))
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out")]) == 0
    response = json.loads((tmp_path / "out" / "response.json").read_text())
    assert any("PatientID" in w for w in response["warnings"])


def test_compare_prints_identity_warnings_on_stderr(tmp_path, capsys):
    for name, patient in (("a", "P-1"), ("b", "P-2")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(_results(20.0, PatientID=patient)))
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out")]) == 0
    assert "PatientID" in capsys.readouterr().err


def _series_with(tmp_path, change) -> tuple[str, str, str]:
    """A single-frame series whose third frame (Instance Number 3) is changed by ``change(ds, number)``."""
    folder = tmp_path / "series"
    regions = [UltrasoundRegion(0, 0, COLUMNS - 1, ROWS - 1, spacing_mm=SPACING_MM)]
    write_ultrasound_series(folder, frames(), TIMES_S, regions=regions)
    by_number = {int(pydicom.dcmread(folder / n).InstanceNumber): n for n in os.listdir(folder)}
    for number, name in by_number.items():
        ds = pydicom.dcmread(folder / name)
        if change(ds, number):
            ds.save_as(folder / name)
    return str(folder), by_number[1], by_number[3]


def _other_spacing(ds, number):
    if number == 3:
        ds.SequenceOfUltrasoundRegions[0].PhysicalDeltaX = 0.05
        return True


def _other_series(ds, number):
    if number == 3:
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        return True


def _hour_later(ds, number):
    """Frames 3.. were acquired an hour after frames 1 and 2: two acquisitions in one folder."""
    if number >= 3:
        from pydicom.valuerep import DT

        ds.AcquisitionDateTime = (DT(ds.AcquisitionDateTime) + __import__("datetime").timedelta(hours=1)
                                  ).strftime("%Y%m%d%H%M%S.%f")
        return True


@pytest.mark.parametrize("change,fragment", [
    (_other_spacing, "spacing"), (_other_series, "series"), (_hour_later, "frame interval"),
], ids=["pixel spacing", "series UID", "hour-long gap"])
def test_inconsistent_single_frame_folders_name_the_two_files(tmp_path, change, fragment):
    folder, first, third = _series_with(tmp_path, change)
    with pytest.raises(InputError, match=fragment) as error:
        read_clip(folder)
    message = one_line_naming(error, folder)
    assert third in message and (first in message or fragment == "frame interval"), message


def test_sparse_clip_is_refused_with_one_minimum_naming_the_file(tmp_path):
    path = tmp_path / "sparse.dcm"
    n_frames = MIN_USABLE_FRAMES - 1
    write_ultrasound_multiframe(path, frames(n_frames=n_frames), np.arange(n_frames) * 0.5)
    clip = read_clip(path)  # a short cine is still a clip to look at
    roi = RoiMask("lesion", np.pad(np.ones((8, 8), bool), ((4, ROWS - 12), (4, COLUMNS - 12))), "lesion.npy")
    for maps in (False, True):
        with pytest.raises(InputError, match=f"at least {MIN_USABLE_FRAMES} frames") as error:
            analyze(clip, [roi], AnalysisOptions(maps=maps, motion_compensation=False))
        one_line_naming(error, path)


# ============================================================================================
# internal errors: damaged headers and wrong types are input errors (exit 1), not crashes (exit 3)


def test_unknown_vr_after_a_bit_flip_is_an_input_error(tmp_path, capsys):
    path = tmp_path / "flipped.dcm"
    write_ultrasound_multiframe(path, frames(), TIMES_S)
    data = bytearray(path.read_bytes())
    rows_element = data.find(b"\x28\x00\x10\x00US")
    data[rows_element + 5] ^= 0x0E  # "US" -> "U[": no such VR
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="damaged") as error:
        read_clip(path)
    message = one_line_naming(error, path)
    assert "Traceback" not in message and "Unknown Value Representation" in message  # pydicom's own traceback cut
    np.save(tmp_path / "mask.npy", np.ones((ROWS, COLUMNS), bool))
    status = main(["analyze", str(path), "--roi", f"a={tmp_path / 'mask.npy'}", "--out", str(tmp_path / "out")])
    assert status == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("content", ["nan,nan,nan\n" * 256, "1e400,0,0\n" * 256, "300,0,0\n" * 256,
                                     "-5,0,0\n" * 256, "120,90,40\n" * 256],
                         ids=["nan", "1e400", "300", "-5", "one colour"])
def test_non_finite_or_out_of_range_colour_table_is_an_input_error(tmp_path, content):
    path = tmp_path / "map.csv"
    path.write_text(content)
    with pytest.raises(InputError, match="colour table") as error:
        read_colour_table(str(path))
    one_line_naming(error, path)


@pytest.mark.parametrize("breakage", [
    lambda r: r["rois"].__setitem__("lesion", ["not", "an", "object"]),
    lambda r: r["rois"]["lesion"].__setitem__("parameters", "WiWoAUC=3"),
    lambda r: r["rois"]["lesion"]["parameters"].__setitem__("WiWoAUC", "3.0"),
    lambda r: r["rois"]["lesion"]["relative"].__setitem__("WiWoAUC", [1, 2]),
    lambda r: r["rois"]["lesion"].__setitem__("status", 7),
    lambda r: r.__setitem__("reference", {"name": "liver"}),
    lambda r: r["rois"]["lesion"]["parameters"].__setitem__("WiWoAUC", float("nan")),
    lambda r: r["rois"]["lesion"].__setitem__("extrapolated", "WiWoAUC"),
    lambda r: r["rois"]["lesion"].__setitem__("relative_extrapolated", [{"WiWoAUC": True}]),
], ids=["roi list", "parameters str", "value str", "value list", "status int", "reference dict", "NaN",
        "extrapolated str", "relative_extrapolated objects"])
def test_compare_of_a_results_json_with_wrong_types_is_an_input_error(tmp_path, capsys, breakage):
    baseline, followup = _results(20.0), _results(8.0)
    breakage(followup)
    for name, results in (("a", baseline), ("b", followup)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(results))
    with pytest.raises(InputError) as error:
        compare_folders(str(tmp_path / "a"), str(tmp_path / "b"))
    one_line_naming(error, tmp_path / "b" / "results.json")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out")]) == 1


def test_deeply_nested_results_json_is_an_input_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="results.json"):
        compare_folders(str(tmp_path / "a"), str(tmp_path / "a"))


def test_frame_rate_1e308_on_the_command_line_is_an_input_error(tmp_path, capsys):
    path = tmp_path / "untimed.dcm"
    write_ultrasound_multiframe(path, frames(), TIMES_S, timing="frame-time")
    rewrite_dicom(path, FrameTime=None, FrameIncrementPointer=None)
    np.save(tmp_path / "mask.npy", np.ones((ROWS, COLUMNS), bool))
    status = main(["analyze", str(path), "--roi", f"a={tmp_path / 'mask.npy'}", "--frame-rate", "1e308",
                   "--out", str(tmp_path / "out")])
    assert status == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--frame-rate" in err[0]


@pytest.mark.parametrize("text", ["9" * 5000, "1-" + "9" * 5000, "\u0663"], ids=["5000 digits", "range", "arabic 3"])
def test_frame_ranges_with_huge_or_non_ascii_numbers_are_input_errors(text):
    with pytest.raises(InputError, match="--exclude-frames"):
        parse_frame_ranges(text, 100)


# ============================================================================================
# leaks to stderr: library warnings are clip warnings, messages are one line


def test_pydicom_warnings_become_clip_warnings(tmp_path):
    from pydicom import config
    from pydicom.dataelem import DataElement

    path = tmp_path / "odd.dcm"
    write_ultrasound_multiframe(path, frames(), TIMES_S)
    ds = pydicom.dcmread(path)
    ds[0x0020000D] = DataElement(0x0020000D, "UI", "1.2.abc", validation_mode=config.IGNORE)
    ds.save_as(path)
    # The file meta says implicit VR, the data set is explicit VR: pydicom reads it and says so.
    data = path.read_bytes()
    explicit = b"1.2.840.10008.1.2.1\x00"
    assert data.count(explicit) == 1
    path.write_bytes(data.replace(explicit, b"1.2.840.10008.1.2\x00\x00\x00"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clip = read_clip(path)
    assert [str(w.message) for w in caught] == []
    assert any("explicit VR" in warning for warning in clip.warnings), clip.warnings
    assert any("1.2.abc" in warning for warning in clip.warnings), clip.warnings
    assert clip.frames.shape == (N_FRAMES, ROWS, COLUMNS)


@pytest.mark.parametrize("name", ["two\nlines.dcm", "escape\x1b[31m.dcm", "carriage\rreturn.dcm"])
def test_control_characters_in_a_file_name_stay_on_one_line(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"not dicom")
    with pytest.raises(InputError, match="not a DICOM file") as error:
        read_clip(path)
    message = str(error.value)
    assert "\n" not in message and "\r" not in message and "\x1b" not in message
    assert repr(name)[1:-1] in message
    assert error.value.path == str(path)  # the exact path stays available to callers


def test_a_header_cut_inside_the_sop_class_uid_says_so_without_pydicom_on_stderr(tmp_path):
    """A file cut 400 bytes in (inside the SOP Class UID) printed pydicom's two-line UserWarning
    about the UID on stderr and was "contains no pixel data (SOP class 1.2.)"."""
    path = tmp_path / "cut.dcm"
    write_ultrasound_multiframe(path, frames(), TIMES_S)
    data = path.read_bytes()
    sop_class = data.find(b"1.2.840.10008.5.1.4.1.1.3.1", 200)  # the data set's, after the file meta's
    path.write_bytes(data[:sop_class + 4])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InputError, match="invalid SOP Class UID '1.2.': damaged or truncated") as error:
            read_clip(path)
    one_line_naming(error, path)
    assert [str(w.message) for w in caught] == []


def _mislabelled(tmp_path, photometric: str, transfer_syntax: str):
    path = tmp_path / "mislabelled.dcm"
    rgb = np.stack([frames()] * 3, axis=-1) if photometric == "RGB" else frames()
    write_ultrasound_multiframe(path, rgb, TIMES_S, photometric=photometric, transfer_syntax="jpeg-baseline")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.save_as(path)
    return path


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "RGB"])
def test_a_jpeg_stream_labelled_jpeg_2000_is_refused(tmp_path, photometric):
    """The decoders recognise the stream and decode it whatever the label, but the colour handling
    followed the label: a JPEG colour clip labelled JPEG 2000 had its colours converted twice (lesion
    PE 0.506 instead of 0.028, exit 0)."""
    path = _mislabelled(tmp_path, photometric, "1.2.840.10008.1.2.4.90")
    with pytest.raises(InputError, match="holds a JPEG stream .expected JPEG 2000.: the file is mislabelled") as error:
        read_clip(path)
    one_line_naming(error, path)


def _calibrated_clip(tmp_path, change) -> str:
    path = tmp_path / "calibrated.dcm"
    region = UltrasoundRegion(0, 0, COLUMNS - 1, ROWS - 1, SPACING_MM)
    write_ultrasound_multiframe(path, frames(), TIMES_S, regions=[region])
    ds = pydicom.dcmread(path)
    change(ds, ds.SequenceOfUltrasoundRegions[0])
    ds.save_as(path)
    return str(path)


def _set(keyword, value):
    def change(ds, item):
        if value is None:
            delattr(item, keyword)
        else:
            setattr(item, keyword, value)
    return change


@pytest.mark.parametrize("change, fragment", [
    (_set("PhysicalDeltaX", 0.0), "not a plausible ultrasound pixel size"),
    (_set("PhysicalDeltaX", float("nan")), "not a plausible ultrasound pixel size"),
    (_set("PhysicalDeltaY", float("inf")), "not a plausible ultrasound pixel size"),
    (_set("PhysicalDeltaX", 1e300), "not a plausible ultrasound pixel size"),
    (_set("PhysicalDeltaX", None), "no valid Physical Delta"),
    (_set("PhysicalUnitsYDirection", 4), "Physical Units 3 x 4, not cm"),
])
def test_a_region_calibration_that_cannot_be_used_is_dropped_with_a_warning(tmp_path, change, fragment):
    """A region's Physical Delta of 0, NaN, inf or none, or in seconds, was dropped without a word (the
    DICOM outputs then state 1 mm pixels), and 1e300 cm became a spacing of 1e301 mm in results.json
    and the SEG."""
    clip = read_clip(_calibrated_clip(tmp_path, change))
    assert clip.pixel_spacing_mm is None
    assert any(fragment in warning and "--pixel-spacing" in warning for warning in clip.warnings), clip.warnings


@pytest.mark.parametrize("spacing, fragment", [([0.0, 0.0], "not a plausible"), ([-0.3, 0.3], "not a plausible"),
                                               ([float("nan"), 0.3], "not a plausible"), ([300.0, 300.0], "not a plausible"),
                                               (0.3, "not two numbers")])
def test_a_pixel_spacing_that_cannot_be_used_is_dropped_with_a_warning(tmp_path, spacing, fragment):
    path = tmp_path / "spaced.dcm"
    write_ultrasound_multiframe(path, frames(), TIMES_S)
    ds = pydicom.dcmread(path)
    ds.PixelSpacing = spacing
    ds.save_as(path)
    clip = read_clip(path)
    assert clip.pixel_spacing_mm is None
    assert any("Pixel Spacing" in w and fragment in w for w in clip.warnings), clip.warnings


def test_good_calibrations_are_used_without_a_warning(tmp_path):
    clip = read_clip(_calibrated_clip(tmp_path, _set("PhysicalDeltaX", -0.03)))  # signed: a flipped axis
    assert clip.pixel_spacing_mm == pytest.approx((0.3, 0.3))
    assert not any("pixel" in w.lower() for w in clip.warnings), clip.warnings
