"""The textbook validation saved beside the table (what the Structures page shows)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from battgen import paths
from battgen.data.table import load_table, save_table
from battgen.data.validate import TEXTBOOK, VALIDATION_FILENAME, load_validation

SHIPPED = paths.asset_dir(paths.ELECTRODES)
REPO = SHIPPED.parents[1]


def test_validate_writes_what_it_printed_beside_the_table(tmp_path):
    table = load_table(SHIPPED)
    rows = table[table["id"].isin(["layered-O3_Co_O_x1_Li1", "layered-1T_Ti_S_x1_Li1"])]
    save_table(rows, tmp_path)
    assert load_validation(tmp_path) is None
    run = subprocess.run([sys.executable, "-m", "battgen", "data", "validate", "--no-compute", "--json",
                          "--table", str(tmp_path), "--cache", str(tmp_path / "cache")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr
    printed = pd.DataFrame(json.loads(run.stdout)["textbook"])
    saved, about = load_validation(tmp_path)
    assert list(saved["electrode"]) == [r.formula for r in TEXTBOOK]
    pd.testing.assert_frame_equal(saved, printed)
    assert about["computed"] == 2 and about["references"] == len(TEXTBOOK)
    licoo2 = saved[saved["electrode"] == "LiCoO2"].iloc[0]
    expected = rows.loc[rows["id"] == "layered-O3_Co_O_x1_Li1", "average_voltage"].iloc[0]
    assert licoo2["voltage_computed"] == pytest.approx(expected)
    errors = saved["voltage_error"].dropna().abs()
    assert about["median_abs_voltage_error_V"] == pytest.approx(errors.median())
    assert about["provenance"]["command"].endswith("--no-compute")
    assert about["provenance"]["relax_settings"]["optimizer"]
    assert not (tmp_path / "cache").exists()  # --no-compute relaxed nothing


def test_a_corrupt_validation_file_is_a_clear_error(tmp_path):
    (tmp_path / VALIDATION_FILENAME).write_text("{not json")
    with pytest.raises(ValueError, match="is not a validation result"):
        load_validation(tmp_path)
    (tmp_path / VALIDATION_FILENAME).write_text(json.dumps({"references": 3}))
    with pytest.raises(ValueError, match="is not a validation result"):
        load_validation(tmp_path)
