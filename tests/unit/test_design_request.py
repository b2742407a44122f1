"""Design requests: what is accepted, and the one-line refusals of the CLI (exit 2)."""

from __future__ import annotations

import pytest

from battgen.cli import main
from battgen.data.table import load_scaler, load_table
from battgen.design.request import build_request


@pytest.fixture(scope="module")
def table_and_scaler():
    return load_table(), load_scaler()


def test_targets_are_only_what_was_given(table_and_scaler):
    table, scaler = table_and_scaler
    request = build_request(table, scaler, "Li", {"average_voltage": 3.5, "capacity_grav": 150, "energy_vol": None})
    assert request.targets == {"average_voltage": 3.5, "capacity_grav": 150.0}
    assert set(request.properties) == set(scaler.names)
    assert request.properties["average_voltage"] == 3.5
    assert request.max_candidates == 2 and request.arms == ("guided-prerelaxed",)
    assert type(request).from_dict(request.as_dict()) == request


@pytest.mark.parametrize("given, kw, message", [
    ({"average_voltage": 9.0}, {}, "outside the electrode table's range"),
    ({"capacity_grav": 5.0}, {}, "outside the electrode table's range"),
    ({"average_voltage": 3.0}, {"max_candidates": 0}, "budget is zero"),
    ({"average_voltage": 3.0}, {"proposals": 0}, "proposal budget is zero"),
    ({"average_voltage": 3.0}, {"arms": ("random",)}, "unknown design arms"),
])
def test_bad_requests_are_refused(table_and_scaler, given, kw, message):
    table, scaler = table_and_scaler
    with pytest.raises(ValueError, match=message):
        build_request(table, scaler, "Li", given, **kw)


def test_ion_without_framework_is_refused(table_and_scaler):
    table, scaler = table_and_scaler
    with pytest.raises(ValueError, match="unknown working ion"):
        build_request(table, scaler, "Fe", {})
    only_trivalent = table[table["working_ion"].isin(["Al", "Y"])]
    with pytest.raises(ValueError, match="no framework in the electrode table can host Li"):
        build_request(only_trivalent, scaler, "Li", {})


@pytest.mark.parametrize("argv, message", [
    (["--ion", "Li", "--voltage", "9", "--capacity-grav", "150"], "outside the electrode table's range"),
    (["--ion", "Li", "--voltage", "3.5", "--max-candidates", "0"], "budget is zero"),
    (["--ion", "Fe", "--voltage", "3.5"], "unknown working ion"),
])
def test_cli_refuses_with_one_line_and_exit_2(argv, message, capsys, tmp_path):
    code = main(["design", *argv, "--db", str(tmp_path / "d.sqlite"), "--json"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "--" not in lines[0]  # library messages never name CLI flags
