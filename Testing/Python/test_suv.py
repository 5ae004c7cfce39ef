"""SUVbw factor (pet/suv.py): every branch of the contract's rule against hand-computed factors.

The base header: 72.5 kg, 150 MBq of 68Ga (half-life 4062.6 s) injected at 10:02:30, Series Time
11:00:00 on 2026-01-15, so T_scan - T_inj = 57 min 30 s = 3450 s and
factor = 72.5 x 1000 / (150e6 x 2 ** (-3450 / 4062.6)).
"""
from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from DCEUSResponseLib.app.demo import demo_regions
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.volumes import read_volume
from DCEUSResponseLib.pet.suv import suv_factor, suv_factor_of
from DCEUSResponseLib.synthetic.dicom_ct_pet import write_enhanced_pet, write_patient
from DCEUSResponseLib.synthetic.patient import CI_PET_GRID, make_patient

SOURCE = "/data/pet"
WEIGHT_KG, DOSE_BQ, HALF_LIFE_S = 72.5, 150.0e6, 4062.6
BASE_FACTOR = 72.5 * 1000 / (150e6 * 2 ** (-3450 / 4062.6))


def pet_header(**changes) -> Dataset:
    ds = Dataset()
    ds.Modality = "PT"
    ds.Units, ds.DecayCorrection = "BQML", "START"
    ds.CorrectedImage = ["DECY", "ATTN", "SCAT"]
    ds.PatientWeight = str(WEIGHT_KG)
    ds.SeriesDate, ds.SeriesTime = "20260115", "110000"
    ds.AcquisitionDate, ds.AcquisitionTime = "20260115", "110000"
    item = Dataset()
    item.RadionuclideTotalDose, item.RadionuclideHalfLife = str(DOSE_BQ), str(HALF_LIFE_S)
    item.RadiopharmaceuticalStartTime = "100230"
    item.RadiopharmaceuticalStartDateTime = "20260115100230"
    ds.RadiopharmaceuticalInformationSequence = [item]
    for keyword, value in changes.items():
        target = item if keyword.startswith("Radio") and keyword != "RadiopharmaceuticalInformationSequence" else ds
        if value is None:
            delattr(target, keyword)
        else:
            setattr(target, keyword, value)
    return ds


def close(value: float, expected: float) -> bool:
    return abs(value - expected) <= 1e-9 * abs(expected)


def error(header: Dataset, *, acquisitions=()) -> str:
    with pytest.raises(InputError) as caught:
        suv_factor(header, SOURCE, acquisitions)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(SOURCE + ": ")
    return message


def test_start_decay_to_the_series_time():
    suv = suv_factor(pet_header(), SOURCE)
    assert close(suv.factor, BASE_FACTOR)
    assert close(suv.decay_factor, 2 ** (-3450 / 4062.6))
    assert (suv.weight_kg, suv.dose_bq, suv.half_life_s) == (72.5, 150e6, 4062.6)
    assert suv.injection_datetime == "2026-01-15T10:02:30" and suv.scan_datetime == "2026-01-15T11:00:00"
    assert (suv.decay_correction, suv.units, suv.scan_time_source) == ("START", "BQML", "series")
    assert set(suv.to_dict()) >= {"factor", "weight_kg", "dose_bq", "injection_datetime", "scan_datetime",
                                  "half_life_s", "decay_correction", "units"}


def test_start_time_without_date_time_takes_the_series_date():
    suv = suv_factor(pet_header(RadiopharmaceuticalStartDateTime=None), SOURCE)
    assert close(suv.factor, BASE_FACTOR)


def test_injection_before_midnight_scan_after():
    # injected 23:35:00 on the 15th, scanned 00:05:00 on the 16th: 30 min = 1800 s
    expected = 72.5 * 1000 / (150e6 * 2 ** (-1800 / 4062.6))
    clock_only = pet_header(SeriesDate="20260116", SeriesTime="000500", AcquisitionDate="20260116",
                            AcquisitionTime="000500", RadiopharmaceuticalStartTime="233500",
                            RadiopharmaceuticalStartDateTime=None)
    suv = suv_factor(clock_only, SOURCE)
    assert close(suv.factor, expected) and suv.injection_datetime == "2026-01-15T23:35:00"
    explicit = pet_header(SeriesDate="20260116", SeriesTime="000500", AcquisitionDate="20260116",
                          AcquisitionTime="000500", RadiopharmaceuticalStartDateTime="20260115233500.000000")
    assert close(suv_factor(explicit, SOURCE).factor, expected)


def test_post_processed_series_decays_to_the_earlier_acquisition():
    # Series Time 12:30 (when the series was made); acquired 11:00: T_scan = 11:00, 3450 s
    header = pet_header(SeriesTime="123000")
    suv = suv_factor(header, SOURCE)
    assert close(suv.factor, BASE_FACTOR) and suv.scan_time_source == "acquisition"
    # the earliest acquisition of all slices counts (bed 1 at 10:58:00: 3330 s)
    beds = ("20260115110230", "20260115105800", "20260115110000")
    suv = suv_factor(header, SOURCE, beds)
    assert close(suv.factor, 72.5 * 1000 / (150e6 * 2 ** (-3330 / 4062.6)))
    assert suv.scan_datetime == "2026-01-15T10:58:00"


def test_later_acquisitions_of_further_beds_keep_the_series_time():
    suv = suv_factor(pet_header(), SOURCE, ("20260115110000", "20260115110230"))
    assert close(suv.factor, BASE_FACTOR) and suv.scan_time_source == "series"


def test_admin_decay_correction_uses_the_dose_as_injected():
    suv = suv_factor(pet_header(DecayCorrection="ADMIN"), SOURCE)
    assert close(suv.factor, 72.5 * 1000 / 150e6) and suv.decay_factor == 1.0


def test_gml_is_already_suv():
    suv = suv_factor(pet_header(Units="GML", PatientWeight=None), SOURCE)
    assert suv.factor == 1.0 and suv.units == "GML"


def _philips(header: Dataset, element: int, value: str) -> Dataset:
    block = header.private_block(0x7053, "Philips PET Private Group", create=True)
    block.add_new(element, "DS", value)
    return header


def test_counts_with_the_philips_suv_scale_factor():
    header = _philips(pet_header(Units="CNTS"), 0x00, "0.000734")
    suv = suv_factor(header, SOURCE)
    assert close(suv.factor, 0.000734) and "7053,1000" in suv.vendor_factor


def test_counts_with_the_philips_activity_factor_proceed_as_bqml():
    header = _philips(pet_header(Units="CNTS"), 0x09, "2.5")
    suv = suv_factor(header, SOURCE)
    assert close(suv.factor, 2.5 * BASE_FACTOR) and "7053,1009" in suv.vendor_factor


def test_counts_without_a_vendor_factor_is_an_error():
    assert "Units CNTS without a vendor SUV factor (Philips (7053,1000)" in error(pet_header(Units="CNTS"))


@pytest.mark.parametrize("changes, expected", [
    ({"PatientWeight": None}, "no Patient's Weight (0010,1030)"),
    ({"PatientWeight": "0"}, "Patient's Weight (0010,1030) 0 kg is not a patient's weight"),
    ({"PatientWeight": "725"}, "725 kg is not a patient's weight"),
    ({"RadionuclideTotalDose": None}, "no Radionuclide Total Dose (0018,1074)"),
    ({"RadionuclideHalfLife": None}, "no Radionuclide Half Life (0018,1075)"),
    ({"RadionuclideTotalDose": "-5"}, "Radionuclide Total Dose (0018,1074) must be positive"),
    ({"RadiopharmaceuticalStartDateTime": None, "RadiopharmaceuticalStartTime": None},
     "no Radiopharmaceutical Start DateTime (0018,1078) nor Radiopharmaceutical Start Time (0018,1072)"),
    ({"RadiopharmaceuticalInformationSequence": None}, "no Radiopharmaceutical Information Sequence (0054,0016)"),
    ({"SeriesDate": None, "SeriesTime": None, "AcquisitionDate": None, "AcquisitionTime": None},
     "no Series Date/Time (0008,0021/0031) nor Acquisition Date/Time"),
    ({"Units": None}, "no Units (0054,1001)"),
    ({"Units": "PROPCPS"}, "Units (0054,1001) PROPCPS cannot be turned into SUVbw"),
    ({"DecayCorrection": "NONE"}, "Decay Correction (0054,1102) is NONE: SUVbw needs START or ADMIN"),
    ({"CorrectedImage": ["ATTN", "SCAT"]}, "Corrected Image (0028,0051) lacks DECY"),
    ({"CorrectedImage": "DECY"}, "Corrected Image (0028,0051) lacks ATTN"),
    ({"CorrectedImage": None}, "no Corrected Image (0028,0051)"),
    ({"RadiopharmaceuticalStartDateTime": "20260115120000"}, "h after the injection"),
])
def test_missing_or_absurd_attributes_are_one_line_errors(changes, expected):
    assert expected in error(pet_header(**changes))


def test_the_synthetic_pet_gives_the_true_factor_and_suv(tmp_path):
    files = write_patient(tmp_path, make_patient(demo_regions("baseline")))
    volume = read_volume(files.pet_dir, "PT")
    suv = suv_factor_of(volume)
    # the patient's truth: 72.5 kg, 150 MBq, injected 10:02:30, scan (bed 1 and Series Time) 11:00:00
    assert close(suv.factor, BASE_FACTOR) and close(files.truth.suv_factor, BASE_FACTOR)
    # SUV voxels = values x factor equal the analytic SUV at the voxel centres (up to the 16-bit step)
    values_suv = volume.values * suv.factor
    truth_suv = np.stack([files.truth.suv_at(CI_PET_GRID.slice_points(k)) for k in range(CI_PET_GRID.shape[0])])
    assert np.max(np.abs(values_suv - truth_suv)) < 25.0 / 32767
    assert np.max(values_suv) == pytest.approx(25.0, abs=1e-3)  # lesion1's rim is the hottest
    write_enhanced_pet(tmp_path / "enhanced" / "pet.dcm", files.truth, CI_PET_GRID)
    enhanced = suv_factor_of(read_volume(tmp_path / "enhanced"))
    assert close(enhanced.factor, BASE_FACTOR) and enhanced.scan_time_source == "decay-correction"
    with pytest.raises(InputError, match="SUV needs a PET"):
        suv_factor_of(read_volume(files.ct_dir))
