"""Pixel data of a DICOM image: size checks from the header, then decoding into frames.

The header is checked before anything is allocated from it: a damaged or hostile Number of Frames,
Rows or Columns must not size an array of gigabytes (a 2 kB file claiming 2**31 frames), and a
Pixel Data element shorter or longer than the header says must not silently give fewer or more
frames than the timing describes. pydicom is imported inside the functions (package rule).
"""
from __future__ import annotations

import warnings as _warnings
from typing import Any

import numpy as np

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.files import MAX_DECODED_BYTES

#: Stored values above Bits Stored are refused for 8-bit data (the header is then wrong and every
#: value would be cut to its low bits); in 16-bit data they are masked with a warning, as the
#: standard says (old files kept overlays there).
_REFUSE_HIGH_BITS_UP_TO = 8
_ITEM_HEADER_BYTES = 8  # tag + length of each encapsulated fragment


def check_pixel_data(ds: Any, path: str, n_frames: int) -> None:
    """Refuse an image whose header cannot describe its Pixel Data, before any decoding.

    Checks: the image attributes exist and are sane, the decoded clip fits
    :data:`~DCEUSResponseLib.io.files.MAX_DECODED_BYTES`,
    uncompressed Pixel Data holds exactly ``n_frames`` frames (not fewer: truncated; not one or
    more frames more: Number of Frames is wrong), encapsulated Pixel Data has a fragment per frame.
    """
    rows, columns, samples, bits_allocated, _ = _image_attributes(ds, path)
    check_decoded_size(n_frames, rows, columns, samples, bits_allocated, path)
    if _is_encapsulated(ds):
        fragments = _count_fragments(ds, path)
        if fragments < n_frames:
            raise InputError(f"pixel data is truncated: fewer frames ({fragments} encapsulated fragment(s)) than "
                             f"Number of Frames ({n_frames})", path)
        return
    frame_bytes = _native_frame_bytes(ds, rows, columns, samples, bits_allocated)
    found = len(ds.PixelData)
    if found < n_frames * frame_bytes:
        raise InputError(f"pixel data is truncated: {found} bytes, {n_frames * frame_bytes} expected for "
                         f"{n_frames} frame(s) (Number of Frames {n_frames})", path)
    if found >= (n_frames + 1) * frame_bytes:
        raise InputError(f"pixel data holds {found // frame_bytes} frames but Number of Frames is {n_frames}; "
                         "the header is wrong", path)


def check_decoded_size(n_frames: int, rows: int, columns: int, samples: int, bits_allocated: int,
                       path: str) -> None:
    """Refuse a clip whose decoded frames would exceed :data:`MAX_DECODED_BYTES`."""
    decoded = n_frames * rows * columns * (3 if samples == 3 else 1) * max(1, (bits_allocated + 7) // 8)
    if decoded > MAX_DECODED_BYTES:
        raise InputError(f"{n_frames} frame(s) of {rows} x {columns} pixels would decode to {decoded / 2**30:.3g} GiB, "
                         f"more than the {MAX_DECODED_BYTES / 2**30:g} GiB accepted (Number of Frames, Rows or "
                         "Columns damaged?)", path)


def decode_frames(ds: Any, path: str, n_frames: int) -> tuple[np.ndarray, str, np.ndarray | None, list[str]]:
    """Decoded frames, the photometric interpretation of the returned array, the palette, warnings.

    Call :func:`check_pixel_data` first. pydicom's own warnings become the returned warnings.
    """
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGBaseline8Bit, JPEGExtended12Bit

    if int(ds.get("PixelRepresentation", 0) or 0) != 0:
        raise InputError("signed pixel data (Pixel Representation 1) is not an ultrasound image", path)
    transfer_syntax = transfer_syntax_uid(ds)
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        raise InputError(f"transfer syntax {transfer_syntax.name} cannot be decoded", path) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise InputError(f"decoding {transfer_syntax.name} needs {missing}", path)
    if not decoder.is_native:
        _check_stream_signature(ds, transfer_syntax, path)
    notes = _high_bit_notes(ds, path, n_frames) if decoder.is_native else []
    # YBR is decoded as stored and converted here, keeping each pixel's luma (see rgb_from_ybr_full).
    # A JPEG stream labelled RGB is YCbCr inside (its JFIF marker says so), and decoded as stored
    # pydicom relabels it YBR_FULL_422: it takes the same conversion.
    stored_ybr = (str(ds.PhotometricInterpretation).strip() in ("YBR_FULL", "YBR_FULL_422")
                  or transfer_syntax in (JPEGBaseline8Bit, JPEGExtended12Bit))  # YCbCr streams (PS3.5 8.2.1)
    try:
        with _warnings.catch_warnings(record=True) as caught:
            _warnings.simplefilter("always")
            frames, meta = decoder.as_array(ds, as_rgb=not stored_ybr, view_only=_can_view(ds, decoder))
    except StopIteration:  # pydicom's frame generator ran out of encapsulated frames
        problem = f"pixel data is truncated: fewer frames than Number of Frames ({n_frames})"
        raise InputError(problem, path) from None
    except Exception as error:
        problem = f"pixel data cannot be decoded, truncated or corrupt? ({one_line(error)})"
        raise InputError(problem, path) from None
    notes += library_warnings(caught)
    if frames.shape[0] != n_frames and n_frames > 1:
        raise InputError(f"pixel data decodes to {frames.shape[0]} frames, Number of Frames is {n_frames}", path)

    # pydicom reports in the returned metadata whether it converted the colour space itself; convert
    # only if it did not, so no conversion happens twice.
    photometric = str(meta.get("photometric_interpretation", ds.PhotometricInterpretation)).strip()
    palette = None
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        if frames.dtype != np.uint8:  # as pydicom's own conversion refuses
            raise InputError(f"{photometric} pixel data of {int(ds.BitsAllocated)} bits cannot be converted "
                             "to RGB (8 bits only)", path)
        frames = rgb_from_ybr_full(frames, in_place=True)  # the decoder's own copy
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
    return frames, photometric, palette, notes


_LUMA = np.asarray((0.299, 0.587, 0.114))  # BT.601, the Y of YBR_FULL
# YBR_FULL -> RGB (PS3.3 C.7.6.3.1.2) on (Y, Cb - 128, Cr - 128) row vectors, as pydicom converts.
_YBR_TO_RGB = np.asarray([[1.0, 1.0, 1.0], [0.0, -0.114 * 1.772 / 0.587, 1.772], [1.402, -0.299 * 1.402 / 0.587, 0.0]])


def rgb_from_ybr_full(ybr: np.ndarray, in_place: bool = False, pixels_per_step: int = 1 << 18) -> np.ndarray:
    """8-bit RGB of 8-bit YBR_FULL pixels (..., 3), each pixel's BT.601 luma kept equal to its Y.

    The standard conversion (DICOM PS3.3 C.7.6.3.1.2; pydicom's ``convert_color_space``, whose matrix
    and rounding this uses) clips channels to 0..255. With subsampled chroma (JPEG 4:2:2 / 4:2:0) a
    saturated colour's pixels take their neighbours' chroma and leave the gamut, so clipping lowers their
    luma, which is what their gray level is read from: the bright third of a "hot" map, where one luma
    level is nine gray levels, read 7 levels low (PE -20 %). The luma a pixel clipped by more than a
    level lost (or gained) is given to the channels that can still take it; every other pixel is
    exactly the standard conversion's.

    With ``in_place`` a writeable C-contiguous ``ybr`` is overwritten and returned, so a decoded clip
    is never held twice; the float64 temporaries cover ``pixels_per_step`` pixels at a time (about
    6 MiB each by default) whatever the clip's size.
    """
    can_overwrite = in_place and ybr.flags.writeable and ybr.flags.c_contiguous
    rgb = ybr if can_overwrite else np.array(ybr, dtype=np.uint8, order="C")
    pixels = rgb.reshape(-1, 3)
    for start in range(0, pixels.shape[0], pixels_per_step):
        chunk = pixels[start:start + pixels_per_step]
        luma = chunk[:, 0].astype(np.float64)
        exact = _exact_rgb(luma, chunk)
        # Beyond the 0.9 levels by which rounding Cb and Cr alone can push an in-gamut colour out
        clipped = np.any((exact < -1.0) | (exact > 256.0), axis=-1)
        chunk[...] = np.clip(np.floor(exact + 0.5), 0.0, 255.0)
        if np.any(clipped):
            chunk[clipped] = _restore_luma(np.clip(exact[clipped], 0.0, 255.0), luma[clipped])
    return rgb


def _exact_rgb(y: np.ndarray, ybr: np.ndarray) -> np.ndarray:
    """Unrounded, unclipped RGB (M, 3) float64 of 8-bit YBR_FULL pixels (M, 3) whose Y is ``y`` (float64).

    Channel by channel, not as a matrix product: BLAS rounds a product differently with the number of
    rows, and a pixel must convert the same in any chunk."""
    blue, red = ybr[:, 1] - 128.0, ybr[:, 2] - 128.0
    exact = np.empty(ybr.shape, dtype=np.float64)
    for k in range(3):
        exact[:, k] = y + _YBR_TO_RGB[1, k] * blue + _YBR_TO_RGB[2, k] * red
    return exact


def _restore_luma(rgb: np.ndarray, luma: np.ndarray) -> np.ndarray:
    """Colours (M, 3) moved to ``luma`` (M,) within 0..255 through the channels not at their limit."""
    for _ in range(3):  # a channel reaching its limit passes the rest on to the others
        missing = luma - _luma_of(rgb)
        free = np.where(missing[:, None] > 0, rgb < 255.0, rgb > 0.0)
        weight = _luma_of(free)
        step = np.divide(missing, weight, out=np.zeros_like(missing), where=weight > 1e-6)
        rgb += free * step[:, None]
        np.clip(rgb, 0.0, 255.0, out=rgb)
    return np.floor(rgb + 0.5).astype(np.uint8)


def _luma_of(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma (M,) float64 of (M, 3) values, channel by channel (the same in any chunk)."""
    return _LUMA[0] * rgb[:, 0] + _LUMA[1] * rgb[:, 1] + _LUMA[2] * rgb[:, 2]


def _can_view(ds: Any, decoder: Any) -> bool:
    """Whether the frames can be a read-only view of the Pixel Data bytes instead of a copy of them.

    A copy would hold the clip twice while the dataset lives. pydicom views native 8/16-bit data
    as stored; it must copy (and says so in its log) for bit-packed, YBR_FULL_422 and big endian
    8-bit data, so those are decoded as before.
    """
    from pydicom.uid import ExplicitVRBigEndian

    photometric = str(ds.PhotometricInterpretation).strip()
    transfer_syntax = str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))
    return (decoder.is_native and int(ds.BitsAllocated) in (8, 16) and transfer_syntax != ExplicitVRBigEndian
            and photometric in ("MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR"))


def library_warnings(caught: list, limit: int = 5) -> list[str]:
    """Distinct messages of warnings a library raised while reading, as clip warnings (at most ``limit``)."""
    messages: list[str] = []
    for record in caught:
        text = one_line(record.message if isinstance(record.message, BaseException) else Exception(record.message))
        text = text.split(" Please see <", 1)[0]  # pydicom appends a link to the standard
        if text not in messages:
            messages.append(text)
    shown = [f"DICOM reader: {text}" for text in messages[:limit]]
    if len(messages) > limit:
        shown.append(f"DICOM reader: {len(messages) - limit} more warning(s) not shown")
    return shown


_ITEM_TAG = b"\xfe\xff\x00\xe0"  # (FFFE,E000) little endian
_JPEG_START = b"\xff\xd8"  # SOI: JPEG and JPEG-LS streams
_JPEG_2000_STARTS = (b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  ")  # SOC + SIZ codestream; JP2 box


def _check_stream_signature(ds: Any, transfer_syntax: Any, path: str) -> None:
    """Refuse a JPEG stream labelled JPEG 2000 and the reverse: the decoders recognise the stream and
    decode it anyway, but the colour handling follows the label (a JPEG labelled JPEG 2000 came out
    with its colours converted twice, up to 135 gray levels off)."""
    from pydicom.uid import JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes

    if transfer_syntax in (*JPEGTransferSyntaxes, *JPEGLSTransferSyntaxes):
        expected, starts = "JPEG", (_JPEG_START,)
    elif transfer_syntax in JPEG2000TransferSyntaxes:
        expected, starts = "JPEG 2000", _JPEG_2000_STARTS
    else:
        return
    data = bytes(ds.PixelData[:65536])
    if data[:4] != _ITEM_TAG or len(data) < 8:
        return  # not encapsulated as it should be: the decoder says so
    first = 8 + int.from_bytes(data[4:8], "little")  # after the Basic Offset Table item
    if data[first:first + 4] != _ITEM_TAG:
        return
    fragment = data[first + 8:first + 20]
    if not fragment.startswith(starts):
        found = ("a JPEG stream" if fragment.startswith(_JPEG_START) else
                 "a JPEG 2000 stream" if fragment.startswith(_JPEG_2000_STARTS) else "no recognisable stream")
        raise InputError(f"the transfer syntax says {transfer_syntax.name} but the pixel data holds {found} "
                         f"(expected {expected}): the file is mislabelled", path)


def quiet_uid(value: Any):
    """``value`` as a pydicom UID, without pydicom's warning on stderr when it is malformed (a damaged
    header): the callers name such a UID themselves (``is_valid``, or no decoder matching it)."""
    from pydicom import config
    from pydicom.uid import UID

    return UID(str(value), validation_mode=config.IGNORE)


def transfer_syntax_uid(ds: Any):
    """The dataset's Transfer Syntax UID (Implicit VR Little Endian when absent), as :func:`quiet_uid`."""
    return quiet_uid(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))


def one_line(error: BaseException) -> str:
    """The error's message on one line, at most 200 characters; pydicom's message about a damaged
    element embeds the traceback of its own cause, which is cut off."""
    text = str(error).split("Traceback (most recent call last)")[0]
    text = " ".join(text.split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# --------------------------------------------------------------------------------------------


def _image_attributes(ds: Any, path: str) -> tuple[int, int, int, int, int]:
    values = []
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored"):
        if keyword not in ds and keyword != "SamplesPerPixel":
            raise InputError(f"image attribute {keyword} is missing", path)
        raw = ds.get(keyword, 1)
        try:
            values.append(int(raw if raw not in (None, "") else 1))
        except (TypeError, ValueError):
            raise InputError(f"image attribute {keyword} is not a number ({str(raw)[:40]!r})", path) from None
    if "PhotometricInterpretation" not in ds:
        raise InputError("image attribute PhotometricInterpretation is missing", path)
    rows, columns, samples, bits_allocated, bits_stored = values
    if rows < 1 or columns < 1:
        raise InputError(f"the image is {rows} x {columns} pixels (Rows x Columns)", path)
    if samples not in (1, 3):
        raise InputError(f"Samples per Pixel is {samples}; 1 (grey or palette) or 3 (colour) expected", path)
    if bits_allocated not in (1, 8, 16, 32):
        raise InputError(f"Bits Allocated is {bits_allocated}; 8 or 16 expected", path)
    if not 1 <= bits_stored <= bits_allocated:
        raise InputError(f"Bits Stored is {bits_stored} with Bits Allocated {bits_allocated}", path)
    return rows, columns, samples, bits_allocated, bits_stored


def _is_encapsulated(ds: Any) -> bool:
    return transfer_syntax_uid(ds).is_encapsulated


def _count_fragments(ds: Any, path: str) -> int:
    from io import BytesIO

    from pydicom.encaps import parse_basic_offsets, parse_fragments

    buffer = BytesIO(ds.PixelData)
    try:
        parse_basic_offsets(buffer)
        fragments, _ = parse_fragments(buffer)
    except Exception as error:  # pydicom raises ValueError, struct.error... on a damaged item
        raise InputError(f"encapsulated pixel data is damaged ({one_line(error)})", path) from None
    return int(fragments)


def _native_frame_bytes(ds: Any, rows: int, columns: int, samples: int, bits_allocated: int) -> int:
    pixels = rows * columns
    if str(ds.PhotometricInterpretation).strip() == "YBR_FULL_422":
        return pixels * 2 * (bits_allocated // 8)  # chroma halved horizontally: 2 values/pixel
    if bits_allocated == 1:
        return (pixels * samples + 7) // 8
    return pixels * samples * (bits_allocated // 8)


def _high_bit_notes(ds: Any, path: str, n_frames: int) -> list[str]:
    """Stored values must fit Bits Stored: refuse (8-bit) or warn (16-bit) before pydicom masks them."""
    bits_allocated, bits_stored = int(ds.BitsAllocated), int(ds.BitsStored)
    if bits_allocated not in (8, 16) or bits_stored >= bits_allocated:
        return []
    big_endian = transfer_syntax_uid(ds) == "1.2.840.10008.1.2.2"
    dtype = np.dtype(np.uint8) if bits_allocated == 8 else np.dtype(">u2" if big_endian else "<u2")
    values = np.frombuffer(ds.PixelData, dtype=dtype, count=len(ds.PixelData) // dtype.itemsize)
    top = int(values.max(initial=0))
    if top >> bits_stored == 0:
        return []
    if bits_allocated <= _REFUSE_HIGH_BITS_UP_TO:
        raise InputError(f"stored values reach {top} but Bits Stored is {bits_stored} (values 0..{(1 << bits_stored) - 1}): "
                         "the header is wrong and the pixels would be cut to their low bits", path)
    count = int(np.count_nonzero(values >> bits_stored))
    return [f"{count} pixel values use bits above Bits Stored ({bits_stored}); they are masked off as the "
            "DICOM standard requires (overlay bits of an old file?)"]


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
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")  # the table is checked below, pydicom's notes add nothing
            colours = apply_color_lut(values.astype(index_dtype), ds)[..., :3].astype(float)
    except Exception as error:
        problem = f"PALETTE COLOR lookup table is missing or invalid ({one_line(error)})"
        raise InputError(problem, path) from None
    if entry_bits not in (8, 16):
        raise InputError(f"palette entries of {entry_bits} bits are not supported (8 or 16)", path)
    return colours * (255.0 / ((1 << entry_bits) - 1))
