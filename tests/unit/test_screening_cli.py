"""``battgen screen``: full compositions in JSON, many requests from a CSV, bad files refused early."""

from __future__ import annotations

import json

import numpy as np
import pytest

from battgen import paths
from battgen.cli import main as cli_main
from battgen.data.properties import PROPERTY_NAMES
from battgen.data.table import load_scaler, load_table
from battgen.screening.batch import read_requests
from battgen.screening.candidates import COMPOSITION_THRESHOLD, composition_dict
from tests.screening_root import build_screening_root

pytestmark = pytest.mark.usefixtures("one_torch_thread")
HEADER = "working_ion," + ",".join(PROPERTY_NAMES)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return build_screening_root(tmp_path_factory.mktemp("screening_cli"))


def write_csv(path, *rows, header=HEADER):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_json_lists_each_samples_full_composition(root, capsys):
    code = cli_main(["screen", "--root", str(root), "--ion", "Na", "--steps", "2", "--num-candidates", "2",
                     "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    for sample in result["samples"]:
        composition = sample["composition"]
        assert composition and all(isinstance(v, float) and v >= COMPOSITION_THRESHOLD for v in composition.values())
        assert list(composition.values()) == sorted(composition.values(), reverse=True)
        # Its total is the predicted atom count the table shows, up to the dropped tiny entries.
        assert sum(composition.values()) == pytest.approx(sample["predicted_atoms"], abs=112 * COMPOSITION_THRESHOLD)


def test_default_ranking_is_the_property_match_with_signed_differences(root, capsys):
    code = cli_main(["screen", "--root", str(root), "--ion", "Li", "--voltage", "3.2", "--steps", "2",
                     "--num-candidates", "1", "--json", "--top", "50"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["settings"]["rank_by"] == "property_match"
    match = [c["property_match"] for c in result["candidates"]]
    assert match == sorted(match, reverse=True)
    for candidate in result["candidates"]:
        assert candidate["delta_voltage"] == pytest.approx(candidate["average_voltage"] - 3.2)
    # Every Li electrode of the table is a candidate, not only those a noisy sample happened to land near.
    table = load_table(root / "assets" / "electrodes")
    assert len(result["candidates"]) == min(50, int((table["working_ion"] == "Li").sum()))


def test_requests_file_answers_every_row_in_one_process(root, tmp_path, capsys):
    csv = write_csv(tmp_path / "requests.csv", "Li,3.5,150,600,500,2000,0.05", "Mg,2.0,200,700,400,1500,0.1")
    code = cli_main(["screen", "--root", str(root), "--requests", str(csv), "--steps", "2", "--num-candidates",
                     "1", "--json", "--top", "2", "--no-progress"])
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["row"] for r in results] == [1, 2]
    assert [r["request"]["working_ion"] for r in results] == ["Li", "Mg"]
    assert results[1]["request"]["capacity_grav"] == 200.0
    assert {c["working_ion"] for c in results[1]["candidates"]} == {"Mg"}


@pytest.mark.parametrize("rows, header, message", [
    (["Li,3.5,150,600,500,2000,0.05", "Xx,2.8,120,400,300,1000,0.04"], HEADER, "row 2: unknown working ion 'Xx'"),
    (["Li,3.5,150"], "working_ion,average_voltage,capacity_grav", "lacks the column(s) capacity_vol"),
    (["Li,nan,150,600,500,2000,0.05"], HEADER, "row 1: average_voltage is missing or not a number"),
    (["Li,,150,600,500,2000,0.05"], HEADER, "row 1: average_voltage is missing"),
    (["Li,3.5,abc,600,500,2000,0.05"], HEADER, "row 1: capacity_grav is missing or not a number ('abc')"),
    (["Li,3.5,-150,600,500,2000,0.05"], HEADER, "row 1: Gravimetric capacity cannot be negative"),
    (["Li,3.5,150,600,500,2000,inf"], HEADER, "row 1: Max. volume change must be a finite number"),
    ([], HEADER, "has a header but no requests"),
])
def test_bad_request_files_name_the_row_before_any_model_loads(tmp_path, capsys, rows, header, message):
    csv = write_csv(tmp_path / "bad.csv", *rows, header=header)
    # An artifact root with the table but no screening model: the file is refused first.
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "electrodes").symlink_to(paths.asset_dir(paths.ELECTRODES, paths.REPO_ROOT))
    code = cli_main(["screen", "--root", str(tmp_path), "--requests", str(csv)])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "train screening" not in err


def test_unreadable_and_oversized_request_files(tmp_path):
    table, scaler = load_table(), load_scaler()
    with pytest.raises(ValueError, match="not a readable CSV"):
        read_requests(b"\xff\xfe\x00garbage\x00", table, scaler)
    with pytest.raises(ValueError, match="cannot read the request file"):
        read_requests(tmp_path / "absent.csv", table, scaler)
    with pytest.raises(ValueError, match="at most 10 MB"):
        read_requests(b"x" * (10 * 1024 * 1024 + 1), table, scaler)


def test_a_request_file_and_property_flags_do_not_mix(tmp_path, capsys):
    csv = write_csv(tmp_path / "r.csv", "Li,3.5,150,600,500,2000,0.05")
    assert cli_main(["screen", "--requests", str(csv), "--voltage", "3"]) == 2
    assert "either a file or one request" in capsys.readouterr().err


def test_composition_dict_orders_and_thresholds():
    vector = np.zeros(112)
    vector[[2, 7, 25]] = [1.0, 2.0, 0.001]  # Li, O, Fe below the threshold
    assert composition_dict(vector) == {"O": 2.0, "Li": 1.0}
