"""What every DICOM output shares: the source clip's header, the CEUS plane geometry, UIDs, equipment.

Ultrasound cine clips carry no patient geometry (no Frame of Reference, no Image Position /
Orientation). The DICOM outputs state one explicitly, the engine's frame geometry (contract,
"DICOM outputs"):

* a Frame of Reference UID of the clip's own, derived from its SOP Instance UID
  (:func:`ceus_frame_of_reference_uid`), so every output of one clip (maps, SEG, registration)
  shares it and a re-run gives the same one;
* pixel (r, c) of the full frame lies at (c dx, r dy, 0) mm in that frame (dy, dx the clip's
  spacing, 1 mm without calibration), Image Orientation (Patient) [1, 0, 0, 0, 1, 0], the plane
  1 mm thick; Slicer shows it at RAS (-c dx, -r dy, 0), where the module puts the clip's volumes.

highdicom wants a source image with a geometry; :func:`geometric_source` gives it a copy of the
clip's header (no pixels) carrying this one plane. The written objects reference the real clip
and its reference frame (:func:`reference_frame_in_derivations`).
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from DCEUSResponseLib import __version__
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.dicom_series import series_instances
from DCEUSResponseLib.catalogue import (
    ANATOMIC_REGION,
    PRIVATE_SCHEME,
    PRIVATE_SCHEME_NAME,
    PRIVATE_SCHEME_RESPONSIBLE,
    PRIVATE_SCHEME_VERSION,
    UCUM_MEANINGS,
)

if TYPE_CHECKING:  # for annotations only: pydicom / highdicom are imported inside functions
    from pydicom import Dataset

#: The files of one run's DICOM objects in its DICOM folder (``DIR/dicom`` of ``analyze --dicom``).
SR_FILE = "SR_measurements.dcm"
SEG_FILE = "SEG_ROIs.dcm"
REG_FILE = "REG_ceus_to_ct.dcm"
DICOM_FOLDER = "dicom"


def parametric_map_file(name: str) -> str:
    return f"PM_{name}.dcm"


def dicom_output_patterns(folder: str = DICOM_FOLDER) -> tuple[str, ...]:
    """Globs (relative to the output folder) of the DICOM objects a run writes into ``folder``: a run
    that writes results.json, or DICOM objects, replaces an earlier run's set with its own
    (:meth:`staging.StagedFiles.commit` ``replaces``), so no stale map or report is left beside it."""
    names = (parametric_map_file("*"), SEG_FILE, REG_FILE, SR_FILE)
    return tuple(os.path.join(folder, name) if folder else name for name in names)


MANUFACTURER = "DCEUSResponse"
MODEL_NAME = "DCEUSResponse quantification engine"
DEVICE_SERIAL_NUMBER = "none"
#: Every output is UTF-8, whatever the clip's character set: ROI names are any Unicode text, and
#: highdicom would otherwise copy the clip's set (refusing ISO 2022's empty first value; unable to
#: hold, say, a CJK ROI name in ISO_IR 100). The clip's text is re-encoded, not copied as bytes.
OUTPUT_CHARACTER_SET = "ISO_IR 192"
IMAGE_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
PLANE_THICKNESS_MM = 1.0
# uuid5 namespace of the project's derived UIDs (2.25 root: UUID-derived, PS3.5 B.2).
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/DCEUSResponse/DCEUSResponse/dicom")
_IMAGE_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image Storage",
                      "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image Storage"}


def derived_uid(*parts: str) -> str:
    """A UID under the 2.25 root from a UUID 5 of ``parts``: the same parts give the same UID."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, chr(31).join(parts)).int}"


def ceus_frame_of_reference_uid(source_sop_instance_uid: str) -> str:
    """The Frame of Reference of a clip's plane (the frame geometry), derived from its SOP Instance UID."""
    return derived_uid("ceus-frame-of-reference", source_sop_instance_uid)


def lesion_tracking_uid(patient_id: str, roi_name: str, issuer_of_patient_id: str = "") -> str:
    """Tracking Unique Identifier of a lesion: the same patient and ROI name give the same UID at every exam."""
    return derived_uid("lesion", issuer_of_patient_id, patient_id, roi_name)


def software_version() -> str:
    return __version__


def read_source_header(path: str) -> "Dataset":
    """The header (no pixel data) of a clip given as one DICOM file; only ultrasound images are accepted."""
    import pydicom

    if os.path.isdir(path):
        raise InputError("expected one DICOM file, got a folder", path)
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, pydicom.errors.InvalidDicomError) as error:
        raise InputError(f"cannot read the source clip as DICOM ({error})", path) from None
    _check_source(header, path)
    return header


def _check_source(header: "Dataset", path: str) -> None:
    for keyword in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if keyword not in header:
            raise InputError(f"the source clip has no {keyword}", path)
    if header.SOPClassUID not in _IMAGE_SOP_CLASSES:
        raise InputError(f"the source clip is not an ultrasound image (SOP Class {header.SOPClassUID})", path)


@dataclass(frozen=True)
class SourceClip:
    """The clip's DICOM instances as headers (no pixel data), frame k first: one multi-frame file, or a
    single-frame series (one instance per frame, in the order :func:`io.dicom_us.read_clip` reads them)."""

    path: str
    instances: tuple  # of pydicom Datasets

    @property
    def first(self) -> "Dataset":
        return self.instances[0]

    @property
    def is_series(self) -> bool:
        return len(self.instances) > 1

    @property
    def n_frames(self) -> int:
        return len(self.instances) if self.is_series else int(self.first.get("NumberOfFrames") or 1)

    def frame(self, index: int) -> tuple["Dataset", int | None]:
        """The instance holding frame ``index`` (0-based) and the frame's number in it (1-based; None
        for a single-frame instance, which has no frame numbers)."""
        if not 0 <= index < self.n_frames:
            raise InputError(f"frame {index} is not in the clip of {self.n_frames} frames", self.path)
        return (self.instances[index], None) if self.is_series else (self.first, index + 1)


def read_source_clip(path: str) -> SourceClip:
    """The clip's instances: a DICOM file (multi-frame), or a folder of one single-frame series."""
    if not os.path.isdir(path):
        return SourceClip(path, (read_source_header(path),))
    headers = []
    for file_path, dataset in series_instances(path):
        _check_source(dataset, file_path)
        del dataset.PixelData  # our own read: the outputs need the headers only
        headers.append(dataset)
    series = {str(h.SeriesInstanceUID) for h in headers}
    if len(series) != 1:
        raise InputError(f"holds files of {len(series)} different series; put one series per folder", path)
    return SourceClip(path, tuple(headers))


@dataclass(frozen=True)
class PlaneGeometry:
    """A pixel grid on the CEUS plane: first pixel's centre at ``origin_mm`` (x, y), ``spacing_mm`` (dy, dx)."""

    frame_of_reference_uid: str
    origin_mm: tuple[float, float]
    spacing_mm: tuple[float, float]

    def plane_position(self):
        import highdicom as hd

        return hd.PlanePositionSequence("PATIENT", [float(self.origin_mm[0]), float(self.origin_mm[1]), 0.0])

    @staticmethod
    def plane_orientation():
        import highdicom as hd

        return hd.PlaneOrientationSequence("PATIENT", list(IMAGE_ORIENTATION))

    def pixel_measures(self):
        import highdicom as hd

        return hd.PixelMeasuresSequence([float(self.spacing_mm[0]), float(self.spacing_mm[1])], PLANE_THICKNESS_MM)


def frame_geometry(header: "Dataset", spacing_mm: Sequence[float] | None) -> PlaneGeometry:
    """The full frame's grid: origin (0, 0), the clip's spacing (results.json ``clip.pixel_spacing_mm``)."""
    dy, dx = (float(spacing_mm[0]), float(spacing_mm[1])) if spacing_mm else (1.0, 1.0)
    if not (dy > 0 and dx > 0):
        raise InputError(f"pixel spacing {dy} x {dx} mm is not positive", getattr(header, "filename", None))
    return PlaneGeometry(ceus_frame_of_reference_uid(header.SOPInstanceUID), (0.0, 0.0), (dy, dx))


def geometric_source(header: "Dataset", geometry: PlaneGeometry, rows: int, columns: int) -> "Dataset":
    """A copy of the clip's header as a one-frame image on ``geometry``, for highdicom's constructors.

    highdicom copies the patient and study modules and the references from it; the frame
    references are corrected afterwards by :func:`reference_frame_in_derivations`.
    """
    from pydicom import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    source = Dataset()
    source.update(header)
    source.file_meta = header.file_meta if hasattr(header, "file_meta") else Dataset()
    source.FrameOfReferenceUID = geometry.frame_of_reference_uid
    source.PositionReferenceIndicator = ""
    source.NumberOfFrames = 1
    source.Rows, source.Columns = int(rows), int(columns)
    shared = Dataset()
    shared.PlaneOrientationSequence = geometry.plane_orientation()
    shared.PixelMeasuresSequence = geometry.pixel_measures()
    per_frame = Dataset()
    per_frame.PlanePositionSequence = geometry.plane_position()
    source.SharedFunctionalGroupsSequence = DicomSequence([shared])
    source.PerFrameFunctionalGroupsSequence = DicomSequence([per_frame])
    # highdicom reads a single-frame IOD's (Ultrasound Image Storage) geometry from the top level
    source.ImageOrientationPatient = list(IMAGE_ORIENTATION)
    source.ImagePositionPatient = list(per_frame.PlanePositionSequence[0].ImagePositionPatient)
    source.PixelSpacing = list(shared.PixelMeasuresSequence[0].PixelSpacing)
    source.SliceThickness = PLANE_THICKNESS_MM
    return source


def reference_frame_in_derivations(dataset: "Dataset", source: "Dataset", frame_number: int | None) -> None:
    """Point every reference to the clip in ``dataset`` at its frame ``frame_number`` (1-based; None:
    ``source`` is a single-frame instance, referenced as a whole).

    Sets Referenced Frame Number in each frame's Derivation Image Sequence (the top-level Source
    Image Sequence of these IODs has no frame numbers); adds a Derivation Image Sequence to frames
    that have none (spatial locations not preserved: the map grid is not the frame's).
    """
    from pydicom import Dataset
    from pydicom.sr.codedict import codes

    def point(item: Dataset) -> None:
        if item.ReferencedSOPInstanceUID == source.SOPInstanceUID and frame_number is not None:
            item.ReferencedFrameNumber = int(frame_number)

    for group in dataset.get("PerFrameFunctionalGroupsSequence", []):
        derivations = group.get("DerivationImageSequence")
        if not derivations:
            reference = Dataset()
            reference.ReferencedSOPClassUID = source.SOPClassUID
            reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
            if frame_number is not None:
                reference.ReferencedFrameNumber = int(frame_number)
            reference.PurposeOfReferenceCodeSequence = [_code_item(codes.DCM.SourceImageForImageProcessingOperation)]
            reference.SpatialLocationsPreserved = "NO"
            derivation = Dataset()
            derivation.DerivationCodeSequence = [_code_item(codes.DCM.UnspecifiedMethodOfCalculation)]
            derivation.SourceImageSequence = [reference]
            group.DerivationImageSequence = [derivation]
            continue
        for derivation in derivations:
            for item in derivation.get("SourceImageSequence", []):
                point(item)


def add_frame_anatomy(dataset: "Dataset") -> None:
    """Frame Anatomy (shared): the liver, an unpaired organ (Frame Laterality U).

    Without it the General Series module requires Laterality (type 2C), which for an unpaired
    organ should be absent: the frame-level statement is the one the multi-frame IODs expect.
    """
    from pydicom import Dataset

    anatomy = Dataset()
    anatomy.AnatomicRegionSequence = [_code_item(coded(ANATOMIC_REGION))]
    anatomy.FrameLaterality = "U"
    dataset.SharedFunctionalGroupsSequence[0].FrameAnatomySequence = [anatomy]


def _code_item(code) -> "Dataset":
    from pydicom import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code.value, code.scheme_designator, code.meaning
    return item


def coded(entry: Sequence[str]):
    """A highdicom CodedConcept of a catalogue :class:`~DCEUSResponseLib.catalogue.Code` (value, scheme, meaning)."""
    import highdicom as hd

    value, scheme, meaning = entry[:3]
    return hd.sr.CodedConcept(value, scheme, meaning)


def ucum(unit: str):
    """The UCUM CodedConcept of a UCUM unit of the catalogue."""
    import highdicom as hd

    return hd.sr.CodedConcept(unit, "UCUM", UCUM_MEANINGS.get(unit, unit))


def private_coding_scheme():
    """Coding Scheme Identification Sequence item of the private scheme (SOP Common module)."""
    from pydicom import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = PRIVATE_SCHEME_NAME
    item.CodingSchemeVersion = PRIVATE_SCHEME_VERSION
    item.CodingSchemeResponsibleOrganization = PRIVATE_SCHEME_RESPONSIBLE
    return item


def add_private_coding_scheme(dataset: "Dataset") -> None:
    dataset.CodingSchemeIdentificationSequence = [private_coding_scheme()]


def equipment() -> dict[str, Any]:
    """Keyword arguments for highdicom's constructors: this software as the device, and the outputs'
    character set (:data:`OUTPUT_CHARACTER_SET`)."""
    return {"manufacturer": MANUFACTURER, "manufacturer_model_name": MODEL_NAME,
            "software_versions": software_version(), "device_serial_number": DEVICE_SERIAL_NUMBER,
            "specific_character_set": OUTPUT_CHARACTER_SET}
