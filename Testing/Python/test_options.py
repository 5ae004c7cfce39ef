"""One options object: the command line's analyze options are AnalysisOptions' fields, one spelling each."""
import dataclasses

from DCEUSResponseLib.app.cli import build_parser
from DCEUSResponseLib.ceus.options import AnalysisOptions

ARGS = ["analyze", "clip.dcm", "--roi", "lesion=mask.png", "--out", "out"]


def _analyze_dests() -> dict:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return {action.dest: action.default for action in subparsers.choices["analyze"]._actions}


def test_every_option_reaches_the_analysis_under_its_own_name_and_default():
    dests = _analyze_dests()
    for field in dataclasses.fields(AnalysisOptions):
        if field.name == "colour_table":  # read from the --colormap file, not typed
            continue
        assert field.name in dests, f"AnalysisOptions.{field.name} has no command-line option of that dest"
        assert dests[field.name] == field.default, field.name


def test_options_from_the_command_line():
    args = build_parser().parse_args(ARGS + ["--dynamic-range", "45", "--injection-time", "2.5", "--reference",
                                             "liver", "--reference-frame", "7", "--model", "gamma",
                                             "--no-motion-compensation", "--no-frame-qc", "--exclude-frames", "3-5",
                                             "--flash-frames", "9", "--maps", "--map-binning", "2",
                                             "--map-region", "lesion"])
    assert AnalysisOptions.from_namespace(args) == AnalysisOptions(
        dynamic_range_db=45.0, injection_time_s=2.5, reference="liver", reference_frame=7, model="gamma",
        motion_compensation=False, frame_quality_control=False, exclude_frames="3-5", flash_frames="9", maps=True,
        map_binning=2, map_region="lesion")
    assert AnalysisOptions.from_namespace(build_parser().parse_args(ARGS)) == AnalysisOptions()
    assert AnalysisOptions.from_namespace(build_parser().parse_args(ARGS), model="fpt").model == "fpt"
