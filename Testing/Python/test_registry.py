"""The registry of kinetic families: every ``--model`` choice resolves to a family that fits and
reports its catalogue parameters; an unknown model is a one-line InputError naming the choices."""
import ast
import pathlib

import numpy as np
import pytest

from DCEUSResponseLib.catalogue import parameter_names
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.kinetics.base import FIT_STATUSES, STATUS_OK, ClipFrames, Fit, KineticFamily
from DCEUSResponseLib.kinetics.models import BOLUS_MODELS, get_model
from DCEUSResponseLib.kinetics.registry import (
    MODEL_CHOICES,
    families,
    get_family,
    model_choices,
    register_family,
)

MODULE_FILE = pathlib.Path(__file__).resolve().parents[2] / "DCEUSResponse" / "DCEUSResponse.py"


def test_every_cli_model_choice_resolves_to_a_family(capsys):
    from DCEUSResponseLib.app.cli import build_parser

    parser = build_parser()
    for model in MODEL_CHOICES:
        args = parser.parse_args(["analyze", "clip.dcm", "--roi", "a=a.png", "--out", "out", "--model", model])
        assert args.model == model
    with pytest.raises(SystemExit):  # the command line offers nothing else
        parser.parse_args(["analyze", "clip.dcm", "--roi", "a=a.png", "--out", "out", "--model", "biexponential"])
    assert "invalid choice: 'biexponential'" in capsys.readouterr().err
    assert MODEL_CHOICES == ("fpt", "gamma", "ldrw", "lognormal", "replenishment")
    for model in MODEL_CHOICES:
        family = get_family(model)
        assert model in family.models
        assert family.parameter_names == parameter_names(family.name)
    assert get_family("LogNormal") is get_family("lognormal")  # as get_model, case-insensitive
    assert {family.name for family in families()} == {"bolus", "replenishment"}
    assert model_choices(maps=True) == tuple(sorted(BOLUS_MODELS))


def test_an_unknown_model_is_an_input_error_naming_the_choices():
    with pytest.raises(InputError, match=r"^unknown model 'biexponential'; choices: fpt, gamma, ldrw, lognormal, "
                                         r"replenishment$"):
        get_family("biexponential")


def test_the_slicer_module_lists_the_bolus_family_s_models():
    """The module lists them itself so that importing it at Slicer's startup does not import scipy."""
    constants = {n.targets[0].id: n.value for n in ast.parse(MODULE_FILE.read_text(encoding="utf-8")).body
                 if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}
    assert tuple(sorted(ast.literal_eval(constants["MODEL_CHOICES"]))) == get_family("lognormal").models


def test_a_model_name_cannot_be_registered_twice():
    class Copy(KineticFamily):
        name = "bolus"
        models = ("gamma",)
        parameter_names = parameter_names("bolus")

    with pytest.raises(ValueError, match="already registered"):
        register_family(Copy())
    assert get_family("gamma").__class__.__name__ == "BolusFamily"


def _bolus_tic(times_s: np.ndarray) -> np.ndarray:
    return get_model("lognormal").curve(times_s, (0.5, 30.0, 2.0, 2.5, 0.5))


def test_the_bolus_family_fits_before_the_first_flash_and_reports_the_bolus_parameters():
    family = get_family("lognormal")
    assert family.supports_maps and family.flash_ends_curve
    times = np.arange(0.0, 60.0, 0.5)
    use = np.ones(times.size, dtype=bool)
    prepared = family.prepare(ClipFrames(times, use, ()))
    fit = family.fit("lognormal", prepared, _bolus_tic(times))
    assert isinstance(fit, Fit) and fit.status == STATUS_OK
    parameters = family.parameters("lognormal", fit)
    assert tuple(parameters) == parameter_names("bolus")
    # the noiseless curve: the analytic peak time t0 + exp(mu - sigma^2)
    assert parameters["TTP"] == pytest.approx(2.0 + np.exp(2.5 - 0.25), rel=1e-6)
    np.testing.assert_allclose(fit.curve(times), _bolus_tic(times), rtol=1e-6)
    flat = family.fit("lognormal", prepared, np.ones(times.size))
    assert flat.status in FIT_STATUSES and not flat.ok
    assert set(family.parameters("lognormal", flat).values()) == {None}


def test_the_replenishment_family_needs_a_flash_and_fits_each_segment():
    family = get_family("replenishment")
    assert not family.supports_maps and not family.flash_ends_curve
    times = np.arange(0.0, 40.0, 0.25)
    use = np.ones(times.size, dtype=bool)
    with pytest.raises(InputError, match="^clip.dcm: no flash found for --model replenishment"):
        family.prepare(ClipFrames(times, use, ()), "clip.dcm")
    prepared = family.prepare(ClipFrames(times, use, (40, 100)))
    tic = np.full(times.size, 0.1)
    for flash, beta in ((40, 0.4), (100, 0.8)):
        after = np.arange(flash + 1, min(flash + 60, times.size))
        tic[after] = 0.1 + 2.0 * -np.expm1(-beta * (times[after] - times[flash]))
    fit = family.fit("replenishment", prepared, tic)
    assert isinstance(fit, Fit) and fit.ok and fit.model == "replenishment"
    assert [segment.params["beta"] for segment in fit.segments] == pytest.approx([0.4, 0.8], rel=1e-6)
    parameters = family.parameters("replenishment", fit)
    assert tuple(parameters) == parameter_names("replenishment")
    assert parameters["mTT"] == pytest.approx(np.mean([1 / 0.4, 1 / 0.8]), rel=1e-6)
    assert parameters["rBV"] == pytest.approx(2.0, rel=1e-6)
