"""What kind of ultrasound cine a DICOM header describes, before any pixel is decoded.

The DICOM plugin of the Slicer module uses this to decide how strongly to claim a series: a CEUS
clip this engine can decode is claimed above Slicer's generic image-sequence plugin; any other
ultrasound cine (cardiac, B-mode) is offered below it, not selected; a transfer syntax the installed
decoders cannot read is not claimed at all (a default Load would otherwise load nothing).

Evidence of contrast (any one suffices): a Contrast/Bolus Agent in the header (the Contrast/Bolus
module, required by the US IODs when contrast was used); two side-by-side tissue regions of one size
(the dual contrast | B-mode display of CEUS modes); or a contrast mode named in the series or
protocol description or the image comments (CEUS, contrast, CPS, CnTI, CHI, an agent's name).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from DCEUSResponseLib.io.dicom_dataset import ultrasound_regions
from DCEUSResponseLib.io.dicom_frames import quiet_uid

# Names of contrast modes and agents that scanners and sonographers write into descriptions.
CONTRAST_WORDS = re.compile(
    r"(?<![a-z])(ceus|ce-us|contrast|cps|cnti|chi|cpi|pulse inversion|microbubbles?|sonovue|lumason|definity|"
    r"luminity|optison|sonazoid)(?![a-z])", re.IGNORECASE)
DESCRIPTION_KEYWORDS = ("SeriesDescription", "ProtocolName", "ImageComments", "StudyDescription")


@dataclass(frozen=True)
class UltrasoundClipKind:
    """How a header describes the clip: ``contrast_evidence`` (None when there is none) and
    ``decoding_problem`` (None when the installed decoders read its transfer syntax)."""

    frames: int
    contrast_evidence: str | None
    decoding_problem: str | None

    @property
    def is_contrast(self) -> bool:
        return self.contrast_evidence is not None

    @property
    def decodable(self) -> bool:
        return self.decoding_problem is None


def decoding_problem(transfer_syntax_uid: str) -> str | None:
    """Why pixel data of this transfer syntax cannot be decoded here (None when it can).

    Asks pydicom's decoder registry, which the clip reader uses too, so the answer depends on the
    installed plugins (Slicer 5.12 bundles pillow and pyjpegls: JPEG Baseline, JPEG 2000, RLE and
    JPEG-LS decode; JPEG Lossless needs pylibjpeg or gdcm).
    """
    from pydicom.pixels import get_decoder

    uid = quiet_uid(transfer_syntax_uid or "1.2.840.10008.1.2")
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"no decoder exists for {uid.name}"
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        return f"decoding {uid.name} needs {missing}"
    return None


def assess_ultrasound_header(ds: Any) -> UltrasoundClipKind:
    """Assess a pydicom dataset (header only is enough: read with ``stop_before_pixels=True``)."""
    frames = _int(ds.get("NumberOfFrames", 1)) or 1
    transfer_syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    return UltrasoundClipKind(frames, _contrast_evidence(ds), decoding_problem(transfer_syntax))


def _contrast_evidence(ds: Any) -> str | None:
    agent = str(ds.get("ContrastBolusAgent", "") or "").strip()
    if agent:
        return f"Contrast/Bolus Agent {agent!r}"
    if ds.get("ContrastBolusAgentSequence"):
        return "Contrast/Bolus Agent Sequence"
    rows, columns = _int(ds.get("Rows", 0)), _int(ds.get("Columns", 0))
    regions, _notes = ultrasound_regions(ds, rows, columns)
    if any(a.is_beside(b) for index, a in enumerate(regions) for b in regions[index + 1:]):
        return "dual display (two side-by-side tissue regions of one size)"
    for keyword in DESCRIPTION_KEYWORDS:
        text = str(ds.get(keyword, "") or "")
        match = CONTRAST_WORDS.search(text)
        if match:
            return f"{keyword} names a contrast mode ({match.group(0)!r})"
    return None


def _int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0
