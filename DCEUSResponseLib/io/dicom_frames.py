"""DICOM files of ultrasound clips and their pixels: reading a file (also without a preamble, and
refusing truncated ones), its SOP class, and decoding its frames (native or compressed, palette
colour) into display values. :mod:`DCEUSResponseLib.io.dicom_us` assembles a clip from them.

pydicom is imported inside the functions (package rule: only stdlib, numpy and scipy at module
top level).
"""
from __future__ import annotations

import warnings as _warnings
from typing import Any

import numpy as np

from DCEUSResponseLib.errors import InputError

US_MULTIFRAME_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image Storage",
    "1.2.840.10008.5.1.4.1.1.3": "Ultrasound Multi-frame Image Storage (Retired)",
}
US_SINGLE_FRAME_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image Storage",
    "1.2.840.10008.5.1.4.1.1.6": "Ultrasound Image Storage (Retired)",
}
ULTRASOUND_SOP_CLASSES = {**US_MULTIFRAME_SOP_CLASSES, **US_SINGLE_FRAME_SOP_CLASSES}
_PIXEL_DATA_TAG_LITTLE_ENDIAN = b"\xe0\x7f\x10\x00"  # (7FE0,0010) as stored in the file


def read_dataset(path: str, *, skip_non_dicom: bool = False) -> Any | None:
    """The dataset in ``path``; ``None`` for a non-DICOM file when ``skip_non_dicom``."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:
            ds = _read_without_preamble(path)
            if ds is None:
                if skip_non_dicom:
                    return None
                raise InputError("not a DICOM file", path) from None
        except PermissionError:
            raise InputError("cannot be opened (permission denied)", path) from None
        except IsADirectoryError:
            raise InputError("is a folder, expected a file", path) from None
        except Exception as error:  # pydicom raises many types on damaged files
            problem = f"is damaged or truncated; it cannot be read as DICOM ({one_line(error)})"
            raise InputError(problem, path) from None
    if any("End of file" in str(w.message) for w in caught):
        raise InputError("is truncated: the file ends inside the pixel data or another element", path)
    return ds


def _read_without_preamble(path: str) -> Any | None:
    """Old files may lack the 128-byte preamble; accept them only if they look like images."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
        if "SOPClassUID" not in ds or "Rows" not in ds:
            return None
    except Exception:
        return None
    if "TransferSyntaxUID" not in ds.file_meta:
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

        implicit = bool(getattr(ds, "original_encoding", (True, True))[0])
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return ds


def read_image_dataset(path: str) -> tuple[Any, list[str]]:
    """Dataset with pixel data from one file, plus warnings about its SOP class."""
    ds = read_dataset(path)
    if "PixelData" not in ds:
        raise_if_truncated(ds, path)
        raise InputError(
            f"contains no pixel data ({_sop_class_name(ds)}); expected an ultrasound cine clip", path
        )
    return ds, sop_class_warnings(ds)


def raise_if_truncated(ds: Any, path: str) -> None:
    """An image whose Pixel Data tag is in the file but was not read was cut short."""
    if "Rows" not in ds:
        return
    with open(path, "rb") as handle:
        if _PIXEL_DATA_TAG_LITTLE_ENDIAN in handle.read():
            raise InputError("is truncated: its pixel data cannot be read completely", path)


def _sop_class_name(ds: Any) -> str:
    from pydicom.uid import UID

    uid = str(ds.get("SOPClassUID", "") or "")
    if not uid:
        return "no SOP Class UID"
    name = UID(uid).name
    return name if name != uid else f"SOP class {uid}"


def sop_class_warnings(ds: Any) -> list[str]:
    uid = str(ds.get("SOPClassUID", "") or "")
    if uid in ULTRASOUND_SOP_CLASSES:
        return []
    return [f"{_sop_class_name(ds)} is not an ultrasound image storage class; read as an image anyway"]


def number_of_frames(ds: Any, path: str) -> int:
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        raise InputError(f"Number of Frames is not a number ({ds.get('NumberOfFrames')!r})", path) from None


def decode_pixels(ds: Any, path: str, n_frames: int) -> tuple[np.ndarray, str, np.ndarray | None]:
    """Decoded frames, the photometric interpretation of the returned array, and the palette."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "PhotometricInterpretation"):
        if keyword not in ds:
            raise InputError(f"image attribute {keyword} is missing", path)
    if int(ds.get("PixelRepresentation", 0) or 0) != 0:
        raise InputError("signed pixel data (Pixel Representation 1) is not an ultrasound image", path)
    transfer_syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2")))
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        raise InputError(f"transfer syntax {transfer_syntax.name} cannot be decoded", path) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise InputError(f"decoding {transfer_syntax.name} needs {missing}", path)
    if decoder.is_native:
        _check_native_length(ds, path, n_frames)
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")  # pydicom warns about oddities it then handles
            frames, meta = decoder.as_array(ds, as_rgb=True)
    except StopIteration:  # pydicom's frame generator ran out of encapsulated frames
        problem = f"pixel data is truncated: fewer frames than Number of Frames ({n_frames})"
        raise InputError(problem, path) from None
    except Exception as error:
        problem = f"pixel data cannot be decoded, truncated or corrupt? ({one_line(error)})"
        raise InputError(problem, path) from None

    # pydicom converts YBR_FULL / YBR_FULL_422 to RGB itself (native and JPEG alike) and says so
    # in the returned metadata; convert only if it did not, so no conversion happens twice.
    photometric = str(meta.get("photometric_interpretation", ds.PhotometricInterpretation)).strip()
    palette = None
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        from pydicom.pixels import convert_color_space

        frames = convert_color_space(frames, "YBR_FULL", "RGB")
        photometric = "RGB"
    elif photometric == "MONOCHROME1":
        # MONOCHROME1 shows low values bright; invert so that bright = high like MONOCHROME2.
        top = np.asarray((1 << int(ds.BitsStored)) - 1, dtype=frames.dtype)
        frames = top - np.minimum(frames, top)
        photometric = "MONOCHROME2"
    elif photometric == "PALETTE COLOR":
        palette = _palette_table(ds, path)
    elif photometric not in ("MONOCHROME2", "RGB"):
        raise InputError(f"photometric interpretation {photometric} is not supported", path)
    return frames, photometric, palette


def _check_native_length(ds: Any, path: str, n_frames: int) -> None:
    """Uncompressed pixel data must hold every frame (pydicom reads a cut file without error)."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits_allocated = int(ds.BitsAllocated)
    pixels = rows * columns * n_frames
    if str(ds.PhotometricInterpretation).strip() == "YBR_FULL_422":
        expected = pixels * 2 * (bits_allocated // 8)  # chroma halved horizontally: 2 values/pixel
    elif bits_allocated == 1:
        expected = (pixels * samples + 7) // 8
    else:
        expected = pixels * samples * ((bits_allocated + 7) // 8)
    found = len(ds.PixelData)
    if found < expected:
        raise InputError(
            f"pixel data is truncated: {found} bytes, {expected} expected for {n_frames} frame(s)", path
        )


def _palette_table(ds: Any, path: str) -> np.ndarray:
    """Display colour (0..255, float) of every stored value 0..2**BitsStored-1, shape (K, 3)."""
    from pydicom.pixels import apply_color_lut

    try:
        descriptor = [int(v) for v in ds.RedPaletteColorLookupTableDescriptor]
        n_entries = descriptor[0] or 65536
        first_mapped, entry_bits = descriptor[1], descriptor[2]
        # Table indexed directly by stored value, so callers can write palette[frames];
        # values below the first mapped one take entry 0, above the last take the last entry.
        n_values = max(1 << int(ds.BitsStored), first_mapped + n_entries)
        values = np.arange(n_values, dtype=np.int64)
        index_dtype = np.uint16 if n_values > 256 else np.uint8
        colours = apply_color_lut(values.astype(index_dtype), ds)[..., :3].astype(float)
    except Exception as error:
        problem = f"PALETTE COLOR lookup table is missing or invalid ({one_line(error)})"
        raise InputError(problem, path) from None
    if entry_bits not in (8, 16):
        raise InputError(f"palette entries of {entry_bits} bits are not supported (8 or 16)", path)
    return colours * (255.0 / ((1 << entry_bits) - 1))


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."
