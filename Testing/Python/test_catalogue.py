"""The parameter catalogue: one entry per reported quantity, with a unit, a UCUM unit, DICOM codes
that exist in the standard's dictionaries, and the values every output takes from it."""
import ast
import pathlib
import re

import numpy as np
import pytest

from DCEUSResponseLib import catalogue
from DCEUSResponseLib.catalogue import CATALOGUE, FAMILY_PARAMETERS, colour_map, parameter_info, parameter_names, unit
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.kinetics.parameters import PARAMETER_NAMES, bolus_parameters
from DCEUSResponseLib.kinetics.registry import families
from DCEUSResponseLib.kinetics.replenishment import (
    REPLENISHMENT_PARAMETER_NAMES,
    ReplenishmentFit,
    replenishment_parameters,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_every_parameter_a_family_reports_has_an_entry_with_unit_and_ucum_unit():
    reported = {name for family in families() for name in family.parameter_names}
    # what the fits really return, not only what the families declare
    reported |= set(bolus_parameters("lognormal", (1.0, 10.0, 2.0, 2.0, 0.5), 90.0))
    reported |= set(replenishment_parameters(ReplenishmentFit("monoexponential", "ok", params={"O": 0.1, "A": 1.0,
                                                                                                "beta": 0.5},
                                                              qof=95.0, t_flash_s=1.0)))
    assert reported <= set(CATALOGUE)
    for name in reported:
        info = CATALOGUE[name]
        assert info.ucum, name
        assert info.description, name
        assert info.colour_map is not None, name  # every kinetic quantity can be mapped and previewed
    for name in CATALOGUE:
        assert CATALOGUE[name].families, f"{name} belongs to no family"


def test_names_are_unique_and_each_family_lists_names_once():
    names = [info.name for info in catalogue._ENTRIES]
    assert len(names) == len(set(names)) == len(CATALOGUE)
    for family, members in FAMILY_PARAMETERS.items():
        assert len(members) == len(set(members)), family
        assert set(members) <= set(CATALOGUE), family


def test_the_contract_units_and_colour_maps():
    """The quantification contract's units, and the preview colour maps the outputs always had."""
    assert [unit(n) for n in PARAMETER_NAMES] == ["a.u.", "s", "a.u./s", "a.u./s", "s", "s", "s", "s", "s",
                                                  "a.u.*s", "a.u.*s", "a.u.*s", "a.u.", "a.u.*s", "%"]
    assert [unit(n) for n in REPLENISHMENT_PARAMETER_NAMES] == ["a.u.", "s", "a.u./s", "a.u./s", "a.u./s", "%"]
    assert {n: colour_map(n) for n in PARAMETER_NAMES} == {
        "PE": "magma", "WiR": "magma", "WoR": "magma_r", "WiAUC": "magma", "WoAUC": "magma", "WiWoAUC": "magma",
        "WiPI": "magma", "AUC": "magma", "TTP": "viridis", "TI": "viridis", "TO": "viridis", "RT": "viridis",
        "FT": "viridis", "mTTl": "viridis", "QOF": "cividis"}
    assert parameter_info("WiR").families == ("bolus", "replenishment")
    assert parameter_info("SUVmax").families == ("pet",) and parameter_info("HU_mean").families == ("ct",)


def test_one_ucum_unit_per_unit_shown():
    ucum_of = {}
    for info in CATALOGUE.values():
        ucum_of.setdefault(info.unit, set()).add(info.ucum)
    assert all(len(ucum) == 1 for ucum in ucum_of.values()), ucum_of
    assert {shown: ucum.pop() for shown, ucum in ucum_of.items()} == {
        "a.u.": "[arb'U]", "s": "s", "a.u./s": "[arb'U]/s", "a.u.*s": "[arb'U].s", "%": "%",
        "g/ml": "g/ml{SUVbw}", "": "{ratio}", "HU": "[hnsf'U]"}


def test_dicom_codes_exist_with_their_meanings_in_pydicom_s_dictionaries():
    pydicom_codes = pytest.importorskip("pydicom.sr.codedict").codes
    from pydicom.sr._cid_dict import cid_concepts

    in_cid = {}
    for cid in (4108, 4109, 7180):
        for keyword_list in cid_concepts[cid].values():
            for keyword in keyword_list:
                code = getattr(getattr(pydicom_codes, f"cid{cid}"), keyword)
                in_cid[(code.value, code.scheme_designator)] = (code.meaning, cid)
    units = {getattr(pydicom_codes.cid7181, k).value for k in pydicom_codes.cid7181.dir()}
    coded = 0
    for info in CATALOGUE.values():
        # a unit of CID 7181, or a product / quotient of them (UCUM's "." and "/")
        atoms = [atom for atom in re.split(r"[./]", info.ucum) if atom]
        assert info.ucum in units or all(atom in units for atom in atoms), info.name
        if info.quantity_code is not None:
            coded += 1
            code = info.quantity_code
            assert (code.value, code.scheme) in in_cid, info.name
            assert in_cid[(code.value, code.scheme)][0] == code.meaning, info.name
        if info.derivation_code is not None:
            code = info.derivation_code
            keyword = "".join(word[0].upper() + word[1:] for word in code.meaning.split())
            found = getattr(getattr(pydicom_codes, code.scheme), keyword)
            assert (found.value, found.meaning) == (code.value, code.meaning), info.name
    assert coded >= 10
    assert parameter_info("TTP").quantity_code.value == "113069"  # DCM Time To Peak
    assert parameter_info("WiR").quantity_code.meaning == "Maximum Slope"
    assert parameter_info("mTTl").quantity_code is None  # not the mean transit time


def test_unknown_names_and_families_are_input_errors():
    with pytest.raises(InputError, match="unknown parameter 'XYZ'.*PE, TTP"):
        parameter_info("XYZ")
    with pytest.raises(InputError, match="unknown parameter family 'mri'"):
        parameter_names("mri")
    with pytest.raises(InputError, match="TLR has no preview colour map"):
        colour_map("TLR")
    assert parameter_names("bolus", "replenishment") == PARAMETER_NAMES + ("rBV", "mTT", "rBF", "PI")


def test_outputs_take_units_and_colours_from_the_catalogue():
    """No module keeps its own table of units or colour maps: the map files, the scene's tables and
    map volumes, the response rules and the Slicer module only look them up."""
    copies = []
    for path in [*(ROOT / "DCEUSResponseLib").rglob("*.py"), ROOT / "DCEUSResponse" / "DCEUSResponse.py"]:
        if path.name == "catalogue.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict) and len(node.keys) >= 3:
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                if len(keys & set(CATALOGUE)) >= 3:
                    copies.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Tuple) and len(node.elts) >= 5:
                items = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                if len(items & set(CATALOGUE)) >= 5:
                    copies.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not copies, f"tables of parameter names outside catalogue.py: {copies}"


def test_map_files_carry_the_catalogue_s_units_and_colours(tmp_path):
    """The NRRD header's unit and the PNG preview's colour bar (reversed magma for WoR) are the
    catalogue's."""
    nrrd = pytest.importorskip("nrrd")
    pytest.importorskip("matplotlib")
    image_module = pytest.importorskip("PIL.Image")

    from DCEUSResponseLib.ceus.maps import STATUS_NOT_MAPPED, ParametricMaps
    from DCEUSResponseLib.export.map_files import map_writers, sample_colour_map

    values = {name: np.linspace(0.0, 1.0, 12, dtype=np.float32).reshape(3, 4) for name in PARAMETER_NAMES}
    maps = ParametricMaps(values=values, status=np.full((3, 4), STATUS_NOT_MAPPED, dtype=np.uint8),
                          model="lognormal", binning=1, spacing_mm=(0.5, 0.5), origin_px=(0.0, 0.0))
    writers = dict(map_writers(maps))
    for name in ("WoR", "TTP"):
        writers[f"maps/{name}.nrrd"](str(tmp_path / f"{name}.nrrd"))
        assert nrrd.read_header(str(tmp_path / f"{name}.nrrd"))["DCEUS_unit"] == unit(name)
        writers[f"maps/png/{name}.png"](str(tmp_path / f"{name}.png"))
        pixels = np.asarray(image_module.open(tmp_path / f"{name}.png").convert("RGB")).reshape(-1, 3)
        table = sample_colour_map(colour_map(name))
        for end in (table[0], table[-1]):  # the bar's ends
            assert (pixels == end).all(axis=1).any(), name
    assert colour_map("WoR") == "magma_r" and colour_map("TTP") == "viridis"
