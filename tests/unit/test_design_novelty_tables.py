"""A design can be asked to be novel against a fetched Materials Project table as well as ours."""

from __future__ import annotations

import pytest

from battgen import paths
from battgen.data.table import load_scaler, load_table, row_structure
from battgen.design.novelty import NoveltyChecker
from battgen.design.request import DesignRequest, build_request
from tests.unit.test_mp_fetch import _searcher, docs  # noqa: F401 (a fixture)

TABLE_DIR = paths.asset_dir(paths.ELECTRODES)


@pytest.fixture(scope="module")
def mp_dir(tmp_path_factory, docs):  # noqa: F811
    from battgen.data.mp_fetch import fetch_mp

    out = tmp_path_factory.mktemp("mp")
    fetch_mp(out, ions=("Li", "Na"), progress=False, search=_searcher(docs), api_key="TESTkey-not-a-real-one")
    return out


def test_a_structure_only_the_mp_table_holds_is_novel_against_ours_alone(mp_dir):
    mp = load_table(mp_dir)
    row = mp.iloc[0]
    structure = row_structure(row, "discharge")
    ours = load_table(TABLE_DIR)
    # Our table without that formula, so the test holds whatever our table contains.
    ours = ours[(ours["formula_discharge"] != row["formula_discharge"])
                & (ours["formula_charge"] != row["formula_discharge"])]
    assert NoveltyChecker.for_tables(ours).is_novel(structure)
    assert not NoveltyChecker.for_tables(ours, mp_dir).is_novel(structure)
    assert not NoveltyChecker.for_tables(mp_dir).is_novel(structure)
    # Merging must not change the cached per-directory lookups.
    assert NoveltyChecker.for_table(str(mp_dir)).match(structure)


def test_a_request_carries_its_novelty_tables_through_storage(mp_dir):
    table, scaler = load_table(TABLE_DIR), load_scaler(TABLE_DIR)
    request = build_request(table, scaler, "Li", {"average_voltage": 3.5}, novelty_tables=(str(mp_dir),))
    assert request.novelty_tables == (str(mp_dir),)
    again = DesignRequest.from_dict(request.as_dict())
    assert again.novelty_tables == (str(mp_dir),)
    assert build_request(table, scaler, "Li", {"average_voltage": 3.5}).novelty_tables == ()


def test_an_unreadable_novelty_table_is_one_clear_error(tmp_path):
    table, scaler = load_table(TABLE_DIR), load_scaler(TABLE_DIR)
    with pytest.raises(ValueError, match="table to check novelty against"):
        build_request(table, scaler, "Li", {"average_voltage": 3.5}, novelty_tables=(str(tmp_path / "none"),))
