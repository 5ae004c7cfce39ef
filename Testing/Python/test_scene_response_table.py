"""The response of a follow-up as a Slicer table (scene/tables.add_response_table), on a real MRML scene."""

import pytest

pytest.importorskip("slicer")

from DCEUSResponseLib.kinetics.parameters import PARAMETER_NAMES  # noqa: E402
from DCEUSResponseLib.longitudinal.response import ResponseRule, compare_results  # noqa: E402
from DCEUSResponseLib.scene.application import create_headless_application  # noqa: E402
from DCEUSResponseLib.scene.tables import add_response_table  # noqa: E402


def _results(lesion_wiwoauc: float, liver_wiwoauc: float, lesion_pe: float) -> dict:
    def roi(wiwoauc, pe):
        parameters = {p: 1.0 for p in PARAMETER_NAMES}
        parameters.update(WiWoAUC=wiwoauc, PE=pe)
        return {"status": "ok", "reason": None, "parameters": parameters,
                "relative": {p: parameters[p] / ({"WiWoAUC": liver_wiwoauc}.get(p, 1.0)) for p in PARAMETER_NAMES}}
    return {"rois": {"lesion": roi(lesion_wiwoauc, lesion_pe), "liver": roi(liver_wiwoauc, 1.0)}, "reference": "liver"}


def _column(table_node, title):
    return table_node.GetTable().GetColumnByName(title)


def test_the_response_table_shows_each_roi_its_class_and_changes():
    # lesion WiWoAUC 10 -> 4 with the liver 5 -> 5: relative change -60 %; PE 2 -> 3: +50 %
    response = compare_results(_results(10.0, 5.0, 2.0), _results(4.0, 5.0, 3.0), ResponseRule.parse("lassau2014"))
    with create_headless_application() as app:
        table = add_response_table(app.scene, response)
        assert table.GetNumberOfRows() == 2
        assert [_column(table, "ROI").GetValue(k) for k in range(2)] == ["lesion", "liver"]
        assert [_column(table, "Classification").GetValue(k) for k in range(2)] == ["responder", "not-evaluable"]
        titles = [table.GetTable().GetColumnName(k) for k in range(table.GetNumberOfColumns())]
        # the rule's change first, then PE, WiWoAUC (absolute, as the relative one is already there), mTTl
        assert titles == ["ROI", "Classification", "WiWoAUC rel. change", "PE rel. change", "PE change",
                          "WiWoAUC change", "mTTl rel. change", "mTTl change", "Reason"]
        assert _column(table, "WiWoAUC rel. change").GetValue(0) == pytest.approx(-60.0)
        assert _column(table, "PE change").GetValue(0) == pytest.approx(50.0)
        assert _column(table, "PE rel. change").GetValue(1) == pytest.approx(0.0)  # the liver against itself
        assert table.GetColumnUnitLabel("PE change") == "%"
        assert table.GetAttribute("DCEUSResponse.rule") == response["rule_definition"]
        assert "WiWoAUC changed by -60.0 %" in _column(table, "Reason").GetValue(0)

        # refilled in place with another rule: same node, new columns
        again = compare_results(_results(10.0, 5.0, 2.0), _results(4.0, 5.0, 3.0), ResponseRule.parse("absolute:PE:-30"))
        assert add_response_table(app.scene, again, table) is table
        assert table.GetTable().GetColumnName(2) == "PE change"
        assert [_column(table, "Classification").GetValue(k) for k in range(2)] == ["non-responder", "not-evaluable"]
        assert table.GetNumberOfColumns() == len(titles)
