"""What the user chooses for one analysis: :class:`AnalysisOptions`, built the same way by the
command line (:meth:`AnalysisOptions.from_namespace`), the Slicer module and scripts.

Each option has one name from the user's side to the engine: the command line's ``--dynamic-range``
stores into ``dynamic_range_db``, the field of the same name here. Cheap to import (no scipy), so
the Slicer module can import it when Slicer starts.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

import numpy as np

from DCEUSResponseLib.ceus.linearize import DEFAULT_DYNAMIC_RANGE_DB


@dataclass
class AnalysisOptions:
    """What the user chooses; the defaults are the command line's defaults.

    ``exclude_frames`` and ``flash_frames`` are frame ranges as typed ("3-5,10"), checked against
    the clip once it is read. ``flash_frames`` None means: the flashes frame quality control finds.
    ``colour_table`` is a 256 x 3 display colour map (``--colormap``), None for tinted grey maps.
    ``dynamic_range_db`` None means the user gave none: the analysis assumes
    :data:`~DCEUSResponseLib.ceus.linearize.DEFAULT_DYNAMIC_RANGE_DB` and says so (a warning, and
    ``dynamic_range_source`` "default" in results.json), since every value depends on it.
    ``keep_identifiers`` writes the patient's identifiers (PatientID, PatientName, birth date, study
    date) into the outputs beside the linking UIDs (:func:`~DCEUSResponseLib.clip.shareable_uids`).
    """

    dynamic_range_db: float | None = None
    injection_time_s: float = 0.0
    reference_frame: int = 0
    model: str = "lognormal"
    reference: str | None = None
    colour_table: np.ndarray | None = None
    motion_compensation: bool = True
    frame_quality_control: bool = True
    exclude_frames: str = ""
    flash_frames: str | None = None
    maps: bool = False
    map_binning: int = 1
    map_region: str | None = None
    #: The contrast panel (x0, y0, x1, y1 inclusive pixels) when the regions do not tell (``--contrast-region``).
    contrast_region: tuple[int, int, int, int] | None = None
    keep_identifiers: bool = False

    @property
    def resolved_dynamic_range_db(self) -> float:
        """The dynamic range the analysis uses (dB): the given one, else the documented default."""
        return DEFAULT_DYNAMIC_RANGE_DB if self.dynamic_range_db is None else float(self.dynamic_range_db)

    @property
    def dynamic_range_source(self) -> str:
        """``"option"`` when the user (command line, Slicer module, manifest) gave it, else ``"default"``."""
        return "default" if self.dynamic_range_db is None else "option"

    @classmethod
    def from_namespace(cls, args: argparse.Namespace, **overrides) -> "AnalysisOptions":
        """The options of parsed command-line arguments whose ``dest`` are the field names; fields the
        namespace lacks keep their defaults, ``overrides`` (e.g. a colour table read from a file) win."""
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        return cls(**{**values, **overrides})
