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
    assert parameter_info("SUVmax").families == ("pet", "pet3d") and parameter_info("HU_mean").families == ("ct",)
    assert parameter_names("pet3d") == ("SUVmax", "SUVmean", "SUVpeak", "volume_ml", "TLU", "distance_mm")


def test_one_ucum_unit_per_unit_shown():
    ucum_of = {}
    for info in CATALOGUE.values():
        ucum_of.setdefault(info.unit, set()).add(info.ucum)
    assert all(len(ucum) == 1 for ucum in ucum_of.values()), ucum_of
    assert {shown: ucum.pop() for shown, ucum in ucum_of.items()} == {
        "a.u.": "[arb'U]", "s": "s", "a.u./s": "[arb'U]/s", "a.u.*s": "[arb'U].s", "%": "%",
        "g/ml": "g/ml{SUVbw}", "": "{ratio}", "HU": "[hnsf'U]", "voxels": "{voxels}", "ml": "ml",
        "g": "g{SUVbw}", "mm": "mm"}


def test_dicom_codes_exist_with_their_meanings_in_pydicom_s_dictionaries():
    """Standard codes: kinetic quantities from CID 4108 / 4109 / 7180, the PET / CT measures from the
    DCM or SCT dictionary, each with pydicom's meaning; the others are codes of the private scheme."""
    pydicom_codes = pytest.importorskip("pydicom.sr.codedict").codes
    from pydicom.sr._cid_dict import cid_concepts

    in_cid = {}
    for cid in (4108, 4109, 7180):
        for keyword_list in cid_concepts[cid].values():
            for keyword in keyword_list:
                code = getattr(getattr(pydicom_codes, f"cid{cid}"), keyword)
                in_cid[(code.value, code.scheme_designator)] = (code.meaning, cid)
    in_scheme = {}
    for scheme in ("DCM", "SCT"):
        for keyword in getattr(pydicom_codes, scheme).dir():
            code = getattr(getattr(pydicom_codes, scheme), keyword)
            in_scheme.setdefault((code.value, scheme), set()).add(code.meaning)
    units = {getattr(pydicom_codes.cid7181, k).value for k in pydicom_codes.cid7181.dir()}
    kinetic = set(parameter_names("bolus", "replenishment"))
    standard = 0
    for info in CATALOGUE.values():
        # a unit of CID 7181, a product / quotient of them (UCUM's "." and "/"), annotations {..} aside;
        # ml and g (UCUM's litre and gram) are not in CID 7181
        atoms = [atom for atom in re.split(r"[./]", re.sub(r"\{[^}]*\}", "", info.ucum)) if atom]
        assert info.ucum in units or all(atom in units | {"ml", "g"} for atom in atoms), info.name
        code = info.quantity_code
        assert code is not None, info.name  # every reported quantity can be written to DICOM
        if code.scheme == catalogue.PRIVATE_SCHEME:
            assert re.fullmatch(r"DCEUS\d{4}", code.value), info.name
            continue
        standard += 1
        if info.name in kinetic:
            assert (code.value, code.scheme) in in_cid, info.name
            assert in_cid[(code.value, code.scheme)][0] == code.meaning, info.name
        assert code.meaning in in_scheme.get((code.value, code.scheme), ()), info.name
        if info.derivation_code is not None:
            code = info.derivation_code
            keyword = "".join(word[0].upper() + word[1:] for word in code.meaning.split())
            found = getattr(getattr(pydicom_codes, code.scheme), keyword)
            assert (found.value, found.meaning) == (code.value, code.meaning), info.name
    assert standard >= 13
    assert parameter_info("TTP").quantity_code.value == "113069"  # DCM Time To Peak
    assert parameter_info("WiR").quantity_code.meaning == "Maximum Slope"
    assert parameter_info("mTTl").quantity_code.scheme == "99DCEUS"  # not the mean transit time


def _all_codes():
    """Every Code the catalogue module defines (quantities, derivations, methods, status, roles ...)."""
    found = []
    for info in CATALOGUE.values():
        found += [c for c in (info.quantity_code, info.derivation_code) if c is not None]
    for value in vars(catalogue).values():
        if isinstance(value, catalogue.Code):
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                found += [c for c in (item if isinstance(item, tuple) and not isinstance(item, catalogue.Code)
                                      else (item,)) if isinstance(c, catalogue.Code)]
    return found


def test_private_codes_are_unique_and_are_the_contract_s():
    """One meaning per private code, and the contract's table of parameter codes is the catalogue's."""
    meanings = {}
    for code in _all_codes():
        if code.scheme == catalogue.PRIVATE_SCHEME:
            assert meanings.setdefault(code.value, code.meaning) == code.meaning, code
    # DCEUS0004-0015, 0020, 0030-0031, 0040-0043, 0050, 0060-0063, 0070 (the contract)
    assert len(meanings) == 25 and "DCEUS0015" in meanings and "DCEUS0070" in meanings
    text = (ROOT / "docs" / "quantification-contract.md").read_text(encoding="utf-8")
    table = text[text.index("### Parameter codes"):text.index("**Private coding scheme**")]
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in CATALOGUE:
            rows[cells[0]] = (cells[1], cells[2].split()[0], cells[3], cells[4])
    assert set(rows) == set(parameter_names("bolus", "replenishment"))
    for name, row in rows.items():
        info = CATALOGUE[name]
        assert row == (*info.quantity_code, info.ucum), name


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

    from DCEUSResponseLib.ceus.maps import ParametricMaps
    from DCEUSResponseLib.ceus.pixel_fits import STATUS_NOT_MAPPED
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
