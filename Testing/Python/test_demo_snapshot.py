"""The demo study's outputs are value-for-value those of the recorded snapshot
(``Testing/Data/demo-snapshot.json``): a restructuring of the engine must not change a number, a
column, a scene node or a ``DCEUS.*`` attribute. When a change of output is intended, rewrite the
snapshot with ``python Testing/golden/demo_snapshot.py`` and say so in the commit."""
import decimal
import json
import math
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "golden"))
import demo_snapshot  # noqa: E402

pytest.importorskip("slicer")
pytest.importorskip("matplotlib")


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _last_digit(text) -> float:
    """One unit of the last digit of a number printed to 6 or more significant digits (a table cell
    rounded there may flip its last digit), else 1e-12."""
    if not isinstance(text, str):
        return 1e-12
    try:
        digits = decimal.Decimal(text).as_tuple()
    except decimal.InvalidOperation:
        return 1e-12
    if not isinstance(digits.exponent, int) or len(digits.digits) < 6:
        return 1e-12
    return 1.01 * 10.0 ** digits.exponent


def _differences(expected, actual, path="", out=None):
    """Paths where the two differ; floats (and numeric strings) within 1e-6 relative, or one unit of the
    last printed digit, count as equal.

    Not closer: numpy / scipy releases move the fits' last digits (2e-8 relative measured between the
    versions pip installed in two sessions), while any change of the engine's numbers is far larger."""
    out = [] if out is None else out
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            if key not in expected or key not in actual:
                out.append(f"{path}/{key}: {'missing' if key not in actual else 'unexpected'}")
            else:
                _differences(expected[key], actual[key], f"{path}/{key}", out)
    elif isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            out.append(f"{path}: {len(expected)} items expected, {len(actual)} found")
        for index, (e, a) in enumerate(zip(expected, actual)):
            _differences(e, a, f"{path}[{index}]", out)
    elif expected != actual:
        e, a = _number(expected), _number(actual)
        if e is None or a is None or not math.isclose(e, a, rel_tol=1e-6, abs_tol=_last_digit(expected)):
            out.append(f"{path}: expected {str(expected)[:80]!r}, found {str(actual)[:80]!r}")
    return out


def test_the_comparison_sees_a_changed_number():
    assert _differences({"a": [1.0, "2.5"]}, {"a": [1.0, "2.5000001"]}) == []
    assert _differences({"a": [1.0]}, {"a": [1.00001]}) == ["/a[0]: expected '1.0', found '1.00001'"]
    assert _differences(["0.000392104"], ["0.000392103"]) == []  # a rounded cell flipping its last digit
    assert _differences(["0.000392104"], ["0.000392102"]) != []
    assert _differences({"a": [1.0, "2.5"]}, {"a": [1.0, "2.6"]}) == ["/a[1]: expected '2.5', found '2.6'"]
    assert _differences({"a": 1}, {"b": 1}) == ["/a: missing", "/b: unexpected"]


def test_demo_outputs_equal_the_recorded_snapshot(demo_run):
    assert demo_run.returncode == 0, demo_run.stderr
    out = demo_run.out
    with open(demo_snapshot.SNAPSHOT_PATH, encoding="utf-8") as stream:
        expected = json.load(stream)
    differences = _differences(expected, demo_snapshot.snapshot(str(out)))
    assert not differences, f"{len(differences)} differences, first ones:\n" + "\n".join(differences[:20])
