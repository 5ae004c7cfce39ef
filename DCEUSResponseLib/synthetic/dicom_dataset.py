"""The DICOM datasets the synthetic writers build: the image module, pixel data (native, JPEG),
palette, identification, contrast agent, ultrasound regions, and saving with a transfer syntax.

pydicom and PIL are imported inside the functions (package rule)."""
from __future__ import annotations

import datetime as _dt
import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from DCEUSResponseLib.clip import UltrasoundRegion

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
TRANSFER_SYNTAXES = {"explicit": EXPLICIT_VR_LITTLE_ENDIAN, "jpeg-baseline": JPEG_BASELINE}
PHOTOMETRICS = ("MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR")
JPEG_QUALITY = 95
ACQUISITION_START_TIME = "120000"  # clock time of the first frame on the study date
IMPLEMENTATION_VERSION_NAME = "DCEUSR_010"
MANUFACTURER = "DCEUSResponse"
MODEL_NAME = "Synthetic CEUS writer"


def image_dataset(
    frames: np.ndarray,
    photometric: str,
    palette: np.ndarray | None,
    transfer_syntax: str,
    sop_class_uid: str,
) -> tuple[Any, bytes]:
    """Dataset with the Image Pixel / US Image attributes and the encoded pixel data value."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    if photometric not in PHOTOMETRICS:
        raise ValueError(f"photometric must be one of {PHOTOMETRICS}, not {photometric!r}")
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"transfer_syntax must be one of {tuple(TRANSFER_SYNTAXES)}")
    is_colour = frames.ndim == 4
    if is_colour and (frames.shape[3] != 3 or frames.dtype != np.uint8):
        raise ValueError("colour frames must be (N, rows, columns, 3) uint8 RGB")
    if frames.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"frames must be uint8 or uint16, not {frames.dtype}")
    if is_colour != (photometric in ("RGB", "YBR_FULL", "YBR_FULL_422")):
        raise ValueError(f"photometric {photometric!r} does not match frames of shape {frames.shape}")
    if photometric == "PALETTE COLOR":
        if frames.dtype != np.uint8 or palette is None:
            raise ValueError("PALETTE COLOR needs uint8 index frames and a (256, 3) uint8 palette")
        palette = np.asarray(palette)
        if palette.shape != (256, 3):
            raise ValueError("palette must be (256, 3)")
    bits = 8 * frames.dtype.itemsize
    is_jpeg = transfer_syntax == "jpeg-baseline"
    if is_jpeg and (bits != 8 or photometric == "PALETTE COLOR"):
        raise ValueError("JPEG Baseline stores 8-bit grey or colour frames only")

    ds = Dataset()
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "US"
    # ORIGINAL\PRIMARY, anatomic region (US defined term), then the US image-mode bit mask:
    # 0001 = 2D imaging (PS3.3 C.8.5.6.1.1).
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL", "0001"]
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    ds.SamplesPerPixel = 3 if is_colour else 1
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if is_colour:
        # The US Image module wants YBR_FULL colour-by-plane, everything else colour-by-pixel.
        ds.PlanarConfiguration = 1 if photometric == "YBR_FULL" and not is_jpeg else 0

    if is_jpeg:
        stored_photometric = "YBR_FULL_422" if is_colour else "MONOCHROME2"
        encoded = [jpeg_frame(frame) for frame in frames]
        from pydicom.encaps import encapsulate

        pixel_value = encapsulate(encoded, has_bot=True)
        raw_size = frames.size * frames.dtype.itemsize
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = ds_number(raw_size / sum(len(f) for f in encoded))
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    else:
        stored_photometric = photometric
        pixel_value = native_pixel_bytes(frames, photometric)
        ds.LossyImageCompression = "00"
    ds.PhotometricInterpretation = stored_photometric
    if photometric == "PALETTE COLOR":
        add_palette(ds, palette)
    if len(pixel_value) % 2:
        pixel_value += b"\x00"
    return ds, pixel_value


def native_pixel_bytes(frames: np.ndarray, photometric: str) -> bytes:
    """Uncompressed pixel data in the DICOM byte layout for ``photometric`` (little endian)."""
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        from pydicom.pixels import convert_color_space

        ybr = convert_color_space(frames, "RGB", "YBR_FULL")
        if photometric == "YBR_FULL":
            # colour-by-plane (Planar Configuration 1): per frame all Y, then all Cb, then all Cr
            return np.ascontiguousarray(ybr.transpose(0, 3, 1, 2)).tobytes()
        if frames.shape[2] % 2:
            raise ValueError("YBR_FULL_422 needs an even number of columns")
        # PS3.3 C.7.6.3.1.2 / PS3.5 8.2.1: each horizontal pixel pair is stored Y1 Y2 Cb Cr,
        # one chroma sample per pair; averaging the pair is the usual anti-aliased choice.
        pairs = ybr.reshape(ybr.shape[0], ybr.shape[1], ybr.shape[2] // 2, 2, 3).astype(np.uint16)
        packed = np.empty(pairs.shape[:3] + (4,), dtype=np.uint8)
        packed[..., 0] = pairs[..., 0, 0]
        packed[..., 1] = pairs[..., 1, 0]
        packed[..., 2] = (pairs[..., 0, 1] + pairs[..., 1, 1] + 1) // 2
        packed[..., 3] = (pairs[..., 0, 2] + pairs[..., 1, 2] + 1) // 2
        return packed.tobytes()
    return frames.astype(frames.dtype.newbyteorder("<"), copy=False).tobytes()


def jpeg_frame(frame: np.ndarray) -> bytes:
    """One frame as a JPEG Baseline codestream (colour: YCbCr 4:2:2, as ultrasound scanners do)."""
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(frame))
    options: dict[str, Any] = {"quality": JPEG_QUALITY}
    if frame.ndim == 3:
        options["subsampling"] = "4:2:2"
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def add_palette(ds: Any, palette: np.ndarray) -> None:
    """Palette Color Lookup Table module with 16-bit entries (PS3.3 C.7.6.3.1.5/6)."""
    from pydicom.uid import generate_uid

    # 8-bit colours scaled to the full 16-bit range (x * 257 maps 255 to 65535 exactly).
    lut16 = palette.astype(np.uint16) * np.uint16(257)
    descriptor = [256, 0, 16]
    ds.RedPaletteColorLookupTableDescriptor = descriptor
    ds.GreenPaletteColorLookupTableDescriptor = descriptor
    ds.BluePaletteColorLookupTableDescriptor = descriptor
    ds.PaletteColorLookupTableUID = generate_uid()
    ds.RedPaletteColorLookupTableData = lut16[:, 0].astype("<u2").tobytes()
    ds.GreenPaletteColorLookupTableData = lut16[:, 1].astype("<u2").tobytes()
    ds.BluePaletteColorLookupTableData = lut16[:, 2].astype("<u2").tobytes()


def add_identification(
    ds: Any,
    *,
    patient_id: str,
    patient_name: str,
    study_instance_uid: str | None,
    series_instance_uid: str | None,
    study_date: str,
    series_description: str,
    series_number: int,
    instance_number: int,
) -> None:
    """Patient, General Study, General Series, General Equipment and General Image attributes."""
    from pydicom.uid import generate_uid

    texts = (patient_id, patient_name, series_description)
    if not all(text.isascii() for text in texts):
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = study_instance_uid or generate_uid()
    ds.StudyDate = study_date
    ds.StudyTime = ACQUISITION_START_TIME
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.SeriesInstanceUID = series_instance_uid or generate_uid()
    ds.SeriesNumber = str(series_number)
    ds.SeriesDescription = series_description
    # An unpaired body part makes Laterality (Type 2C) not applicable, so it is left out.
    ds.BodyPartExamined = "ABDOMEN"
    ds.SeriesDate = study_date
    ds.SeriesTime = ACQUISITION_START_TIME
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = MODEL_NAME
    ds.InstanceNumber = str(instance_number)
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"


def add_contrast(ds: Any, contrast_agent: str | None) -> None:
    if contrast_agent is not None:
        ds.ContrastBolusAgent = contrast_agent


def add_regions(ds: Any, regions: Sequence[UltrasoundRegion]) -> None:
    """US Region Calibration module; spacings go to the file in cm as the standard requires."""
    if not regions:
        return
    from pydicom.dataset import Dataset

    items = []
    for region in regions:
        item = Dataset()
        item.RegionSpatialFormat = int(region.spatial_format)
        item.RegionDataType = int(region.data_type)
        item.RegionFlags = 0
        item.RegionLocationMinX0 = int(region.x0)
        item.RegionLocationMinY0 = int(region.y0)
        item.RegionLocationMaxX1 = int(region.x1)
        item.RegionLocationMaxY1 = int(region.y1)
        if region.spacing_mm is not None:
            row_mm, column_mm = region.spacing_mm
            item.PhysicalUnitsXDirection = 3  # cm
            item.PhysicalUnitsYDirection = 3
            item.PhysicalDeltaX = float(column_mm) / 10.0
            item.PhysicalDeltaY = float(row_mm) / 10.0
        else:
            item.PhysicalUnitsXDirection = 0  # none
            item.PhysicalUnitsYDirection = 0
            item.PhysicalDeltaX = 0.0
            item.PhysicalDeltaY = 0.0
        items.append(item)
    ds.SequenceOfUltrasoundRegions = items


def save(ds: Any, path: str | os.PathLike, transfer_syntax: str) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(TRANSFER_SYNTAXES[transfer_syntax])
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    if transfer_syntax == "jpeg-baseline":
        ds["PixelData"].VR = "OB"
    else:
        ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
    ds.save_as(path, enforce_file_format=True)


def format_dt(moment: _dt.datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S.%f")


def ds_number(value: float) -> str:
    """A Decimal String (at most 16 characters) for ``value``."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))
