"""The parameter catalogue: one :class:`ParameterInfo` per quantity the project reports.

Every name, description, unit, UCUM unit, DICOM code and preview colour map of a reported quantity
is defined here and nowhere else; tables, CSV headers, map files, scene nodes, response rules and
(next) DICOM outputs look them up. Modelled on the measurement information of Slicer's
SegmentStatistics plugins (``createMeasurementInfo``: name, title, description, units, quantity,
units and derivation codes per measurement).

A **family** is the analysis that reports a quantity, with the order it reports them in
(:data:`FAMILY_PARAMETERS`): the kinetic families ``bolus`` and ``replenishment`` (the fits of
:mod:`DCEUSResponseLib.kinetics`), and the fusion measures ``pet`` (SUV) and ``ct`` (HU). A name
may belong to several families when it means the same quantity in each (WiR, the largest slope of
the fitted curve, and QOF); its unit is then the same.

DICOM codes: quantity codes from DICOM PS3.16 (CID 4108 Perfusion Model Parameters, CID 4109
Model-Independent Dynamic Contrast Analysis Parameters, CID 7180 Abstract Multi-dimensional Image
Model Component Semantics), derivation codes as SegmentStatistics uses them (SCT Maximum, Mean; DCM
Peak Value Within ROI), units from CID 7181 (UCUM). Values and meanings are those of pydicom's code
dictionary (``pydicom.sr.codedict``; ``Testing/Python/test_catalogue.py`` checks them). A quantity
for which DICOM defines no code whose definition matches ours has ``quantity_code`` None (e.g. TI,
an intercept of a tangent, is one estimate of the bolus arrival time among several, and mTTl is
not the mean transit time); a later issue adds a documented private coding scheme for those.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from DCEUSResponseLib.errors import InputError


class Code(NamedTuple):
    """A coded concept: (code value, coding scheme designator, code meaning), as in DICOM."""

    value: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class ParameterInfo:
    """What a reported quantity is, independent of any one analysis.

    ``name``: machine name (a JSON key, a CSV column; never translated). ``description``: one line
    for tooltips and column descriptions. ``unit``: as shown to people ("a.u./s"; "" for none).
    ``ucum``: the same unit in UCUM (``[arb'U]/s``). ``quantity_code``: the DICOM concept of the
    quantity, None where DICOM has none that matches. ``derivation_code``: how it is derived from
    voxel values (max, mean, peak), for region statistics. ``colour_map``: matplotlib name of the
    preview colour map (``*_r`` reversed; None: not mapped). ``families``: the analyses that report it
    (filled from :data:`FAMILY_PARAMETERS`).
    """

    name: str
    description: str
    unit: str
    ucum: str
    quantity_code: Code | None = None
    derivation_code: Code | None = None
    colour_map: str | None = None
    families: tuple[str, ...] = ()


# Units, shown and in UCUM (CID 7181 spells arbitrary units [arb'U], percent %, seconds s).
_AU = ("a.u.", "[arb'U]")
_S = ("s", "s")
_AU_PER_S = ("a.u./s", "[arb'U]/s")
_AU_S = ("a.u.*s", "[arb'U].s")
_PERCENT = ("%", "%")
_SUV = ("g/ml", "g/ml{SUVbw}")
_HU = ("HU", "[hnsf'U]")
_RATIO = ("", "{ratio}")

_SUVBW = Code("126401", "DCM", "SUVbw")
_MAXIMUM = Code("56851009", "SCT", "Maximum")
_MEAN = Code("373098007", "SCT", "Mean")
_PEAK = Code("126031", "DCM", "Peak Value Within ROI")

# Colour maps of the previews: magma for amplitudes and areas (reversed for the negative wash-out
# rate, so that the steepest fall is the brightest), viridis for times, cividis for the fit quality.
_AMPLITUDE, _AMPLITUDE_NEGATIVE, _TIME, _QUALITY = "magma", "magma_r", "viridis", "cividis"


def _info(name, description, unit, code=None, colour_map=None, derivation=None) -> ParameterInfo:
    return ParameterInfo(name, description, unit[0], unit[1], code, derivation, colour_map)


_ENTRIES: tuple[ParameterInfo, ...] = (
    # -- bolus (quantification contract, "Parameters (bolus)") --------------------------------------
    _info("PE", "peak enhancement: max e(t)", _AU, Code("126376", "DCM", "Maximum Difference"), _AMPLITUDE),
    _info("TTP", "time of the peak of e(t) since the injection", _S, Code("113069", "DCM", "Time To Peak"), _TIME),
    _info("WiR", "wash-in rate: the largest slope of the fitted curve", _AU_PER_S,
          Code("126375", "DCM", "Maximum Slope"), _AMPLITUDE),
    _info("WoR", "wash-out rate: min de/dt (negative)", _AU_PER_S, None, _AMPLITUDE_NEGATIVE),
    _info("TI", "time where the tangent at the steepest rise crosses e = 0", _S, None, _TIME),
    _info("TO", "time where the tangent at the steepest fall crosses e = 0", _S, None, _TIME),
    _info("RT", "rise time: TTP - TI", _S, None, _TIME),
    _info("FT", "fall time: TO - TTP", _S, None, _TIME),
    _info("mTTl", "local mean transit time: first moment of e about the injection - TI", _S, None, _TIME),
    _info("WiAUC", "wash-in area: integral of e from TI to TTP", _AU_S, None, _AMPLITUDE),
    _info("WoAUC", "wash-out area: integral of e from TTP to TO", _AU_S, None, _AMPLITUDE),
    _info("WiWoAUC", "WiAUC + WoAUC", _AU_S, None, _AMPLITUDE),
    _info("WiPI", "wash-in perfusion index: WiAUC / RT", _AU, None, _AMPLITUDE),
    _info("AUC", "integral of e over all time", _AU_S, None, _AMPLITUDE),
    _info("QOF", "quality of fit: 100 (1 - SS_res / SS_tot) of the measured TIC against the fit", _PERCENT,
          Code("126220", "DCM", "R2-Coefficient"), _QUALITY),
    # -- destruction-replenishment ("Parameters (replenishment)") -----------------------------------
    _info("rBV", "relative blood volume: the replenished plateau A above the post-flash level", _AU,
          Code("126398", "DCM", "Relative Regional Blood Volume"), _AMPLITUDE),
    _info("mTT", "mean transit time: 1 / beta", _S, Code("113052", "DCM", "Mean Transit Time"), _TIME),
    _info("rBF", "relative blood flow: rBV / mTT", _AU_PER_S,
          Code("126397", "DCM", "Relative Regional Blood Flow"), _AMPLITUDE),
    _info("PI", "perfusion index: rBV / mTT", _AU_PER_S, None, _AMPLITUDE),
    # -- PET and CT measures on an ROI's footprint (fusion-and-follow-up contract) -------------------
    _info("SUVmax", "maximum SUVbw over the ROI's footprint", _SUV, _SUVBW, derivation=_MAXIMUM),
    _info("SUVmean", "mean SUVbw over the ROI's footprint", _SUV, _SUVBW, derivation=_MEAN),
    _info("SUVpeak", "highest mean SUVbw in a 1 cm3 sphere centred on a footprint voxel (PERCIST)", _SUV,
          _SUVBW, derivation=_PEAK),
    _info("TLR", "tumour-to-liver ratio: the ROI's SUVmax / the reference ROI's SUVmean", _RATIO),
    _info("HU_mean", "mean CT number over the ROI's footprint", _HU,
          Code("112031", "DCM", "Attenuation Coefficient"), derivation=_MEAN),
)

#: The quantities each family reports, in the order it reports them (the columns of its CSVs).
FAMILY_PARAMETERS: dict[str, tuple[str, ...]] = {
    "bolus": ("PE", "TTP", "WiR", "WoR", "TI", "TO", "RT", "FT", "mTTl",
              "WiAUC", "WoAUC", "WiWoAUC", "WiPI", "AUC", "QOF"),
    "replenishment": ("rBV", "mTT", "rBF", "PI", "WiR", "QOF"),
    "pet": ("SUVmax", "SUVmean", "SUVpeak", "TLR"),
    "ct": ("HU_mean",),
}

#: Every quantity by name.
CATALOGUE: dict[str, ParameterInfo] = {
    info.name: replace(info, families=tuple(family for family, names in FAMILY_PARAMETERS.items()
                                            if info.name in names))
    for info in _ENTRIES
}


def parameter_info(name: str) -> ParameterInfo:
    """The :class:`ParameterInfo` of ``name``; InputError naming the known quantities otherwise."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise InputError(f"unknown parameter {name!r}; known: {', '.join(CATALOGUE)}") from None


def parameter_names(*families: str) -> tuple[str, ...]:
    """The names the given families report, in their order (each name once, first family first)."""
    names: dict[str, None] = {}
    for family in families:
        if family not in FAMILY_PARAMETERS:
            raise InputError(f"unknown parameter family {family!r}; known: {', '.join(FAMILY_PARAMETERS)}")
        names.update(dict.fromkeys(FAMILY_PARAMETERS[family]))
    return tuple(names)


def unit(name: str) -> str:
    """The unit of ``name`` as shown ("" for a dimensionless quantity)."""
    return parameter_info(name).unit


def colour_map(name: str) -> str:
    """The preview colour map (matplotlib name) of a mapped quantity; InputError for an unmapped one."""
    info = parameter_info(name)
    if info.colour_map is None:
        raise InputError(f"{name} has no preview colour map (it is not a parametric map quantity)")
    return info.colour_map
