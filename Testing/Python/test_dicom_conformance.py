"""Every file the DICOM writer produces is checked by dicom3tools' dciodvfy.

Conformant variants must produce no line starting with "Error". Three variants are written on
purpose although the Ultrasound IODs forbid them (reader tests need them): 16-bit MONOCHROME2
(US Image module: 8 bits for MONOCHROME2) and uncompressed YBR_FULL / YBR_FULL_422 (uncompressed
colour must be RGB); for those only the known errors are allowed.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from DCEUSResponseLib.clip import UltrasoundRegion
from DCEUSResponseLib.synthetic.dicom_us import write_ultrasound_multiframe, write_ultrasound_series

DCIODVFY = shutil.which("dciodvfy")
pytestmark = pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) is not installed")

N_FRAMES, ROWS, COLUMNS = 4, 32, 48
TIMES_S = np.array([0.0, 0.05, 0.1, 0.15])
REGIONS = [
    UltrasoundRegion(0, 0, 23, 31, spacing_mm=(0.2, 0.2)),
    UltrasoundRegion(24, 0, 47, 31, spacing_mm=(0.2, 0.2)),
]
_rng = np.random.default_rng(0)
GREY8 = _rng.integers(0, 256, (N_FRAMES, ROWS, COLUMNS), dtype=np.uint8)
GREY16 = _rng.integers(0, 4096, (N_FRAMES, ROWS, COLUMNS)).astype(np.uint16)
RGB = _rng.integers(0, 256, (N_FRAMES, ROWS, COLUMNS, 3), dtype=np.uint8)
PALETTE = _rng.integers(0, 256, (256, 3), dtype=np.uint8)

CONFORMANT_MULTIFRAME = {
    "mono8-vector": dict(frames=GREY8),
    "mono8-frame-time": dict(frames=GREY8, timing="frame-time"),
    "mono8-cine-rate": dict(frames=GREY8, timing="cine-rate"),
    "mono8-no-regions": dict(frames=GREY8, regions=()),
    "rgb": dict(frames=RGB, photometric="RGB"),
    "palette": dict(frames=GREY8, photometric="PALETTE COLOR", palette=PALETTE),
    "jpeg-mono": dict(frames=GREY8, transfer_syntax="jpeg-baseline"),
    "jpeg-colour": dict(frames=RGB, photometric="RGB", transfer_syntax="jpeg-baseline", timing="frame-time"),
}
CONFORMANT_SERIES = {
    "series-mono8": dict(frames=GREY8),
    "series-content-time": dict(frames=GREY8, timing="content-time"),
    "series-no-times": dict(frames=GREY8, timing="none"),
    "series-rgb": dict(frames=RGB, photometric="RGB"),
    "series-palette": dict(frames=GREY8, photometric="PALETTE COLOR", palette=PALETTE),
    "series-jpeg-colour": dict(frames=RGB, photometric="RGB", transfer_syntax="jpeg-baseline"),
}
# variant -> patterns every reported error must match (the IOD forbids these encodings)
NON_CONFORMANT_MULTIFRAME = {
    "mono16": (
        dict(frames=GREY16),
        [r"Unrecognized enumerated value <0x10> .*<Bits (Allocated|Stored)>", r"Unrecognized enumerated value <0xf> .*<High Bit>"],
    ),
    "ybr-full": (
        dict(frames=RGB, photometric="YBR_FULL"),
        [r"Unrecognized enumerated value <YBR_FULL> .*<Photometric Interpretation>"],
    ),
    "ybr-full-422": (
        dict(frames=RGB, photometric="YBR_FULL_422"),
        [
            r"Unrecognized enumerated value <YBR_FULL_422> .*<Photometric Interpretation>",
            # dciodvfy sizes YBR_FULL_422 as 3 samples/pixel; the native 4:2:2 layout has 2
            r"PixelData has incorrect value length",
        ],
    ),
}


def dciodvfy_lines(path: str | os.PathLike) -> list[str]:
    result = subprocess.run([DCIODVFY, os.fspath(path)], capture_output=True, text=True, timeout=60)
    return (result.stdout + result.stderr).splitlines()


def error_lines(path: str | os.PathLike) -> list[str]:
    return [line for line in dciodvfy_lines(path) if line.startswith("Error")]


@pytest.mark.parametrize("variant", sorted(CONFORMANT_MULTIFRAME))
def test_multiframe_variant_passes_dciodvfy(tmp_path, variant):
    options = dict(CONFORMANT_MULTIFRAME[variant])
    options.setdefault("regions", REGIONS)
    path = tmp_path / f"{variant}.dcm"
    write_ultrasound_multiframe(path, options.pop("frames"), TIMES_S, **options)
    lines = dciodvfy_lines(path)
    assert any("USMultiFrameImage" in line for line in lines)  # checked against the right IOD
    assert [line for line in lines if line.startswith("Error")] == []


@pytest.mark.parametrize("variant", sorted(CONFORMANT_SERIES))
def test_single_frame_series_passes_dciodvfy(tmp_path, variant):
    options = dict(CONFORMANT_SERIES[variant])
    folder = tmp_path / variant
    write_ultrasound_series(folder, options.pop("frames"), TIMES_S, regions=REGIONS, **options)
    names = sorted(os.listdir(folder))
    assert len(names) == N_FRAMES
    for name in names:
        lines = dciodvfy_lines(folder / name)
        assert any(line.strip() == "USImage" for line in lines)
        assert [line for line in lines if line.startswith("Error")] == [], name


@pytest.mark.parametrize("variant", sorted(NON_CONFORMANT_MULTIFRAME))
def test_reader_test_variants_fail_only_in_the_known_ways(tmp_path, variant):
    options, allowed = NON_CONFORMANT_MULTIFRAME[variant]
    options = dict(options)
    path = tmp_path / f"{variant}.dcm"
    write_ultrasound_multiframe(path, options.pop("frames"), TIMES_S, regions=REGIONS, **options)
    unexpected = [line for line in error_lines(path) if not any(re.search(p, line) for p in allowed)]
    assert unexpected == []


def test_no_warnings_for_the_main_variants(tmp_path):
    """Warnings are acceptable but there are none today; keep it that way."""
    mono = tmp_path / "mono.dcm"
    write_ultrasound_multiframe(mono, GREY8, TIMES_S, regions=REGIONS)
    colour = tmp_path / "colour.dcm"
    write_ultrasound_multiframe(colour, RGB, TIMES_S, photometric="RGB", transfer_syntax="jpeg-baseline")
    for path in (mono, colour):
        assert [line for line in dciodvfy_lines(path) if line.startswith("Warning")] == []
