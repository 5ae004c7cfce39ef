"""The CEUS-to-CT registration as a DICOM Spatial Registration object (pydicom; highdicom has none).

The object lives in the CT's Frame of Reference (the registered frame). Its Registration Sequence
holds two items: the CT's frame with the identity, and the CEUS clip's own frame
(:func:`dicom_common.ceus_frame_of_reference_uid`) with ``ceus_to_patient_lps``, the rigid 4 x 4
matrix of the fusion contract: PS3.3 C.20.2, the matrix maps coordinates of the item's frame
(CEUS plane, pixel (r, c) at (c dx, r dy, 0) mm) into the registered frame (CT patient LPS mm).
"""
from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING, Sequence

import numpy as np

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.export.dicom_common import (
    MANUFACTURER,
    MODEL_NAME,
    DEVICE_SERIAL_NUMBER,
    OUTPUT_CHARACTER_SET,
    software_version,
)

if TYPE_CHECKING:  # for annotations only: pydicom is imported inside functions
    from pydicom import Dataset

SPATIAL_REGISTRATION_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.1"
RIGID_TOLERANCE = 1e-3  # orthonormality of the rotation, as the fusion contract requires
# Registration Type (CID 7100): how each frame was aligned.
_REGISTRATION_TYPES = {"landmarks": ("125022", "DCM", "Fiducial Alignment"),
                       "transform": ("125023", "DCM", "Acquisition Equipment Alignment"),
                       "identity": ("125021", "DCM", "Frame of Reference Identity")}
# Patient and study attributes copied from the CEUS clip (Patient, General Study, Patient Study).
_COPIED = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "PatientAge",
           "PatientWeight", "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
           "AccessionNumber", "StudyDescription")


def rigid_matrix(matrix: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """``matrix`` as a 4 x 4 float array, refused unless it is rigid (rotation + translation)."""
    array = np.asarray(matrix, dtype=float)
    if array.shape != (4, 4) or not np.all(np.isfinite(array)):
        raise InputError(f"the registration must be a finite 4 x 4 matrix, got shape {array.shape}")
    rotation = array[:3, :3]
    if (not np.allclose(array[3], [0.0, 0.0, 0.0, 1.0]) or
            not np.allclose(rotation.T @ rotation, np.eye(3), atol=RIGID_TOLERANCE) or np.linalg.det(rotation) < 0):
        raise InputError("the registration is not rigid (the rotation must be orthonormal, det +1, "
                         f"within {RIGID_TOLERANCE})")
    return array


def build_spatial_registration(matrix, ct_frame_of_reference_uid: str, ceus_frame_of_reference_uid: str,
                               source: "Dataset", *, method: str = "landmarks", series_instance_uid: str,
                               sop_instance_uid: str, instance_number: int = 1, series_number: int = 904,
                               description: str = "CEUS plane to CT registration") -> "Dataset":
    """The Spatial Registration dataset; patient and study modules copied from ``source`` (the CEUS clip).

    ``method`` is the fusion.json ``registration.method`` (``"landmarks"`` or ``"transform"``).
    """
    from pydicom import Dataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    array = rigid_matrix(matrix)
    if method not in ("landmarks", "transform"):
        raise InputError(f"unknown registration method {method!r}")
    now = _dt.datetime.now()
    ds = Dataset()
    for keyword in _COPIED:
        ds[keyword] = source[keyword] if keyword in source else _empty(keyword)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "ReferringPhysicianName", "StudyID", "AccessionNumber"):
        if keyword not in ds:
            setattr(ds, keyword, "")
    ds.SOPClassUID, ds.SOPInstanceUID = SPATIAL_REGISTRATION_SOP_CLASS, sop_instance_uid
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "REG", series_instance_uid, series_number
    ds.SeriesDescription = description
    # The liver is unpaired: with Body Part Examined the General Series module needs no Laterality.
    ds.BodyPartExamined = source.get("BodyPartExamined") or "LIVER"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = ct_frame_of_reference_uid, ""
    ds.Manufacturer, ds.ManufacturerModelName = MANUFACTURER, MODEL_NAME
    ds.DeviceSerialNumber, ds.SoftwareVersions = DEVICE_SERIAL_NUMBER, software_version()
    ds.InstanceNumber = instance_number
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.ContentDate, ds.ContentTime
    ds.ContentLabel, ds.ContentDescription, ds.ContentCreatorName = "CEUS_TO_CT", description, ""
    ds.RegistrationSequence = [_registration_item(ct_frame_of_reference_uid, np.eye(4), "identity",
                                                  "CT frame of reference (registered frame)"),
                               _registration_item(ceus_frame_of_reference_uid, array, method,
                                                  "CEUS plane, pixel (r, c) at (c dx, r dy, 0) mm, to CT LPS")]
    ds.file_meta = Dataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, sop_instance_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = OUTPUT_CHARACTER_SET  # the copied text re-encoded on writing
    return ds


def _empty(keyword: str):
    from pydicom import DataElement
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    return DataElement(tag, dictionary_VR(tag), None)


def _registration_item(frame_of_reference_uid: str, matrix: np.ndarray, kind: str, comment: str) -> "Dataset":
    from pydicom import Dataset

    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = _REGISTRATION_TYPES[kind]
    transform = Dataset()
    transform.FrameOfReferenceTransformationMatrixType = "RIGID"
    transform.FrameOfReferenceTransformationMatrix = [_ds(v) for v in matrix.reshape(-1)]
    matrix_registration = Dataset()
    matrix_registration.FrameOfReferenceTransformationComment = comment
    matrix_registration.RegistrationTypeCodeSequence = [code]
    matrix_registration.MatrixSequence = [transform]
    item = Dataset()
    item.FrameOfReferenceUID = frame_of_reference_uid
    item.MatrixRegistrationSequence = [matrix_registration]
    return item


def _ds(value: float) -> str:
    # Decimal String holds 16 characters: the shortest repr that fits, rounded only when it must.
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


def write_spatial_registration(matrix, ct_frame_of_reference_uid: str, ceus_frame_of_reference_uid: str,
                               source: "Dataset", path: str, **options) -> "Dataset":
    """Write :func:`build_spatial_registration` to ``path`` (the caller stages it); returns the dataset."""
    ds = build_spatial_registration(matrix, ct_frame_of_reference_uid, ceus_frame_of_reference_uid, source, **options)
    ds.save_as(path, enforce_file_format=True)
    return ds
