"""The registry of kinetic families, keyed by model name (like SegmentStatistics' ``registerPlugin``
and pydicom's ``get_decoder``): ``--model NAME`` chooses a family through :func:`get_family`.

The registry lives beside :mod:`~DCEUSResponseLib.kinetics.base` rather than in it because it must
import the families' fits, which import ``base``. A new family registers here (see the module
docstring of :mod:`~DCEUSResponseLib.kinetics.base`).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from DCEUSResponseLib.catalogue import parameter_names
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.kinetics.base import ClipFrames, Fit, KineticFamily
from DCEUSResponseLib.kinetics.bolus import fit_bolus
from DCEUSResponseLib.kinetics.models import BOLUS_MODELS
from DCEUSResponseLib.kinetics.parameters import bolus_extrapolated, bolus_parameters
from DCEUSResponseLib.kinetics.replenishment import (
    Segment,
    SegmentedFit,
    fit_segmented,
    segmented_parameters,
    segments_after_flashes,
)


class BolusFamily(KineticFamily):
    """One bolus model fitted to the frames before the first flash (``bolus.fit_bolus``), the
    contract's bolus parameters, parametric maps."""

    name = "bolus"
    models = tuple(sorted(BOLUS_MODELS))
    parameter_names = parameter_names("bolus")
    supports_maps = True
    flash_ends_curve = True
    summary = (("PE", ".3g"), ("TTP", ".1f"), ("mTTl", ".1f"), ("WiWoAUC", ".3g"))

    def fit(self, model: str, prepared: ClipFrames, tic: np.ndarray) -> Fit:
        return fit_bolus(prepared.times_s, tic, model, use=prepared.use)

    def parameters(self, model: str, fit: Fit) -> dict[str, float | None]:
        if not fit.ok:
            return {name: None for name in self.parameter_names}
        return bolus_parameters(model, fit.params, fit.qof)

    def extrapolated(self, model: str, fit: Fit) -> tuple[str, ...]:
        """See :func:`~DCEUSResponseLib.kinetics.parameters.bolus_extrapolated`."""
        if not fit.ok:
            return ()
        return bolus_extrapolated(model, fit.params, getattr(fit, "fitted_span_s", None),
                                  getattr(fit, "fitted_gaps_s", ()))


class _Segments(NamedTuple):
    times_s: np.ndarray
    segments: list[Segment]


class ReplenishmentFamily(KineticFamily):
    """Destruction-replenishment: a mono-exponential refill fitted after each flash
    (:mod:`~DCEUSResponseLib.kinetics.replenishment`), parameters averaged over the segments."""

    name = "replenishment"
    models = ("replenishment",)
    parameter_names = parameter_names("replenishment")
    summary = (("rBV", ".3g"), ("mTT", ".2f"), ("rBF", ".3g"))

    def prepare(self, frames: ClipFrames, source: str | None = None) -> _Segments:
        """The post-flash segments (InputError when the clip has no flash)."""
        if not frames.flash_frames:
            raise InputError("no flash found for --model replenishment; give the flash frames with --flash-frames",
                             source)
        return _Segments(frames.times_s, segments_after_flashes(frames.times_s, frames.flash_frames, frames.use))

    def fit(self, model: str, prepared: _Segments, tic: np.ndarray) -> SegmentedFit:
        return fit_segmented(prepared.times_s, tic, prepared.segments, self.name)

    def parameters(self, model: str, fit: Fit) -> dict[str, float | None]:
        return segmented_parameters(fit)


_FAMILIES: list[KineticFamily] = []
_BY_MODEL: dict[str, KineticFamily] = {}


def register_family(family: KineticFamily) -> None:
    """Make ``family`` answer to its model names; a name another family already has is an error."""
    taken = [model for model in family.models if model in _BY_MODEL]
    if taken:
        raise ValueError(f"models {taken} of family {family.name!r} are already registered")
    unknown = [name for name in family.parameter_names if name not in parameter_names(family.name)]
    if unknown:
        raise ValueError(f"family {family.name!r} reports parameters the catalogue does not list: {unknown}")
    _FAMILIES.append(family)
    _BY_MODEL.update(dict.fromkeys(family.models, family))


def get_family(model: str) -> KineticFamily:
    """The family fitting ``model`` (case-insensitive); InputError naming the choices otherwise."""
    family = _BY_MODEL.get(str(model).strip().lower())
    if family is None:
        raise InputError(f"unknown model {model!r}; choices: {', '.join(model_choices())}")
    return family


def families() -> tuple[KineticFamily, ...]:
    """Every registered family, in registration order."""
    return tuple(_FAMILIES)


def model_choices(*, maps: bool = False) -> tuple[str, ...]:
    """Every model name, family by family (only those of families with maps when ``maps``)."""
    return tuple(model for family in _FAMILIES if family.supports_maps or not maps for model in family.models)


register_family(BolusFamily())
register_family(ReplenishmentFamily())

#: The ``--model`` choices: the bolus models (sorted), then replenishment.
MODEL_CHOICES: tuple[str, ...] = model_choices()
