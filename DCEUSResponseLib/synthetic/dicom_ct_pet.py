"""Write the synthetic patient (:mod:`DCEUSResponseLib.synthetic.patient`) as real CT and PET DICOM.

* :func:`write_ct_series`: CT Image Storage, one file per slice, HU = stored - 1024 (12 bits);
* :func:`write_pet_series`: PET Image Storage, one file per slice, Bq/ml with a Rescale Slope per
  slice (as scanners write them), Units BQML, Decay Correction START, Corrected Image with ATTN and
  DECY, the Radiopharmaceutical Information Sequence (68Ga, dose, start date-time, half-life),
  Patient's Weight, two bed positions with their own Acquisition Time;
* :func:`write_enhanced_pet`: the same PET as one Enhanced PET Image Storage file (per-frame
  functional groups), for the reader;
* :func:`write_patient`: CT and PET of one patient in two folders, sharing the Frame of Reference.

File names are shuffled (``IM<k>.dcm`` not in slice order) so readers must sort by geometry.
Every classic file passes dicom3tools' ``dciodvfy`` without errors
(``Testing/Python/test_synthetic_patient.py``). pydicom is imported inside the functions.
"""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass

import numpy as np

from DCEUSResponseLib.synthetic.patient import (
    CI_CT_GRID,
    CI_PET_GRID,
    PatientTruth,
    VolumeGrid,
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
ENHANCED_PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.130"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
CT_INTERCEPT = -1024.0
_PET_MAX_STORED = 32767  # signed 16 bit
_MANUFACTURER, _MODEL = "DCEUSResponse", "Synthetic PET/CT writer"


@dataclass(frozen=True)
class PatientFiles:
    """Where :func:`write_patient` put the series, and the truth they were made from."""

    ct_dir: str
    pet_dir: str
    truth: PatientTruth
    ct_series_uid: str
    pet_series_uid: str


def write_patient(folder: str | os.PathLike, truth: PatientTruth, *,
                  ct_grid: VolumeGrid = CI_CT_GRID, pet_grid: VolumeGrid = CI_PET_GRID,
                  oblique: bool = False) -> PatientFiles:
    """Write ``folder/ct`` and ``folder/pet`` of ``truth``.

    The demo patient is ``make_patient(app.demo.demo_regions("baseline"))`` (the demo owns its
    regions; ``synthetic`` sits below ``app`` and does not import it). ``oblique`` turns both grids
    (15 deg about x, 10 deg about z) while the anatomy stays put.
    """
    if oblique:
        ct_grid, pet_grid = ct_grid.oblique(), pet_grid.oblique()
    ct_dir, pet_dir = os.path.join(folder, "ct"), os.path.join(folder, "pet")
    ct_uid = write_ct_series(ct_dir, truth, ct_grid)
    pet_uid = write_pet_series(pet_dir, truth, pet_grid)
    return PatientFiles(ct_dir, pet_dir, truth, ct_uid, pet_uid)


def write_ct_series(folder: str | os.PathLike, truth: PatientTruth, grid: VolumeGrid, *,
                    series_uid: str | None = None, series_number: int = 2,
                    series_description: str = "CT abdomen portal venous") -> str:
    """Write the patient's CT on ``grid`` (one file per slice); returns the Series Instance UID."""
    from pydicom.uid import generate_uid

    series_uid = series_uid or generate_uid()
    os.makedirs(folder, exist_ok=True)
    scan = truth.pet.scan_start - _dt.timedelta(minutes=5)  # the CT of a PET/CT comes first
    names = _shuffled_names(grid.shape[0])
    for k in range(grid.shape[0]):
        hu = np.rint(truth.hu_at(grid.slice_points(k)))
        stored = np.clip(hu - CT_INTERCEPT, 0, 4095).astype(np.uint16)
        ds = _image_dataset(CT_IMAGE_STORAGE, "CT", truth, grid, k, stored, series_uid, series_number,
                            series_description, scan)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = _ds(CT_INTERCEPT), "1", "HU"
        ds.KVP = "120"
        ds.AcquisitionNumber = "1"
        ds.ContrastBolusAgent = "Iodinated contrast"
        ds.ContrastBolusRoute = "IV"
        ds.WindowCenter, ds.WindowWidth = "50", "400"
        _save(ds, os.path.join(folder, names[k]))
    return series_uid


def write_pet_series(folder: str | os.PathLike, truth: PatientTruth, grid: VolumeGrid, *,
                     series_uid: str | None = None, series_number: int = 3,
                     series_description: str = "PET 68Ga-DOTATATE AC",
                     series_datetime: _dt.datetime | None = None) -> str:
    """Write the patient's PET (Bq/ml, per-slice slopes) on ``grid``; returns the Series Instance UID.

    ``series_datetime`` (default: the first bed's acquisition start) later than the acquisition
    makes a post-processed series, whose SUV must be decayed to the acquisition instead.
    """
    from pydicom.uid import generate_uid

    series_uid = series_uid or generate_uid()
    os.makedirs(folder, exist_ok=True)
    pet = truth.pet
    series_datetime = series_datetime or pet.scan_start
    n = grid.shape[0]
    names = _shuffled_names(n)
    for k in range(n):
        activity = truth.activity_at(grid.slice_points(k))
        slope = float(activity.max()) / _PET_MAX_STORED if activity.max() > 0 else 1.0
        slope = float(_ds(slope))  # the slope as the file holds it, so stored values match it
        stored = np.rint(activity / slope).astype(np.int16)
        bed = 0 if k < n // 2 else 1  # two bed positions, the lower half first
        acquired = pet.scan_start + _dt.timedelta(seconds=bed * pet.bed_duration_s)
        ds = _image_dataset(PET_IMAGE_STORAGE, "PT", truth, grid, k, stored, series_uid, series_number,
                            series_description, series_datetime)
        _pet_image(ds, truth, k, n, slope, acquired)
        _save(ds, os.path.join(folder, names[k]))
    return series_uid


def write_enhanced_pet(path: str | os.PathLike, truth: PatientTruth, grid: VolumeGrid, *,
                       series_uid: str | None = None) -> str:
    """The patient's PET as one Enhanced PET Image Storage file; returns the Series Instance UID.

    Per-frame functional groups carry each frame's position, acquisition time and rescale slope;
    the shared ones the orientation, pixel measures and a Real World Value Mapping naming the units
    (UCUM Bq/ml); Decay Corrected / Attenuation Corrected YES with Decay Correction DateTime at the
    scan start. Frames are written in reverse slice order so readers must sort them.

    This is a reader-test fixture, not a conformant instance: the Enhanced PET IOD's many PET
    functional-group macros (frame type, acquisition, detector motion, reconstruction, ...) are
    left out, so dciodvfy reports them missing.
    """
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    series_uid = series_uid or generate_uid()
    pet = truth.pet
    n = grid.shape[0]
    first = _image_dataset(ENHANCED_PET_IMAGE_STORAGE, "PT", truth, grid, 0, np.zeros(grid.shape[1:], np.int16),
                           series_uid, 3, "PET 68Ga-DOTATATE AC enhanced", pet.scan_start)
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                    "SliceLocation", "InstanceNumber"):
        delattr(first, keyword)
    first.InstanceNumber = "1"
    first.ImageType = ["ORIGINAL", "PRIMARY"]
    first.ContentQualification = "PRODUCT"
    first.NumberOfFrames = str(n)
    first.BitsStored, first.HighBit, first.PixelRepresentation = 16, 15, 1
    first.PatientWeight = _ds(pet.weight_kg)
    first.RadiopharmaceuticalInformationSequence = [_radiopharmaceutical_item(truth)]
    first.DecayCorrected, first.AttenuationCorrected = "YES", "YES"
    first.DecayCorrectionDateTime = pet.scan_start.strftime("%Y%m%d%H%M%S.%f")
    shared = Dataset()
    measures, orientation = Dataset(), Dataset()
    column_mm, row_mm, slice_mm = grid.spacing_mm
    measures.PixelSpacing = [_ds(row_mm), _ds(column_mm)]
    measures.SliceThickness = _ds(slice_mm)
    orientation.ImageOrientationPatient = [_ds(v) for v in _orientation(grid)]
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [measures], [orientation]
    mapping, units = Dataset(), Dataset()
    units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning = "Bq/ml", "UCUM", "Becquerels/milliliter"
    mapping.MeasurementUnitsCodeSequence = [units]
    mapping.LUTExplanation, mapping.LUTLabel = "activity concentration", "BQML"
    # the stored -> Bq/ml mapping is each frame's Rescale Slope; the mapping here names the units
    mapping.RealWorldValueIntercept, mapping.RealWorldValueSlope = 0.0, 1.0
    mapping.RealWorldValueFirstValueMapped, mapping.RealWorldValueLastValueMapped = -32768, 32767
    shared.RealWorldValueMappingSequence = [mapping]
    first.SharedFunctionalGroupsSequence = [shared]
    frames, per_frame = [], []
    for k in reversed(range(n)):
        activity = truth.activity_at(grid.slice_points(k))
        slope = float(_ds(float(activity.max()) / _PET_MAX_STORED if activity.max() > 0 else 1.0))
        frames.append(np.rint(activity / slope).astype(np.int16))
        item, position, content, transform = Dataset(), Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = [_ds(v) for v in (grid.ijk_to_lps @ [0, 0, k, 1])[:3]]
        content.FrameAcquisitionDateTime = pet.scan_start.strftime("%Y%m%d%H%M%S.%f")
        content.FrameAcquisitionDuration = float(pet.bed_duration_s * 1000.0)
        transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = _ds(slope), "0", "US"
        item.PlanePositionSequence, item.FrameContentSequence = [position], [content]
        item.PixelValueTransformationSequence = [transform]
        per_frame.append(item)
    first.PerFrameFunctionalGroupsSequence = per_frame
    first.PixelData = np.stack(frames).astype("<i2").tobytes()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    _save(first, path)
    return series_uid


# --------------------------------------------------------------------------------------------
# building blocks


def _image_dataset(sop_class: str, modality: str, truth: PatientTruth, grid: VolumeGrid, k: int,
                   stored: np.ndarray, series_uid: str, series_number: int, description: str,
                   series_datetime: _dt.datetime):
    """Patient, study, series, frame of reference, equipment, image plane and pixel attributes."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.Modality = modality
    ds.PatientName, ds.PatientID = truth.patient_name, truth.patient_id
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyInstanceUID = truth.study_instance_uid
    study = truth.pet.injection
    ds.StudyDate, ds.StudyTime = study.strftime("%Y%m%d"), study.strftime("%H%M%S")
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "1", ""
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, str(series_number), description
    ds.SeriesDate, ds.SeriesTime = series_datetime.strftime("%Y%m%d"), series_datetime.strftime("%H%M%S.%f")
    ds.BodyPartExamined = "ABDOMEN"
    ds.PatientPosition = "FFS"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = truth.frame_of_reference_uid, ""
    ds.Manufacturer, ds.ManufacturerModelName = _MANUFACTURER, _MODEL
    ds.InstanceNumber = str(k + 1)
    matrix = grid.ijk_to_lps
    column_mm, row_mm, slice_mm = grid.spacing_mm
    ds.ImagePositionPatient = [_ds(v) for v in (matrix @ [0, 0, k, 1])[:3]]
    ds.ImageOrientationPatient = [_ds(v) for v in _orientation(grid)]
    ds.PixelSpacing = [_ds(row_mm), _ds(column_mm)]
    ds.SliceThickness = _ds(slice_mm)
    ds.SliceLocation = _ds(float(np.asarray(grid.rotation)[:, 2] @ (matrix @ [0, 0, k, 1])[:3]))
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.BitsAllocated = 16
    ds.PixelData = stored.astype(stored.dtype.newbyteorder("<")).tobytes()
    return ds


def _pet_image(ds, truth: PatientTruth, k: int, n: int, slope: float, acquired: _dt.datetime) -> None:
    """PET Series, PET Isotope, NM/PET Patient Orientation and PET Image attributes of slice ``k``."""
    pet = truth.pet
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = "0", _ds(slope)
    ds.PatientWeight = _ds(pet.weight_kg)
    ds.Units, ds.CountsSource = "BQML", "EMISSION"
    ds.SeriesType = ["WHOLE BODY", "IMAGE"]
    ds.DecayCorrection = "START"
    ds.CorrectedImage = ["DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM"]
    ds.NumberOfSlices = n
    ds.RandomsCorrectionMethod = "DLYD"
    ds.AttenuationCorrectionMethod = "CT-based"
    ds.ReconstructionMethod = "OSEM 3i21s"
    ds.CollimatorType = "NONE"
    ds.AxialAcceptance = "17"
    ds.RadiopharmaceuticalInformationSequence = [_radiopharmaceutical_item(truth)]
    from pydicom.sr.codedict import codes

    del ds.PatientPosition  # the NM/PET Patient Orientation codes replace it
    ds.PatientOrientationCodeSequence = [_code(codes.SCT.Recumbent)]
    ds.PatientOrientationCodeSequence[0].PatientOrientationModifierCodeSequence = [_code(codes.SCT.Supine)]
    ds.PatientGantryRelationshipCodeSequence = [_code(codes.SCT.FeetFirst)]
    ds.AcquisitionDate, ds.AcquisitionTime = acquired.strftime("%Y%m%d"), acquired.strftime("%H%M%S.%f")
    ds.ContentDate, ds.ContentTime = acquired.strftime("%Y%m%d"), acquired.strftime("%H%M%S.%f")
    offset_s = (acquired - pet.scan_start).total_seconds()
    # decay factor of START correction: this bed's mid-frame back to the scan start (QIBA: info only)
    ds.DecayFactor = _ds(2.0 ** ((offset_s + pet.bed_duration_s / 2) / pet.half_life_s))
    ds.FrameReferenceTime = _ds((offset_s + pet.bed_duration_s / 2) * 1000.0)
    ds.ActualFrameDuration = str(int(pet.bed_duration_s * 1000))
    ds.ImageIndex = k + 1
    ds.AcquisitionContextSequence = []


def _radiopharmaceutical_item(truth: PatientTruth):
    from pydicom.dataset import Dataset

    pet = truth.pet
    item = Dataset()
    item.Radiopharmaceutical = "Ga-68 DOTATATE"
    item.RadiopharmaceuticalStartTime = pet.injection.strftime("%H%M%S.%f")
    item.RadiopharmaceuticalStartDateTime = pet.injection.strftime("%Y%m%d%H%M%S.%f")
    item.RadionuclideTotalDose = _ds(pet.dose_bq)
    item.RadionuclideHalfLife = _ds(pet.half_life_s)
    item.RadionuclidePositronFraction = "0.889"
    from pydicom.sr.codedict import codes

    item.RadionuclideCodeSequence = [_code(codes.SCT._68Gallium)]
    return item


def _code(code):
    """A code sequence item from a pydicom ``Code`` (pydicom.sr.codedict: the standard's codes)."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code.value, code.scheme_designator, code.meaning
    return item


def _orientation(grid: VolumeGrid) -> list[float]:
    rotation = np.asarray(grid.rotation, dtype=float)
    return [float(v) for v in np.concatenate([rotation[:, 0], rotation[:, 1]])]


def _shuffled_names(n: int) -> list[str]:
    permutation = np.random.default_rng(n).permutation(n)
    return [f"IM{int(p):05d}.dcm" for p in permutation]


def _save(ds, path: str | os.PathLike) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)
    meta.ImplementationVersionName = "DCEUSR_010"
    ds.file_meta = meta
    ds["PixelData"].VR = "OW"
    ds.save_as(path, enforce_file_format=True)


def _ds(value: float) -> str:
    """A Decimal String (at most 16 characters) for ``value``."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))
