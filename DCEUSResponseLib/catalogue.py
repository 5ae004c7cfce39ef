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

DICOM codes: quantity codes from DICOM PS3.16 (CID 4109 Model-Independent Dynamic Contrast Analysis
Parameters where its concept is ours, else CID 4108 Perfusion Model Parameters, CID 7180 Abstract
Multi-dimensional Image Model Component Semantics, other DCM / SCT concepts for the PET / CT
measures), derivation codes as SegmentStatistics uses them (SCT Maximum, Mean; DCM Peak Value Within
ROI), units from CID 7181 (UCUM). Values and meanings are those of pydicom's code dictionary
(``pydicom.sr.codedict``; ``Testing/Python/test_catalogue.py`` checks them). A quantity for which
DICOM defines no code whose definition matches ours (e.g. TI, an intercept of a tangent, is one
estimate of the bolus arrival time among several; mTTl is not the mean transit time) has a code of
the project's private coding scheme :data:`PRIVATE_SCHEME` (``99DCEUS``, documented in
``docs/quantification-contract.md``, "DICOM outputs"; codes are never reused for another meaning).
The other concepts the DICOM outputs use (measurement methods, fit status, segment roles, the
procedure) are defined at the end of this module, so that the catalogue is the one table of codes.
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
    quantity (a private ``99DCEUS`` code where DICOM has none that matches). ``derivation_code``: how it is derived from
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
ARBITRARY_UNIT = "[arb'U]"
_AU = ("a.u.", ARBITRARY_UNIT)
_S = ("s", "s")
_AU_PER_S = ("a.u./s", f"{ARBITRARY_UNIT}/s")
_AU_S = ("a.u.*s", f"{ARBITRARY_UNIT}.s")
_PERCENT = ("%", "%")
_SUV = ("g/ml", "g/ml{SUVbw}")
_HU = ("HU", "[hnsf'U]")
_RATIO = ("", "{ratio}")
_VOXELS = ("voxels", "{voxels}")
_ML = ("ml", "ml")
_SUV_ML = ("g", "g{SUVbw}")  # SUVbw (g/ml) x ml
_MM = ("mm", "mm")

#: The project's private coding scheme (declared in every DICOM object's Coding Scheme Identification).
PRIVATE_SCHEME = "99DCEUS"
PRIVATE_SCHEME_NAME = "DCEUSResponse private concepts"
PRIVATE_SCHEME_VERSION = "1.0"
PRIVATE_SCHEME_RESPONSIBLE = "DCEUSResponse project"


def _private(number: int, meaning: str) -> Code:
    """Code DCEUS<number> of the private scheme (numbers are never reused for another meaning)."""
    return Code(f"DCEUS{number:04d}", PRIVATE_SCHEME, meaning)


_SUVBW = Code("126401", "DCM", "SUVbw")
_MAXIMUM = Code("56851009", "SCT", "Maximum")
_MEAN = Code("373098007", "SCT", "Mean")
_PEAK = Code("126031", "DCM", "Peak Value Within ROI")

# Colour maps of the previews: magma for amplitudes and areas (reversed for the negative wash-out
# rate, so that the steepest fall is the brightest), viridis for times, cividis for the fit quality.
_AMPLITUDE, _AMPLITUDE_NEGATIVE, _TIME, _QUALITY = "magma", "magma_r", "viridis", "cividis"


def _info(name, description, unit, code, colour_map=None, derivation=None) -> ParameterInfo:
    return ParameterInfo(name, description, unit[0], unit[1], code, derivation, colour_map)


_ENTRIES: tuple[ParameterInfo, ...] = (
    # -- bolus (quantification contract, "Parameters (bolus)") --------------------------------------
    # CID 4109 "Maximum Difference" is the largest signal change from the pre-contrast baseline.
    _info("PE", "peak enhancement: max e(t)", _AU, Code("126376", "DCM", "Maximum Difference"), _AMPLITUDE),
    _info("TTP", "time of the peak of e(t) since the injection", _S, Code("113069", "DCM", "Time To Peak"), _TIME),
    _info("WiR", "wash-in rate: the largest slope of the fitted curve", _AU_PER_S,
          Code("126375", "DCM", "Maximum Slope"), _AMPLITUDE),
    _info("WoR", "wash-out rate: min de/dt (negative)", _AU_PER_S, _private(4, "Wash-out rate"), _AMPLITUDE_NEGATIVE),
    # not DCM 126371 "Bolus Arrival Time" (one estimate of it among several)
    _info("TI", "time where the tangent at the steepest rise crosses e = 0", _S,
          _private(5, "Tangent intercept time of wash-in"), _TIME),
    _info("TO", "time where the tangent at the steepest fall crosses e = 0", _S,
          _private(6, "Tangent intercept time of wash-out"), _TIME),
    _info("RT", "rise time: TTP - TI", _S, _private(7, "Rise time"), _TIME),
    _info("FT", "fall time: TO - TTP", _S, _private(8, "Fall time"), _TIME),
    _info("mTTl", "local mean transit time: first moment of e about the injection - TI", _S,
          _private(9, "Local mean transit time"), _TIME),
    _info("WiAUC", "wash-in area: integral of e from TI to TTP", _AU_S,
          _private(10, "Wash-in area under the curve"), _AMPLITUDE),
    _info("WoAUC", "wash-out area: integral of e from TTP to TO", _AU_S,
          _private(11, "Wash-out area under the curve"), _AMPLITUDE),
    _info("WiWoAUC", "WiAUC + WoAUC", _AU_S, _private(12, "Wash-in wash-out area under the curve"), _AMPLITUDE),
    _info("WiPI", "wash-in perfusion index: WiAUC / RT", _AU, _private(13, "Wash-in perfusion index"), _AMPLITUDE),
    # not DCM 126320 "IAUC" (an initial area over a fixed interval)
    _info("AUC", "integral of e over all time", _AU_S, _private(14, "Area under the enhancement curve"), _AMPLITUDE),
    # private, as the DICOM outputs have written it since they exist (contract, "Parameter codes"):
    # DCM 126220 R2-Coefficient is the same quantity on a 0..1 scale, QOF is in percent of the fit.
    _info("QOF", "quality of fit: 100 (1 - SS_res / SS_tot) of the measured TIC against the fit", _PERCENT,
          _private(15, "Quality of fit"), _QUALITY),
    # -- destruction-replenishment ("Parameters (replenishment)"); CID 4108 where the concept is the same
    _info("rBV", "relative blood volume: the replenished plateau A above the post-flash level", _AU,
          Code("126398", "DCM", "Relative Regional Blood Volume"), _AMPLITUDE),
    _info("mTT", "mean transit time: 1 / beta", _S, Code("113052", "DCM", "Mean Transit Time"), _TIME),
    _info("rBF", "relative blood flow: rBV / mTT", _AU_PER_S,
          Code("126397", "DCM", "Relative Regional Blood Flow"), _AMPLITUDE),
    _info("PI", "perfusion index: rBV / mTT", _AU_PER_S, _private(20, "Replenishment perfusion index"), _AMPLITUDE),
    # -- PET and CT measures on an ROI's footprint or 3D segment (fusion-and-follow-up contract) ----
    _info("SUVmax", "maximum SUVbw over the ROI's footprint", _SUV, _SUVBW, derivation=_MAXIMUM),
    _info("SUVmean", "mean SUVbw over the ROI's footprint", _SUV, _SUVBW, derivation=_MEAN),
    _info("SUVpeak", "highest mean SUVbw in a 1 cm3 sphere centred on a footprint voxel (PERCIST)", _SUV,
          _SUVBW, derivation=_PEAK),
    _info("voxels", "number of PET voxels in the ROI's footprint", _VOXELS,
          _private(30, "Number of voxels in footprint")),
    _info("TLR", "tumour-to-liver ratio: the ROI's SUVmax / the reference ROI's SUVmean", _RATIO,
          Code("126039", "DCM", "Lesion to Background SUV Ratio")),
    _info("HU_mean", "mean CT number over the ROI's footprint", _HU,
          Code("112031", "DCM", "Attenuation Coefficient"), derivation=_MEAN),
    _info("volume_ml", "volume of the PET 3D lesion segment", _ML, Code("118565006", "SCT", "Volume")),
    _info("TLU", "total lesion uptake: SUVmean x volume of the 3D segment", _SUV_ML,
          _private(31, "Total lesion uptake")),
    _info("distance_mm", "distance from the CEUS plane to the 3D segment", _MM, Code("121206", "DCM", "Distance")),
)

#: The quantities each family reports, in the order it reports them (the columns of its CSVs; for
#: the fusion measures the keys of a ``fusion.json`` ROI section: ``pet``, ``ct``, ``pet3d``).
FAMILY_PARAMETERS: dict[str, tuple[str, ...]] = {
    "bolus": ("PE", "TTP", "WiR", "WoR", "TI", "TO", "RT", "FT", "mTTl",
              "WiAUC", "WoAUC", "WiWoAUC", "WiPI", "AUC", "QOF"),
    "replenishment": ("rBV", "mTT", "rBF", "PI", "WiR", "QOF"),
    "pet": ("SUVmax", "SUVmean", "SUVpeak", "voxels", "TLR"),
    "ct": ("HU_mean",),
    "pet3d": ("SUVmax", "SUVmean", "SUVpeak", "volume_ml", "TLU", "distance_mm"),
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


# -- the other concepts of the DICOM outputs (SR, SEG) ------------------------------------------------

#: Measurement methods of the SR: where a measure was taken (by fusion.json section) or how.
MEASUREMENT_METHODS: dict[str, Code] = {
    "pet": _private(40, "PET footprint of the CEUS ROI in the elevational slab"),
    "ct": _private(41, "CT footprint of the CEUS ROI in the elevational slab"),
    "pet3d": _private(42, "PET 3D lesion segment"),
    "kinetic_fit": _private(43, "Time-intensity curve model fit"),
}

#: The derivation that marks a reference-normalised value (ROI value / reference ROI value), and its unit.
RELATIVE_DERIVATION = _private(50, "Relative to reference ROI")
RELATIVE_UCUM = _RATIO[1]

#: An ROI's fit status as a qualitative evaluation: the concept, then one value per status.
FIT_STATUS_CONCEPT = _private(60, "Time-intensity curve fit status")
FIT_STATUS_VALUES: dict[str, Code] = {
    "ok": _private(61, "Fit accepted"),
    "no_enhancement": _private(62, "No enhancement"),
    "fit_failed": _private(63, "Fit failed"),
}

#: The procedure the SR reports (TID 1500 "Procedure reported").
PROCEDURE_REPORTED = _private(70, "Dynamic contrast-enhanced ultrasound of liver")

#: The organ of the trial: the anatomic region of every SEG segment, map and SR finding site.
ANATOMIC_REGION = Code("10200004", "SCT", "Liver")

#: SEG segment properties per ROI role: (Segmented Property Category, Segmented Property Type).
#: The liver is filed under "Anatomical Structure", as in Slicer's DICOM terminology.
SEGMENT_ROLE_CODES: dict[str, tuple[Code, Code]] = {
    "lesion": (Code("49755003", "SCT", "Morphologically Abnormal Structure"),
               Code("14799000", "SCT", "Neoplasm, Secondary")),
    "reference": (Code("91723000", "SCT", "Anatomical Structure"), ANATOMIC_REGION),
    "necrosis": (Code("49755003", "SCT", "Morphologically Abnormal Structure"), Code("6574001", "SCT", "Necrosis")),
}

#: Code meanings of the UCUM units above (a UCUM code carries its meaning in DICOM).
UCUM_MEANINGS: dict[str, str] = {
    _AU[1]: "arbitrary unit", _AU_PER_S[1]: "arbitrary unit per second", _AU_S[1]: "arbitrary unit times second",
    _S[1]: "second", _PERCENT[1]: "Percent", _RATIO[1]: "ratio", _SUV[1]: "Standardized Uptake Value body weight",
    _VOXELS[1]: "voxels", _HU[1]: "Hounsfield unit", _ML[1]: "milliliter", _SUV_ML[1]: "gram (SUVbw x ml)",
    _MM[1]: "millimeter",
}


def dicom_quantity(name: str) -> tuple[Code, str]:
    """The DICOM concept and UCUM unit of quantity ``name``; InputError for an unknown name."""
    info = parameter_info(name)
    if info.quantity_code is None:
        raise InputError(f"{name} has no DICOM code")
    return info.quantity_code, info.ucum
