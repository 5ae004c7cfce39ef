"""CT and PET series reading (io/volumes.py) on the synthetic patient's real DICOM files.

The patient is analytic, so every voxel read back must equal the truth at its centre: CT exactly
(integer HU), PET within half a stored step of its slice's Rescale Slope.
"""
from __future__ import annotations

import os
import shutil
import time
import tracemalloc

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from DCEUSResponseLib.app.demo import demo_regions
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.volumes import read_volume, split_series_path
from DCEUSResponseLib.parallel import THREADS_VARIABLE, worker_threads
from DCEUSResponseLib.synthetic.dicom_ct_pet import (
    write_ct_series,
    write_enhanced_pet,
    write_patient,
)
from DCEUSResponseLib.synthetic.patient import (
    BENCHMARK_CT_GRID,
    CI_CT_GRID,
    CI_PET_GRID,
    VolumeGrid,
    make_patient,
)
from dicom_edits import rewrite_dicom


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    root = tmp_path_factory.mktemp("patient")
    files = write_patient(root, make_patient(demo_regions("baseline")))
    oblique = write_patient(root / "oblique", files.truth, oblique=True)
    write_enhanced_pet(root / "enhanced" / "pet.dcm", files.truth, CI_PET_GRID)
    return {"files": files, "oblique": oblique, "enhanced": str(root / "enhanced"), "root": root}


def _truth_volume(function, grid: VolumeGrid) -> np.ndarray:
    return np.stack([function(grid.slice_points(k)) for k in range(grid.shape[0])])


def _sorted_copy(source: str, target, first: int, count: int) -> list[str]:
    """Copy slices ``first .. first+count-1`` (in position order) of a series; return their new paths."""
    headers = [(pydicom.dcmread(os.path.join(source, n), stop_before_pixels=True), n) for n in os.listdir(source)]
    headers.sort(key=lambda item: float(item[0].ImagePositionPatient[2]))
    os.makedirs(target, exist_ok=True)
    paths = []
    for index, (_, name) in enumerate(headers[first:first + count]):
        path = os.path.join(target, f"S{index:03d}.dcm")
        shutil.copy(os.path.join(source, name), path)
        paths.append(path)
    return paths




def _one_line_error(path, expected: str, modality=None) -> str:
    with pytest.raises(InputError) as caught:
        read_volume(path, modality)
    message = str(caught.value)
    assert "\n" not in message
    assert split_series_path(os.fspath(path))[0] in message  # names the folder
    assert expected in message, message
    return message


def test_ct_voxels_and_geometry_equal_the_truth(patient):
    files = patient["files"]
    volume = read_volume(files.ct_dir, "CT")
    assert volume.values.dtype == np.float32 and volume.values.shape == (60, 128, 128)
    assert volume.dims == [128, 128, 60]
    assert volume.spacing_mm == pytest.approx((3.0, 3.0, 3.0))
    np.testing.assert_allclose(volume.ijk_to_lps, CI_CT_GRID.ijk_to_lps, atol=1e-4)
    # file names are shuffled: equality slice by slice proves the ordering by position
    np.testing.assert_array_equal(volume.values, np.rint(_truth_volume(files.truth.hu_at, CI_CT_GRID)))
    assert volume.modality == "CT" and volume.series_uid == files.ct_series_uid
    assert volume.frame_of_reference_uid == files.truth.frame_of_reference_uid
    assert volume.source == os.path.abspath(files.ct_dir)
    assert "PixelData" not in volume.header and volume.header.Modality == "CT"


def test_lps_to_ijk_inverts_ijk_to_lps(patient):
    volume = read_volume(patient["oblique"].ct_dir)
    point = np.array([-66.2, -25.3, 12.3, 1.0])
    np.testing.assert_allclose(volume.ijk_to_lps @ (volume.lps_to_ijk @ point), point, atol=1e-9)


def test_pet_voxels_are_activity_with_per_slice_slopes(patient):
    files = patient["files"]
    volume = read_volume(files.pet_dir, "PT")
    truth_activity = _truth_volume(files.truth.activity_at, CI_PET_GRID)
    slopes = {float(pydicom.dcmread(os.path.join(files.pet_dir, n), stop_before_pixels=True).RescaleSlope)
              for n in os.listdir(files.pet_dir)}
    assert len(slopes) >= 3  # slices have their own slopes (the max of each slice: fat, liver, spleen, lesion)
    # stored = round(activity / slope): at most half a step off, the largest step is max(slopes)
    assert np.max(np.abs(volume.values - truth_activity)) <= 0.5 * max(slopes) * (1 + 1e-6)
    np.testing.assert_allclose(volume.ijk_to_lps, CI_PET_GRID.ijk_to_lps, atol=1e-4)
    assert volume.dims == [80, 80, 45]
    assert len(volume.acquisition_datetimes) == 45 and len(set(volume.acquisition_datetimes)) == 2  # two beds


def test_oblique_series_are_ordered_along_their_normal(patient):
    oblique = patient["oblique"]
    volume = read_volume(oblique.ct_dir)
    grid = CI_CT_GRID.oblique()
    np.testing.assert_allclose(volume.ijk_to_lps, grid.ijk_to_lps, atol=1e-4)
    assert abs(volume.ijk_to_lps[1, 2]) > 0.5  # the slice normal really leaves the z axis
    np.testing.assert_array_equal(volume.values, np.rint(_truth_volume(oblique.truth.hu_at, grid)))
    pet = read_volume(oblique.pet_dir)
    np.testing.assert_allclose(pet.ijk_to_lps, CI_PET_GRID.oblique().ijk_to_lps, atol=1e-4)


def test_enhanced_pet_reads_like_the_classic_series(patient):
    classic = read_volume(patient["files"].pet_dir)
    enhanced = read_volume(patient["enhanced"], "PT")
    np.testing.assert_allclose(enhanced.ijk_to_lps, classic.ijk_to_lps, atol=1e-4)
    np.testing.assert_array_equal(enhanced.values, classic.values)  # frames were written in reverse order
    assert enhanced.sop_class_uid == "1.2.840.10008.5.1.4.1.1.130"
    assert enhanced.acquisition_datetimes[0].startswith("20260115110000")


def test_several_series_are_listed_and_one_is_chosen_with_its_uid(patient, tmp_path):
    files = patient["files"]
    mixed = tmp_path / "mixed"
    shutil.copytree(files.ct_dir, mixed / "ct")
    shutil.copytree(files.pet_dir, mixed / "pet")
    message = _one_line_error(mixed, "holds 2 series")
    assert files.ct_series_uid in message and files.pet_series_uid in message
    assert "CT abdomen portal venous" in message and "PET 68Ga-DOTATATE AC" in message
    chosen = read_volume(f"{mixed}::{files.pet_series_uid}")
    assert chosen.modality == "PT" and chosen.dims == [80, 80, 45]
    _one_line_error(f"{mixed}::1.2.3.4", "has no series 1.2.3.4")


def test_files_that_are_not_images_are_skipped(patient, tmp_path):
    paths = _sorted_copy(patient["files"].ct_dir, tmp_path / "ct", 10, 4)
    (tmp_path / "ct" / "README.txt").write_text("not DICOM")
    assert read_volume(tmp_path / "ct").dims == [128, 128, 4]
    assert len(paths) == 4


def test_folder_faults(tmp_path):
    _one_line_error(tmp_path / "absent", "is not a folder")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    _one_line_error(tmp_path / "empty", "holds no DICOM image series")


def test_wrong_modality_is_an_error(patient, tmp_path):
    _one_line_error(patient["files"].ct_dir, "is CT, not PT", modality="PT")
    paths = _sorted_copy(patient["files"].ct_dir, tmp_path / "mr", 0, 3)
    for path in paths:
        rewrite_dicom(path, Modality="MR")
    _one_line_error(tmp_path / "mr", "modality MR, not CT or PT")


def test_a_gap_is_an_error(patient, tmp_path):
    paths = _sorted_copy(patient["files"].ct_dir, tmp_path / "gap", 20, 8)
    os.remove(paths[4])  # a 6 mm step among 3 mm steps
    message = _one_line_error(tmp_path / "gap", "gap of 6.00 mm")
    assert "median slice step 3.00 mm" in message


def test_mixed_orientation_size_spacing_and_frame_of_reference_are_errors(patient, tmp_path):
    source = patient["files"].ct_dir
    cases = {
        "orientation": ({"ImageOrientationPatient": [1, 0, 0, 0, 0.9848078, 0.1736482]}, "mixed orientations"),
        "size": ({"Rows": 64}, "mixed sizes"),
        "spacing": ({"PixelSpacing": [2.5, 2.5]}, "mixed pixel spacings"),
        "frame": ({"FrameOfReferenceUID": generate_uid()}, "mixed Frames of Reference"),
        "position": ({"ImagePositionPatient": None}, "missing geometry: S002.dcm has no ImagePositionPatient"),
        "no-frame": ({"FrameOfReferenceUID": None}, "has no Frame of Reference UID"),
    }
    for name, (attributes, expected) in cases.items():
        paths = _sorted_copy(source, tmp_path / name, 30, 5)
        rewrite_dicom(paths[2], **attributes)
        _one_line_error(tmp_path / name, expected)


def test_sheared_slices_of_a_gantry_tilt_are_an_error(patient, tmp_path):
    paths = _sorted_copy(patient["files"].ct_dir, tmp_path / "tilt", 10, 4)
    for index, path in enumerate(paths):  # each slice 1 mm further anterior: a 18 deg tilt
        position = [float(v) for v in pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient]
        rewrite_dicom(path, ImagePositionPatient=[position[0], position[1] - index, position[2]])
    _one_line_error(tmp_path / "tilt", "sheared by up to 3.00 mm")


def test_two_slices_at_one_position_and_a_single_slice_are_errors(patient, tmp_path):
    paths = _sorted_copy(patient["files"].ct_dir, tmp_path / "duplicate", 5, 4)
    copy = paths[1].replace(".dcm", "b.dcm")
    shutil.copy(paths[1], copy)
    rewrite_dicom(copy, SOPInstanceUID=generate_uid())
    _one_line_error(tmp_path / "duplicate", "two slices at one position")
    _sorted_copy(patient["files"].ct_dir, tmp_path / "single", 5, 1)
    _one_line_error(tmp_path / "single", "a single slice")


def test_reading_peaks_at_about_the_float32_volume(patient):
    ct_dir = patient["files"].ct_dir
    read_volume(ct_dir)  # imports and caches outside the measurement
    tracemalloc.start()
    volume = read_volume(ct_dir)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1.5 * volume.values.nbytes, (peak, volume.values.nbytes)


@pytest.mark.slow
def test_a_512_x_512_x_300_ct_reads_fast_within_twice_its_size(tmp_path):
    truth = make_patient()
    write_ct_series(tmp_path / "ct", truth, BENCHMARK_CT_GRID)
    tracemalloc.start()
    start = time.perf_counter()
    volume = read_volume(tmp_path / "ct")
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert volume.dims == [512, 512, 300]
    assert peak < 2.0 * volume.values.nbytes
    assert elapsed < 20.0, elapsed


def _one_at_a_time(folder) -> np.ndarray:
    """The series read without io/volumes: each file whole with pydicom, sorted along its slice normal,
    stored x slope + intercept in float32 (the arithmetic the reader promises)."""
    datasets = [pydicom.dcmread(os.path.join(folder, name)) for name in sorted(os.listdir(folder))]
    orientation = np.array(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    datasets.sort(key=lambda ds: float(np.array(ds.ImagePositionPatient, dtype=float) @ normal))
    return np.stack([ds.pixel_array.astype(np.float32) * np.float32(float(ds.RescaleSlope))
                     + np.float32(float(ds.RescaleIntercept)) for ds in datasets])


def _read_with_threads(monkeypatch, folder, threads: int):
    monkeypatch.setenv(THREADS_VARIABLE, str(threads))
    if worker_threads() != threads:
        pytest.skip(f"{threads} threads need {threads} cores")
    return read_volume(folder)


def test_the_parallel_reader_equals_a_one_at_a_time_read(patient, tmp_path, monkeypatch):
    # shuffled file names, an oblique normal, a slope and an intercept of its own on every slice
    folder = tmp_path / "pet"
    shutil.copytree(patient["oblique"].pet_dir, folder)
    for index, name in enumerate(sorted(os.listdir(folder))):
        rewrite_dicom(str(folder / name), RescaleIntercept=f"{-3.25 * index + 1.5:.2f}")
    slopes = {float(pydicom.dcmread(folder / n, stop_before_pixels=True).RescaleSlope) for n in os.listdir(folder)}
    assert len(slopes) >= 3
    reference = _one_at_a_time(folder)
    serial = _read_with_threads(monkeypatch, folder, 1)
    parallel = _read_with_threads(monkeypatch, folder, 2)
    assert abs(parallel.ijk_to_lps[1, 2]) > 0.5  # oblique: the normal leaves the z axis
    np.testing.assert_array_equal(serial.values, reference)
    np.testing.assert_array_equal(parallel.values, reference)
    np.testing.assert_array_equal(parallel.ijk_to_lps, serial.ijk_to_lps)
    assert parallel.acquisition_datetimes == serial.acquisition_datetimes


def test_compressed_pixel_data_is_read_like_the_native_files(patient, tmp_path, monkeypatch):
    # encapsulated Pixel Data cannot be left on disk by the header pass: the files are decoded from their paths
    from pydicom.uid import RLELossless

    _sorted_copy(patient["oblique"].ct_dir, tmp_path / "native", 20, 6)
    compressed = _sorted_copy(patient["oblique"].ct_dir, tmp_path / "rle", 20, 6)
    for path in compressed:
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless)
        ds.save_as(path)
    assert pydicom.dcmread(compressed[0]).file_meta.TransferSyntaxUID == RLELossless
    expected = _read_with_threads(monkeypatch, tmp_path / "native", 2).values
    np.testing.assert_array_equal(_read_with_threads(monkeypatch, tmp_path / "rle", 2).values, expected)
    np.testing.assert_array_equal(expected, _one_at_a_time(tmp_path / "native"))


def test_a_slice_that_cannot_be_decoded_is_a_one_line_error_naming_it(patient, tmp_path, monkeypatch):
    paths = _sorted_copy(patient["files"].pet_dir, tmp_path / "pet", 10, 12)
    for index in (8, 5):  # two truncated files in the middle: the first in slice order is the one named
        with open(paths[index], "r+b") as stream:
            stream.truncate(os.path.getsize(paths[index]) - 1000)
    for threads in (2, 1):
        monkeypatch.setenv(THREADS_VARIABLE, str(threads))
        message = _one_line_error(tmp_path / "pet", "cannot decode the pixels of S005.dcm")
        assert "S008" not in message
