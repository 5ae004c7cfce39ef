"""SUVbw (body-weight standardised uptake value) from a PET series' header.

The contract's formula, after the QIBA vendor-neutral pseudo-code::

    SUVbw = (stored x Rescale Slope + Rescale Intercept) x PatientWeight[kg] x 1000 / D
    D     = RadionuclideTotalDose[Bq] x 2 ** (-(T_scan - T_inj) / RadionuclideHalfLife[s])

``T_inj``: Radiopharmaceutical Start DateTime, else Series Date + Radiopharmaceutical Start Time (a
clock time after the scan's means the injection was the day before: injection and scan straddle
midnight). ``T_scan``: Series Date/Time, or the earliest Acquisition Date/Time of the series when that
is earlier (a post-processed series whose Series Time is when it was made). Decay Correction
``START`` decays the dose to ``T_scan``; ``ADMIN`` (images decay-corrected to the injection) uses the
dose as is. Units ``BQML`` need Corrected Image with ``ATTN`` and ``DECY``; ``GML`` is already SUV
(factor 1); ``CNTS`` needs the Philips private SUV Scale Factor (7053,1000), or its activity
concentration factor (7053,1009) which makes Bq/ml and then the BQML rule applies.

The volume's values (:class:`DCEUSResponseLib.io.volumes.Volume`) are already rescaled per slice,
so ``SUVbw = volume.values x SuvFactor.factor``. Everything missing or absurd is an
:class:`InputError` naming the attribute and the folder.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass
from typing import Any

from DCEUSResponseLib.errors import InputError

PHILIPS_PRIVATE_CREATOR = "Philips PET Private Group"
_PHILIPS_SUV_ELEMENT, _PHILIPS_ACTIVITY_ELEMENT = 0x00, 0x09  # (7053,xx00) SUV, (7053,xx09) Bq/ml
_WEIGHT_RANGE_KG = (1.0, 500.0)
_MAX_UPTAKE_S = 24 * 3600.0
_UCUM_UNITS = {"Bq/ml": "BQML", "{SUVbw}g/ml": "GML", "{counts}": "CNTS"}  # beyond a day after injection the dates are wrong, not the patient


@dataclass(frozen=True)
class SuvFactor:
    """``SUVbw [g/ml] = value x factor``, with every input to the factor (the contract's ``pet.suv``).

    ``factor`` is in g/ml per unit of the volume's values (per Bq/ml for BQML; 1 for GML);
    ``weight_kg``, ``dose_bq`` (Radionuclide Total Dose at injection), ``half_life_s`` as read;
    ``injection_datetime`` and ``scan_datetime`` ISO 8601 (None where not needed, e.g. GML);
    ``decay_correction`` START / ADMIN; ``units`` BQML / GML / CNTS; ``decay_factor`` the
    ``2 ** (-(T_scan - T_inj) / half_life)`` applied (1 for ADMIN); ``scan_time_source``
    ``"series"``, ``"acquisition"`` or (Enhanced PET) ``"decay-correction"``; ``vendor_factor`` the private factor used, if any.
    """

    factor: float
    weight_kg: float | None
    dose_bq: float | None
    injection_datetime: str | None
    scan_datetime: str | None
    half_life_s: float | None
    decay_correction: str | None
    units: str
    decay_factor: float = 1.0
    scan_time_source: str | None = None
    vendor_factor: str | None = None

    def to_dict(self) -> dict:
        """The ``fusion.json`` ``pet.suv`` object."""
        return asdict(self)


def suv_factor_of(volume: Any) -> SuvFactor:
    """:func:`suv_factor` of a PET :class:`~DCEUSResponseLib.io.volumes.Volume`."""
    if volume.modality != "PT":
        raise InputError(f"series {volume.series_uid} is {volume.modality}, SUV needs a PET (PT) series",
                         volume.source)
    return suv_factor(volume.header, volume.source, volume.acquisition_datetimes)


def suv_factor(header: Any, source: str, acquisition_datetimes: tuple[str, ...] | list[str] = ()) -> SuvFactor:
    """The SUVbw factor of a PET series from its first slice's ``header`` (a pydicom Dataset).

    ``acquisition_datetimes`` (DICOM DT text per slice, as :class:`Volume` holds them) give the
    earliest acquisition time; without them the header's own Acquisition Date/Time is used.
    ``source`` (the series folder) names the file in errors.
    """
    units = _units(header, source)
    if units == "GML":
        return SuvFactor(factor=1.0, weight_kg=_optional_float(header, "PatientWeight"), dose_bq=None,
                         injection_datetime=None, scan_datetime=None, half_life_s=None,
                         decay_correction=_decay_correction(header), units=units)
    vendor = None
    activity_scale = 1.0
    if units == "CNTS":
        suv_scale, activity = _philips_factors(header)
        if suv_scale is not None:
            return SuvFactor(factor=suv_scale, weight_kg=_optional_float(header, "PatientWeight"), dose_bq=None,
                             injection_datetime=None, scan_datetime=None, half_life_s=None,
                             decay_correction=_decay_correction(header), units=units,
                             vendor_factor="Philips (7053,1000) SUV Scale Factor")
        if activity is None:
            raise InputError("Units CNTS without a vendor SUV factor (Philips (7053,1000) SUV Scale Factor or "
                             "(7053,1009) Activity Concentration Scale Factor): SUV cannot be computed", source)
        activity_scale, vendor = activity, "Philips (7053,1009) Activity Concentration Scale Factor"
    elif units != "BQML":
        raise InputError(f"Units (0054,1001) {units} cannot be turned into SUVbw (BQML, GML or CNTS with a "
                         f"vendor factor are)", source)
    _check_corrections(header, source)
    return _bqml_factor(header, source, acquisition_datetimes, units, activity_scale, vendor)


def _bqml_factor(header: Any, source: str, acquisition_datetimes, units: str, activity_scale: float,
                 vendor: str | None) -> SuvFactor:
    decay_correction = _decay_correction(header)
    if decay_correction not in ("START", "ADMIN"):
        raise InputError(f"Decay Correction (0054,1102) is {decay_correction or 'missing'}: SUVbw needs START "
                         f"or ADMIN", source)
    weight_kg = _required_float(header, "PatientWeight", "Patient's Weight (0010,1030)", source)
    if not _WEIGHT_RANGE_KG[0] <= weight_kg <= _WEIGHT_RANGE_KG[1]:
        raise InputError(f"Patient's Weight (0010,1030) {weight_kg:g} kg is not a patient's weight", source)
    item = _radiopharmaceutical(header, source)
    dose_bq = _required_float(item, "RadionuclideTotalDose", "Radionuclide Total Dose (0018,1074)", source)
    half_life_s = _required_float(item, "RadionuclideHalfLife", "Radionuclide Half Life (0018,1075)", source)
    if dose_bq <= 0 or half_life_s <= 0:
        name = "Radionuclide Total Dose (0018,1074)" if dose_bq <= 0 else "Radionuclide Half Life (0018,1075)"
        raise InputError(f"{name} must be positive", source)
    scan, scan_source = _scan_datetime(header, source, acquisition_datetimes)
    injection = _injection_datetime(header, item, scan, source)
    uptake_s = (scan - injection).total_seconds()
    if not 0.0 <= uptake_s <= _MAX_UPTAKE_S:
        raise InputError(f"the scan ({scan.isoformat()}) is {uptake_s / 3600:.2f} h after the injection "
                         f"({injection.isoformat()}): check Radiopharmaceutical Start and Series/Acquisition "
                         f"Date/Time", source)
    decay = 2.0 ** (-uptake_s / half_life_s) if decay_correction == "START" else 1.0
    factor = activity_scale * weight_kg * 1000.0 / (dose_bq * decay)
    return SuvFactor(factor=factor, weight_kg=weight_kg, dose_bq=dose_bq, injection_datetime=injection.isoformat(),
                     scan_datetime=scan.isoformat(), half_life_s=half_life_s, decay_correction=decay_correction,
                     units=units, decay_factor=decay, scan_time_source=scan_source, vendor_factor=vendor)


# --------------------------------------------------------------------------------------------
# attributes


def _units(header: Any, source: str) -> str:
    units = str(getattr(header, "Units", "") or "").strip().upper()
    if not units:
        # Enhanced PET has no Units attribute: its Real World Value Mapping names them in UCUM
        ucum = _real_world_units(header)
        units = _UCUM_UNITS.get(ucum, ucum.upper())
    if not units:
        raise InputError("no Units (0054,1001): SUV cannot be computed", source)
    return units


def _decay_correction(header: Any) -> str | None:
    value = str(getattr(header, "DecayCorrection", "") or "").strip().upper()
    if value:
        return value
    # Enhanced PET: Decay Corrected (0018,9758) YES means decayed to Decay Correction DateTime
    if str(getattr(header, "DecayCorrected", "") or "").upper() == "YES":
        return "START"
    return None


def _check_corrections(header: Any, source: str) -> None:
    if "CorrectedImage" in header:
        corrected = {str(v).strip().upper() for v in _as_list(header.CorrectedImage)}
        # some writers spell decay DECAY; the standard's defined term is DECY
        missing = [term for term, spellings in (("ATTN", {"ATTN"}), ("DECY", {"DECY", "DECAY"}))
                   if not corrected & spellings]
        if missing:
            raise InputError(f"Corrected Image (0028,0051) lacks {' and '.join(missing)}: the values are not "
                             f"attenuation- and decay-corrected activity, SUV cannot be computed", source)
        return
    if str(getattr(header, "AttenuationCorrected", "") or "").upper() == "YES" and \
            str(getattr(header, "DecayCorrected", "") or "").upper() == "YES":
        return  # Enhanced PET Corrections module
    raise InputError("no Corrected Image (0028,0051): attenuation and decay correction (ATTN, DECY) unknown", source)


def _radiopharmaceutical(header: Any, source: str) -> Any:
    sequence = getattr(header, "RadiopharmaceuticalInformationSequence", None)
    if not sequence:
        raise InputError("no Radiopharmaceutical Information Sequence (0054,0016): dose, half-life and "
                         "injection time unknown", source)
    return sequence[0]


def _philips_factors(header: Any) -> tuple[float | None, float | None]:
    try:
        block = header.private_block(0x7053, PHILIPS_PRIVATE_CREATOR)
    except KeyError:
        return None, None
    values = []
    for element in (_PHILIPS_SUV_ELEMENT, _PHILIPS_ACTIVITY_ELEMENT):
        try:
            value = block[element].value
            values.append(float(value) if value not in (None, "") and float(value) > 0 else None)
        except (KeyError, TypeError, ValueError):
            values.append(None)
    return values[0], values[1]


def _required_float(ds: Any, keyword: str, name: str, source: str) -> float:
    value = getattr(ds, keyword, None)
    if value in (None, ""):
        raise InputError(f"no {name}: SUV cannot be computed", source)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} {value!r} is not a number", source) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise InputError(f"{name} is not finite", source)
    return number


def _optional_float(ds: Any, keyword: str) -> float | None:
    value = getattr(ds, keyword, None)
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# times


def _scan_datetime(header: Any, source: str, acquisition_datetimes) -> tuple[_dt.datetime, str]:
    """Series Date/Time, or the earliest acquisition when earlier (QIBA: post-processed series)."""
    if str(getattr(header, "DecayCorrectionDateTime", "") or ""):
        return _parse_datetime(str(header.DecayCorrectionDateTime), "Decay Correction DateTime (0018,9701)",
                               source), "decay-correction"
    series = None
    if getattr(header, "SeriesDate", None) and getattr(header, "SeriesTime", None):
        series = _combine(str(header.SeriesDate), str(header.SeriesTime), "Series Date/Time (0008,0021/0031)", source)
    texts = [t for t in acquisition_datetimes if t] or \
        ([str(header.AcquisitionDate) + str(header.AcquisitionTime)]
         if getattr(header, "AcquisitionDate", None) and getattr(header, "AcquisitionTime", None) else [])
    acquisitions = [_parse_datetime(t, "Acquisition Date/Time (0008,0022/0032)", source) for t in texts]
    earliest = min(acquisitions) if acquisitions else None
    if series is None and earliest is None:
        raise InputError("no Series Date/Time (0008,0021/0031) nor Acquisition Date/Time (0008,0022/0032): "
                         "scan time unknown", source)
    if series is None or (earliest is not None and earliest < series):
        return earliest, "acquisition"
    return series, "series"


def _injection_datetime(header: Any, item: Any, scan: _dt.datetime, source: str) -> _dt.datetime:
    if getattr(item, "RadiopharmaceuticalStartDateTime", None):
        return _parse_datetime(str(item.RadiopharmaceuticalStartDateTime),
                               "Radiopharmaceutical Start DateTime (0018,1078)", source)
    if not getattr(item, "RadiopharmaceuticalStartTime", None):
        raise InputError("no Radiopharmaceutical Start DateTime (0018,1078) nor Radiopharmaceutical Start Time "
                         "(0018,1072): injection time unknown", source)
    date = str(getattr(header, "SeriesDate", "") or "") or scan.strftime("%Y%m%d")
    injection = _combine(date, str(item.RadiopharmaceuticalStartTime),
                         "Radiopharmaceutical Start Time (0018,1072)", source)
    if injection > scan:
        # only a clock time was given: an injection "after" the scan was the evening before
        injection -= _dt.timedelta(days=1)
    return injection


def _combine(date: str, time: str, name: str, source: str) -> _dt.datetime:
    from pydicom.valuerep import DA, TM

    try:
        return _dt.datetime.combine(DA(date.strip()), TM(time.strip()))
    except (TypeError, ValueError):
        raise InputError(f"{name} {date} {time} is not a DICOM date and time", source) from None


def _parse_datetime(text: str, name: str, source: str) -> _dt.datetime:
    from pydicom.valuerep import DT

    try:
        moment = DT(text.strip())
    except (TypeError, ValueError):
        raise InputError(f"{name} {text!r} is not a DICOM date-time", source) from None
    # the other times of the header are local clock times without an offset
    return _dt.datetime(moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second,
                        moment.microsecond)


def _real_world_units(header: Any) -> str:
    """UCUM code of the first Real World Value Mapping (shared, else first frame's), or ``""``."""
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        if groups not in header or not header[groups].value:
            continue
        item = header[groups].value[0]
        mappings = item.get("RealWorldValueMappingSequence")
        if mappings and "MeasurementUnitsCodeSequence" in mappings[0]:
            return str(mappings[0].MeasurementUnitsCodeSequence[0].CodeValue or "")
    return ""


def _as_list(value: Any) -> list:
    """A multi-valued CS as a list (pydicom gives a single value as a plain string)."""
    return [value] if isinstance(value, (str, bytes)) or value is None else list(value)
