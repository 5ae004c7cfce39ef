"""Terminal summaries of an analysis and of a comparison (the command line and the demo print them)."""
from __future__ import annotations

from DCEUSResponseLib.catalogue import unit
from DCEUSResponseLib.kinetics.registry import get_family

_COLUMN_WIDTH = 13


def _title(name: str) -> str:
    """``NAME [unit]`` when it fits the column, else the name alone."""
    titled = f"{name} [{unit(name)}]" if unit(name) else name
    return titled if len(titled) < _COLUMN_WIDTH else name


def format_summary(analysis) -> str:
    """A short table of the main parameters per ROI (those the model's family names), for the
    terminal and the demo's summary."""
    shown = [(name, _title(name), spec) for name, spec in get_family(analysis.options.model).summary]
    key = shown[-1][0]
    lines = [f"{'ROI':<14}{'status':<16}" + "".join(f"{title:>{_COLUMN_WIDTH}}" for _, title, _ in shown)
             + f"{'QOF %':>7}{'rel ' + key:>13}"]
    for roi in analysis.rois.values():
        p, r = roi.parameters, roi.relative
        lines.append(f"{roi.name:<14}{roi.fit.status:<16}" + "".join(f"{_fmt(p.get(n), f):>13}" for n, _, f in shown)
                     + f"{_fmt(p.get('QOF'), '.0f'):>7}{_fmt(r.get(key), '.2f'):>13}")
    if analysis.excluded:
        lines.append(f"frames excluded from the fits: {len(analysis.excluded)} of {analysis.clip.n_frames}")
    if analysis.motion is not None:
        lines.append(f"breathing motion: {analysis.motion.rms_displacement_px:.1f} px RMS "
                     f"(estimated on the {analysis.motion.kind} panel)")
    return "\n".join(lines)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_response(response: dict) -> str:
    lines = [f"rule: {response['rule_definition']}"]
    for name, roi in response["rois"].items():
        lines.append(f"  {name:<14}{roi['classification']:<15}{roi['reason']}")
    return "\n".join(lines)
