"""The fit of a time-intensity curve given as a table (``fit-tic``): the same models, injection time,
parameters and extrapolation flags as ``analyze`` gives an ROI of a clip, without a clip.

The table's intensities are linear echo power (a.u.) unless a dynamic range is given: then they
are display gray levels 0..255, linearised by the contract's ``I = 10**((g/255*DR - DR)/10)``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from DCEUSResponseLib.ceus.linearize import check_dynamic_range, linear_from_gray
from DCEUSResponseLib.ceus.pipeline import extrapolation_warning
from DCEUSResponseLib.ceus.quality import parse_frame_ranges
from DCEUSResponseLib.ceus.results import RoiResult
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.tic_table import TicTable
from DCEUSResponseLib.kinetics.base import ClipFrames
from DCEUSResponseLib.kinetics.registry import get_family


@dataclass
class TableFitOptions:
    """What the user chooses for ``fit-tic`` (the command line's names and defaults).

    ``dynamic_range_db`` None: the intensities are linear; a number: they are gray levels under
    that display dynamic range. ``exclude_frames``/``flash_frames``: 0-based data rows ("3-5,10").
    """

    model: str = "lognormal"
    injection_time_s: float = 0.0
    dynamic_range_db: float | None = None
    exclude_frames: str = ""
    flash_frames: str | None = None
    name: str | None = None


@dataclass
class TableFit:
    """The fit of one table: the table, the options, times since injection, rows used, the ROI."""

    table: TicTable
    options: TableFitOptions
    times_s: np.ndarray
    frame_use: np.ndarray
    roi: RoiResult
    parameter_names: tuple[str, ...]
    warnings: list[str] = field(default_factory=list)


def _names_gray_levels(column: str) -> bool:
    """Whether a column's name says display gray levels ("gray", "Grey level", "mean_gray", ...)."""
    return re.search(r"gr[ae]y", column, re.IGNORECASE) is not None


def linear_table_values(table: TicTable, dynamic_range_db: float | None) -> np.ndarray:
    """The table's intensities as linear a.u. (InputError naming the row of an impossible value)."""
    values = table.values
    if dynamic_range_db is None:
        bad = np.flatnonzero(values < 0)
        if bad.size:
            raise InputError(f"row {table.rows[bad[0]]}: intensity {values[bad[0]]:g} is negative; linear echo "
                             "power is >= 0 (for display gray levels give --dynamic-range)", table.source)
        return values.astype(float)
    check_dynamic_range(dynamic_range_db)
    bad = np.flatnonzero((values < 0) | (values > 255))
    if bad.size:
        raise InputError(f"row {table.rows[bad[0]]}: gray level {values[bad[0]]:g} is outside 0..255 "
                         "(--dynamic-range means the intensities are display gray levels)", table.source)
    return linear_from_gray(values, float(dynamic_range_db)).astype(float)


def fit_tic_table(table: TicTable, options: TableFitOptions) -> TableFit:
    """Fit ``options.model`` to the table's TIC (times minus the injection time) and report it."""
    family = get_family(options.model)
    if not np.isfinite(options.injection_time_s) or options.injection_time_s >= table.times_s[-1]:
        raise InputError(f"--injection-time {options.injection_time_s} s is not before the table's last time "
                         f"({table.times_s[-1]:g} s)", table.source)
    linear = linear_table_values(table, options.dynamic_range_db)
    n = len(linear)
    times_s = table.times_s - options.injection_time_s
    use = np.ones(n, dtype=bool)
    use[parse_frame_ranges(options.exclude_frames, n, "--exclude-frames", table.source, "data row")] = False
    flashes = ()
    warnings = []
    if options.dynamic_range_db is None and _names_gray_levels(table.intensity_column):
        warnings.append(f"column {table.intensity_column!r} is fitted as linear intensity (no --dynamic-range); if it "
                        "holds display gray levels (log-compressed), give the scanner's --dynamic-range")
    if options.flash_frames is not None:
        flashes = tuple(parse_frame_ranges(options.flash_frames, n, "--flash-frames", table.source, "data row"))
        use[list(flashes)] = False
        if flashes and family.flash_ends_curve:
            use[flashes[0] + 1:] = False
            warnings.append(f"flash at row {table.rows[flashes[0]]}: the bolus is fitted up to it")
    if not np.any(use):
        raise InputError("every row is excluded (--exclude-frames, --flash-frames); nothing to fit", table.source)
    prepared = family.prepare(ClipFrames(times_s, use, flashes), table.source)
    fit = family.fit(options.model, prepared, linear)
    extrapolated = family.extrapolated(options.model, fit)
    name = options.name or table.intensity_column
    if extrapolated:
        warnings.append(extrapolation_warning(name, extrapolated, fit))
    if not fit.ok:
        warnings.append(f"ROI {name!r}: {fit.status}: {fit.reason}")
    roi = RoiResult(name, None, linear, fit, family.parameters(options.model, fit), extrapolated=extrapolated)
    return TableFit(table, options, times_s, use, roi, tuple(family.parameter_names), warnings)
