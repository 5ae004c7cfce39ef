"""Terminal summaries of an analysis and of a comparison (the command line and the demo print them)."""
from __future__ import annotations


def format_summary(analysis) -> str:
    """A short table of the main parameters per ROI, for the terminal and the demo's summary."""
    shown = [("PE", "PE [a.u.]", ".3g"), ("TTP", "TTP [s]", ".1f"), ("mTTl", "mTTl [s]", ".1f"),
             ("WiWoAUC", "WiWoAUC", ".3g")]
    if analysis.parameter_names[0] != "PE":  # replenishment
        shown = [("rBV", "rBV [a.u.]", ".3g"), ("mTT", "mTT [s]", ".2f"), ("rBF", "rBF [a.u./s]", ".3g")]
    key = shown[-1][0]
    lines = [f"{'ROI':<14}{'status':<16}" + "".join(f"{title:>13}" for _, title, _ in shown)
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
