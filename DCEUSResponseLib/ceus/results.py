"""The typed result of analysing one clip: :class:`Analysis` and its per-ROI :class:`RoiResult`.

This is the one result object: ``results.json``, the CSVs (:mod:`DCEUSResponseLib.export.contract`),
the Slicer tables (:mod:`DCEUSResponseLib.scene.tables`), the scene bundle and the response of a
follow-up are all views of it, computed from it where they are written.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from DCEUSResponseLib.ceus.layout import DisplayLayout
from DCEUSResponseLib.ceus.linearize import ClippingCount, ColourMapping
from DCEUSResponseLib.ceus.maps import ParametricMaps
from DCEUSResponseLib.ceus.motion import MotionEstimate
from DCEUSResponseLib.ceus.options import AnalysisOptions
from DCEUSResponseLib.ceus.quality import ExcludedFrame
from DCEUSResponseLib.clip import Clip, RoiMask
from DCEUSResponseLib.kinetics.base import Fit
from DCEUSResponseLib.kinetics.parameters import PARAMETER_NAMES


@dataclass
class RoiResult:
    """One ROI's curve (mean linear intensity per frame, a.u.), fit and parameters (contract units);
    ``pixels`` is None for a curve given as a table (``fit-tic``)."""

    name: str
    pixels: int | None
    tic: np.ndarray
    fit: Fit  # BolusFit or SegmentedFit
    parameters: dict[str, float | None]
    relative: dict[str, float | None] = field(default_factory=dict)
    clipping: ClippingCount | None = None
    #: Parameters that depend on the fitted curve outside the fitted frames (``kinetics.parameters``
    #: defines when), in reporting order; their values are kept but are not measurements.
    extrapolated: tuple[str, ...] = ()
    #: Parameters whose relative value rests on an extrapolated value: the ROI's own or the
    #: reference ROI's (a relative value is only as measured as both its parts).
    relative_extrapolated: tuple[str, ...] = ()


@dataclass
class Analysis:
    """Everything one analysis found, as computed (nothing rounded or formatted)."""

    clip: Clip
    layout: DisplayLayout
    options: AnalysisOptions
    colour_mapping: ColourMapping
    times_s: np.ndarray  # seconds since injection, per frame
    frame_use: np.ndarray  # frames used for fitting
    rois: dict[str, RoiResult]
    warnings: list[str]
    motion: MotionEstimate | None = None
    excluded: list[ExcludedFrame] = field(default_factory=list)  # one per excluded frame, in frame order
    maps: ParametricMaps | None = None
    parameter_names: tuple[str, ...] = PARAMETER_NAMES
    roi_masks: list[RoiMask] = field(default_factory=list)  # the full-frame masks given

    @property
    def excluded_frames(self) -> list[int]:
        return [int(k) for k in np.flatnonzero(~self.frame_use)]

    def exclusion_reasons(self) -> dict[int, str]:
        """Frame index to the reason it was kept out of the fits."""
        return {int(e.frame): e.reason for e in self.excluded}
