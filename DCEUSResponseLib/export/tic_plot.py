"""The TIC plot (``tic.png``): measured samples, fitted curves and excluded frames of each ROI.

One plotting function, :func:`plot_tic_panels`, draws one panel per analysis (``analyze`` writes
one, the demo two: baseline and follow-up, ``fit-tic`` one). Each ROI has one colour: dots for the
frames that entered the fit, grey crosses for excluded frames, the fitted curve solid over the
fitted frames and dashed where it is extrapolated beyond them. matplotlib is optional: without it
no plot is written. Only matplotlib's object API is used (no pyplot), so plots may be drawn on the
writer threads of :func:`~DCEUSResponseLib.export.staging.write_staged`.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from DCEUSResponseLib.ceus.results import Analysis, RoiResult

_EXCLUDED_COLOUR = "0.55"
_CURVE_POINTS = 600


@dataclass(frozen=True)
class TicPanel:
    """What one panel shows: ``times_s`` since injection, the ROIs, which samples were fitted."""

    title: str
    times_s: np.ndarray
    rois: Sequence[RoiResult]
    frame_use: np.ndarray


def analysis_panel(analysis: Analysis, title: str | None = None) -> TicPanel:
    """The panel of one clip's analysis (titled with the clip's file name unless ``title``)."""
    return TicPanel(title or os.path.basename(str(analysis.clip.source)), np.asarray(analysis.times_s),
                    list(analysis.rois.values()), np.asarray(analysis.frame_use, dtype=bool))


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _draw_panel(axis, panel: TicPanel) -> None:
    times = panel.times_s
    start, end = float(np.min(times)), float(np.max(times))
    # Show the extrapolated curve up to the wash-out landmark it invents (at most one clip length on).
    landmarks = [roi.parameters.get("TO") for roi in panel.rois if roi.fit.ok and roi.extrapolated]
    landmarks = [t for t in landmarks if t is not None and np.isfinite(t)]
    if landmarks:
        end = min(max(end, max(landmarks)), end + (end - start))
    dense = np.linspace(start, end, _CURVE_POINTS)
    excluded_shown = False
    for index, roi in enumerate(panel.rois):
        colour = f"C{index % 10}"
        used = panel.frame_use & np.isfinite(roi.tic)
        label = roi.name if roi.fit.ok else f"{roi.name} ({roi.fit.status})"
        if roi.extrapolated:
            label += f"; extrapolated: {', '.join(roi.extrapolated)}"
        axis.plot(times[used], roi.tic[used], ".", color=colour, markersize=3, alpha=0.7,
                  label=None if roi.fit.ok else label)
        if np.any(~panel.frame_use):
            axis.plot(times[~panel.frame_use], roi.tic[~panel.frame_use], "x", color=_EXCLUDED_COLOUR, markersize=4,
                      label=None if excluded_shown else "excluded frames")
            excluded_shown = True
        if not roi.fit.ok:
            continue
        curve = roi.fit.curve(dense)
        span = getattr(roi.fit, "fitted_span_s", None) or (float(times[used].min()), float(times[used].max()))
        inside = (dense >= span[0]) & (dense <= span[1])
        axis.plot(dense, np.where(inside, curve, np.nan), "-", color=colour, linewidth=1.6, label=label)
        if np.any(~inside & np.isfinite(curve)):
            axis.plot(dense, np.where(inside, np.nan, curve), "--", color=colour, linewidth=1.0)
    axis.set_title(panel.title)
    axis.set_xlabel("time since injection [s]")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small", loc="best")


def tic_figure(panels: Sequence[TicPanel]):
    """A matplotlib Figure of ``panels`` side by side (shared intensity axis); ImportError without matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4 * len(panels), 4.2))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for axis, panel in zip(axes, panels):
        _draw_panel(axis, panel)
    axes[0].set_ylabel("mean linear intensity [a.u.]")
    figure.tight_layout()
    return figure


def plot_tic_panels(panels: Sequence[TicPanel], path: str, *, dpi: int = 110) -> str | None:
    """Draw ``panels`` (:func:`tic_figure`) into the PNG ``path``; None without matplotlib.

    A character the font lacks (an ROI named in CJK with matplotlib's DejaVu Sans) is drawn as a box;
    matplotlib's warning about it stays off stderr (the names are exact in the CSV and JSON files).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        try:
            figure = tic_figure(panels)
        except ImportError:
            return None
        figure.savefig(path, dpi=dpi, format="png")
    return path


def tic_plot_writer(panels: Sequence[TicPanel]) -> Callable[[str], None]:
    """A writer(path) of :func:`plot_tic_panels` for :func:`~DCEUSResponseLib.export.staging.write_staged`."""
    return lambda path: plot_tic_panels(panels, path)
