"""Materials Project fetch, offline: real emmet-core documents built from our own entries stand in
for MP's, and only the network call (the ``search`` function) is replaced."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from battgen.data.composition import composition_vector
from battgen.data.properties import PROPERTY_NAMES
from battgen.data.table import COLUMNS, load_table, row_structure

SENTINEL_KEY = "SENTINELkey0123456789abcdefABCDE"  # 32 characters, like a real MP key
ION_ENERGY = -1.9  # eV/atom for both metals; made up but of the right size


def _bundled(name: str):
    import pymatgen.util
    from pymatgen.core import Structure

    folder = os.path.join(os.path.dirname(pymatgen.util.__file__), "structures")
    return Structure.from_file(os.path.join(folder, name))


def _doc(discharged, ion: str, voltage: float, host_energy_per_fu: float, ids: tuple[str, str],
         strip: bool = False):
    """A real ``InsertionElectrodeDoc`` whose average voltage is ``voltage`` by construction."""
    from emmet.core.electrode import InsertionElectrodeDoc
    from pymatgen.apps.battery.insertion_battery import InsertionElectrode
    from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

    charged = discharged.copy()
    charged.remove_species([ion])
    charged.scale_lattice(discharged.volume * 0.95)
    n = discharged.composition[ion]  # one ion per formula unit in every host used here
    e_charged = host_energy_per_fu * n
    e_discharged = e_charged + n * (ION_ENERGY - voltage)
    entries = [
        ComputedStructureEntry(discharged, e_discharged,
                               data={"material_id": ids[0], "decomposition_energy": 0.0}),
        ComputedStructureEntry(charged, e_charged,
                               data={"material_id": ids[1], "decomposition_energy": 0.042}),
    ]
    ion_entry = ComputedEntry(ion, ION_ENERGY, data={"material_id": f"{ion}-metal"})
    doc = InsertionElectrodeDoc.from_entries(entries, ion_entry)
    if strip:  # what a document whose electrode lost its structures looks like
        doc = doc.model_copy(update={"electrode_object": InsertionElectrode.from_entries(
            entries, ion_entry, strip_structures=True)})
    return doc


@pytest.fixture(scope="module")
def docs():
    from pymatgen.core import Lattice, Structure

    licoo2 = Structure.from_spacegroup("R-3m", Lattice.hexagonal(2.82, 14.05), ["Li", "Co", "O"],
                                       [[0, 0, 0.5], [0, 0, 0], [0, 0, 0.2395]])
    return {
        "Li": [_doc(licoo2, "Li", 3.9, -19.0, ("mp-22526", "mp-1234")),
               _doc(_bundled("LiFePO4.json"), "Li", 3.45, -40.0, ("mp-19017", "mp-20361"))],
        "Na": [_doc(_bundled("NaFePO4.json"), "Na", 2.9, -40.0, ("mp-19419", "mp-20362")),
               _doc(_bundled("NaFePO4.json"), "Na", 2.9, -40.0, ("mp-777", "mp-778"), strip=True)],
    }


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("MP_API_KEY", SENTINEL_KEY)
    return SENTINEL_KEY


def _searcher(docs):
    return lambda ion: list(docs.get(ion, []))


def _mp_error(text: str):
    from mp_api.client.core.exceptions import MPRestError

    return MPRestError(text)


def test_doc_becomes_a_row_with_mps_own_numbers(docs):
    from battgen.data.mp_fetch import mp_doc_to_row

    doc = docs["Li"][0]
    row = mp_doc_to_row(doc)
    assert set(row) == set(COLUMNS)
    assert row["source"] == "mp" and row["working_ion"] == "Li"
    assert row["id"] == "mp-1234_Li"  # emmet's mp-aaaaabvm_Li, shown as on MP's website
    assert json.loads(row["provenance"])["battery_id"] == doc.battery_id
    for name in PROPERTY_NAMES:
        assert row[name] == pytest.approx(getattr(doc, name))
    assert row["average_voltage"] == pytest.approx(3.9)
    assert row["stability_discharge"] == 0.0 and row["stability_charge"] == pytest.approx(0.042)
    assert (row["formula_discharge"], row["formula_charge"], row["framework_formula"]) == \
        ("LiCoO2", "CoO2", "CoO2")
    assert row["structure_type"] == "R-3m"
    discharged = doc.electrode_object.fully_discharged_entry.structure
    assert row_structure(row, "discharge") == discharged
    assert row_structure(row, "charge") == doc.electrode_object.fully_charged_entry.structure
    assert np.array_equal(row["composition"], composition_vector(discharged))
    assert row["composition"][2] == 3 and row["composition"][26] == 3  # Li3Co3O6 cell


def test_document_shaped_like_mp_apis_reply_converts_the_same(docs):
    # mp-api hands back a dynamic model holding only the requested fields, built from JSON.
    from emmet.core.electrode import InsertionElectrodeDoc
    from mp_api.client.core.schemas import _convert_to_model

    from battgen.data.mp_fetch import MP_FIELDS, mp_doc_to_row

    doc = docs["Li"][1]
    raw = json.loads(doc.model_dump_json())
    reply = _convert_to_model([{k: raw[k] for k in MP_FIELDS if k in raw}],
                              InsertionElectrodeDoc, requested_fields=list(MP_FIELDS))[0]
    row, direct = mp_doc_to_row(reply), mp_doc_to_row(doc)
    assert row["id"] == direct["id"] == "mp-19017_Li"
    for name in (*PROPERTY_NAMES, "formula_discharge", "structure_discharge", "structure_charge"):
        assert row[name] == direct[name]


def test_documents_without_structures_are_rejected_with_the_reason(docs):
    from battgen.data.mp_fetch import docs_to_table

    df, rejected = docs_to_table(docs["Li"] + docs["Na"] + docs["Li"][:1])
    assert len(df) == 3 and set(df["split"]) <= {"train", "val", "test"}
    assert [r["id"] for r in rejected] == ["mp-777_Na", "mp-1234_Li"]
    assert "no structures" in rejected[0]["reason"] and "duplicate" in rejected[1]["reason"]


def test_fetch_writes_a_loadable_table_metadata_and_rejections(docs, key, tmp_path):
    from battgen.artifacts import read_metadata, read_metrics
    from battgen.data.mp_fetch import fetch_mp

    path = fetch_mp(tmp_path, ions=("Li", "Na", "K"), progress=False, search=_searcher(docs))
    table = load_table(tmp_path)
    assert path == tmp_path / "electrodes.parquet"
    assert len(table) == 3 and set(table["source"]) == {"mp"}
    assert sorted(table["working_ion"]) == ["Li", "Li", "Na"]
    rejected = pd.read_csv(tmp_path / "rejected.csv")
    assert len(rejected) == 1 and "no structures" in rejected["reason"][0]
    meta, metrics = read_metadata(tmp_path), read_metrics(tmp_path)
    assert meta["command"] == "python -m battgen data fetch-mp"
    assert meta["config"]["ions"] == ["Li", "Na", "K"]
    assert metrics["documents"] == {"fetched": 4, "fetched_per_ion": {"Li": 2, "Na": 2, "K": 0},
                                    "rejected": 1, "kept": 3}
    assert metrics["per_source"] == {"mp": 3}
    for file in tmp_path.iterdir():
        assert SENTINEL_KEY.encode() not in file.read_bytes(), file.name


def test_missing_key_is_one_clear_line_and_exit_code_2(monkeypatch, tmp_path, capsys):
    from battgen.cli import main
    from battgen.data.mp_fetch import fetch_mp

    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(ValueError, match="MP_API_KEY environment variable"):
        fetch_mp(tmp_path, progress=False, search=_searcher({}))
    assert main(["data", "fetch-mp", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "MP_API_KEY" in err
    assert not (tmp_path / "electrodes.parquet").exists()


def test_rejected_key_is_reported_without_echoing_it(key, monkeypatch, tmp_path, capsys):
    import battgen.data.mp_fetch as mp_fetch
    from battgen.cli import main

    calls = []

    def refuse(ion):  # a server that echoes the key back in its error
        calls.append(ion)
        raise _mp_error(f"REST query returned with error status code 401 on URL "
                        f"https://api.materialsproject.org/x?k={key} with message:\nbad key {key}")

    with pytest.raises(ValueError, match="rejected the API key") as info:
        mp_fetch.fetch_mp(tmp_path, progress=False, search=refuse, sleep=lambda s: None)
    assert key not in str(info.value) and len(calls) == 1  # no retry on a bad key
    monkeypatch.setattr(mp_fetch, "mp_searcher", lambda api_key: refuse)
    assert main(["data", "fetch-mp", "--out", str(tmp_path), "--no-progress"]) == 2
    out = capsys.readouterr()
    assert "rejected the API key" in out.err and key not in out.err + out.out
    assert not any(key.encode() in f.read_bytes() for f in tmp_path.rglob("*") if f.is_file())


def test_rate_limit_backs_off_exponentially_then_succeeds(docs, key, tmp_path):
    from battgen.data.mp_fetch import fetch_mp

    failures, sleeps = iter(["429", "502"]), []

    def flaky(ion):
        status = next(failures, None)
        if status:
            raise _mp_error(f"REST query returned with error status code {status} on URL x")
        return list(docs[ion])

    fetch_mp(tmp_path, ions=("Li",), progress=False, search=flaky, sleep=sleeps.append)
    assert sleeps == [2.0, 4.0]
    assert len(load_table(tmp_path)) == 2


def test_gives_up_after_bounded_attempts_with_a_clear_error(key, tmp_path):
    import requests

    from battgen.data.mp_fetch import call_with_retries

    calls, sleeps = [], []

    def limited():
        calls.append(1)
        raise _mp_error("HTTPSConnectionPool: Max retries exceeded (Caused by "
                        "ResponseError('too many 429 error responses'))")

    with pytest.raises(ValueError, match=r"rate-limiting .*HTTP 429.* after 3 attempts"):
        call_with_retries(limited, api_key=key, attempts=3, sleep=sleeps.append)
    assert len(calls) == 3 and sleeps == [2.0, 4.0]

    def offline():
        raise requests.ConnectionError(f"Failed to resolve 'api.materialsproject.org' {key}")

    with pytest.raises(ValueError, match="cannot reach Materials Project after 2 attempts") as info:
        call_with_retries(offline, api_key=key, attempts=2, sleep=lambda s: None)
    assert key not in str(info.value)

    def bad_query():
        calls.append(1)
        raise _mp_error("REST query returned with error status code 400 on URL x")

    calls.clear()
    with pytest.raises(ValueError, match="query failed"):
        call_with_retries(bad_query, api_key=key, sleep=sleeps.append)
    assert len(calls) == 1  # a malformed query is not worth retrying
