"""The electrode table: one row per insertion electrode, the same columns whatever the source.

On disk it is one Parquet file (zstd); structures are pymatgen JSON strings, the composition
vector a list of 112 floats, and ``electrode`` the JSON of pymatgen's ``InsertionElectrode`` with
structures stripped (the voltage profile is drawn from it). A ``ranges.json`` beside the table
stores the min/max of the six properties, the scaling every model uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from battgen import atomic, paths
from battgen.data.composition import N_ELEMENTS, composition_vector
from battgen.data.properties import PROPERTY_NAMES, WORKING_IONS, PropertyScaler

SHIPPED_DIR = paths.REPO_ROOT / paths.ASSETS / paths.ELECTRODES
TABLE_FILENAME = "electrodes.parquet"
RANGES_FILENAME = "ranges.json"

SOURCES = ("computed", "mp")
# Columns added after tables were first shipped: a table written without them (an older build,
# an earlier MP fetch) still loads, with them empty, until ``battgen data stability`` fills them.
LATER_COLUMNS = {"competing_phases_discharge": "Int64", "competing_phases_charge": "Int64"}
STATES = ("discharge", "charge")

# Column → meaning. The order is the order on disk and in exports.
COLUMNS: dict[str, str] = {
    "id": "unique id: MP battery id (e.g. mp-1234_Li) or the builder's candidate key",
    "source": "computed (BattGen's CHGNet builder) or mp (Materials Project)",
    "working_ion": "one of " + ", ".join(WORKING_IONS),
    "formula_discharge": "reduced formula of the fully discharged (ion-rich) phase",
    "formula_charge": "reduced formula of the fully charged (ion-poor) phase",
    "framework_formula": "reduced formula of the host without the working ion",
    "structure_type": "host structure type (builder template or MP's space group symbol)",
    "spacegroup_discharge": "space group symbol of the discharged structure (symprec 0.1 Å)",
    "nsites_discharge": "atoms in the discharged cell",
    **{name: "" for name in PROPERTY_NAMES},
    "energy_per_atom_discharge": "eV/atom of the discharged structure (CHGNet or MP)",
    "energy_per_atom_charge": "eV/atom of the charged structure",
    "ion_energy_per_atom": "eV/atom of the working-ion metal reference",
    "stability_discharge": "energy above hull of the discharged phase (eV/atom): MP's own for mp "
                           "rows, the offline hull (battgen.data.stability) for computed rows",
    "stability_charge": "energy above hull of the charged phase (eV/atom), as stability_discharge",
    "competing_phases_discharge": "compounds of other formulas in the discharged phase's chemical "
                                  "system on that hull (0: E_hull 0 by default, not by merit)",
    "competing_phases_charge": "the same for the charged phase",
    "structure_discharge": "pymatgen Structure JSON, discharged",
    "structure_charge": "pymatgen Structure JSON, charged",
    "composition": "112 atom counts by atomic number of the discharged cell",
    "electrode": "pymatgen InsertionElectrode JSON (structures stripped)",
    "split": "train / val / test (grouped by discharged formula)",
    "provenance": "JSON: how this row was made",
}


def table_path(directory: str | Path | None = None) -> Path:
    return Path(directory or SHIPPED_DIR) / TABLE_FILENAME


def save_table(df: pd.DataFrame, directory: str | Path) -> Path:
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = df[list(COLUMNS)].reset_index(drop=True).copy()
    out["composition"] = [np.asarray(v, np.float32).tolist() for v in out["composition"]]
    for column, dtype in LATER_COLUMNS.items():
        out[column] = out[column].astype(dtype)
    path = table_path(directory)
    # The app re-reads a table whose file changed; a half-written parquet would break every page.
    with atomic.atomic_path(path) as temporary:
        out.to_parquet(temporary, compression="zstd", index=False)
    scaler = PropertyScaler.fit(out[list(PROPERTY_NAMES)].to_numpy())
    atomic.write_text(directory / RANGES_FILENAME, json.dumps(scaler.as_dict(), indent=2) + "\n")
    return path


def load_table(directory: str | Path | None = None) -> pd.DataFrame:
    """The electrode table; ``directory`` defaults to the shipped ``assets/electrodes``."""
    path = table_path(directory)
    if not path.exists():
        raise ValueError(f"no electrode table at {path}; build one with "
                         "`python -m battgen data build-electrodes` or fetch MP data with "
                         "`python -m battgen data fetch-mp`")
    df = pd.read_parquet(path)
    for column, dtype in LATER_COLUMNS.items():
        if column not in df.columns:
            df[column] = pd.Series(pd.NA, index=df.index, dtype=dtype)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} is not an electrode table: columns {missing} are missing")
    return df


def table_splits(df: pd.DataFrame) -> dict[str, str]:
    """Discharged formula -> split of a table (the grouping its split was drawn by)."""
    pairs = df[["formula_discharge", "split"]].drop_duplicates()
    clash = pairs["formula_discharge"].duplicated(keep=False)
    if clash.any():
        raise ValueError(f"formula {pairs.loc[clash, 'formula_discharge'].iloc[0]!r} sits in two splits")
    return dict(zip(pairs["formula_discharge"].astype(str), pairs["split"].astype(str)))


def load_scaler(directory: str | Path | None = None) -> PropertyScaler:
    path = Path(directory or SHIPPED_DIR) / RANGES_FILENAME
    if not path.exists():
        raise ValueError(f"no property ranges at {path}; the table was not saved with save_table")
    return PropertyScaler.from_dict(json.loads(path.read_text()))


def composition_matrix(df: pd.DataFrame) -> np.ndarray:
    """(N, 112) float32 composition vectors of the table's rows."""
    if len(df) == 0:
        return np.zeros((0, N_ELEMENTS), np.float32)
    return np.stack([np.asarray(v, np.float32) for v in df["composition"]])


def row_structure(row, state: str = "discharge"):
    """pymatgen Structure of a table row in ``state`` (discharge or charge)."""
    from pymatgen.core import Structure

    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}, got {state!r}")
    return Structure.from_dict(json.loads(row[f"structure_{state}"]))


def row_electrode(row):
    """pymatgen InsertionElectrode of a table row (for voltage profiles)."""
    from pymatgen.apps.battery.insertion_battery import InsertionElectrode

    return InsertionElectrode.from_dict(json.loads(row["electrode"]))


def electrode_row(*, id: str, source: str, electrode, discharged, charged, structure_type: str,
                  ion_energy_per_atom: float, properties: dict, provenance: dict,
                  stability_discharge: float = float("nan"),
                  stability_charge: float = float("nan")) -> dict:
    """One table row from a pymatgen InsertionElectrode and its end-member structures.

    Shared by the builder, the MP conversion and the upload evaluation so every source
    produces identical columns.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    ion = electrode.working_ion.symbol
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}")
    try:
        spacegroup = SpacegroupAnalyzer(discharged, symprec=0.1).get_space_group_symbol()
    except Exception:  # spglib gives up on badly distorted cells; the row is still valid
        spacegroup = ""
    d_entry, c_entry = electrode.fully_discharged_entry, electrode.fully_charged_entry
    framework = electrode.framework.reduced_formula
    stripped = _strip_structures(electrode)
    return {
        "id": id,
        "source": source,
        "working_ion": ion,
        "formula_discharge": discharged.composition.reduced_formula,
        "formula_charge": charged.composition.reduced_formula,
        "framework_formula": framework,
        "structure_type": structure_type,
        "spacegroup_discharge": spacegroup,
        "nsites_discharge": len(discharged),
        **{k: float(properties[k]) for k in PROPERTY_NAMES},
        "energy_per_atom_discharge": float(d_entry.energy_per_atom),
        "energy_per_atom_charge": float(c_entry.energy_per_atom),
        "ion_energy_per_atom": float(ion_energy_per_atom),
        "stability_discharge": float(stability_discharge),
        "stability_charge": float(stability_charge),
        "competing_phases_discharge": pd.NA,
        "competing_phases_charge": pd.NA,
        "structure_discharge": json.dumps(discharged.as_dict()),
        "structure_charge": json.dumps(charged.as_dict()),
        "composition": composition_vector(discharged),
        "electrode": json.dumps(stripped.as_dict()),
        "split": "",
        "provenance": json.dumps(provenance),
    }


def _strip_structures(electrode):
    from pymatgen.apps.battery.insertion_battery import InsertionElectrode

    if all(not hasattr(e, "structure") for e in electrode.stable_entries):
        return electrode
    return InsertionElectrode.from_entries(
        list(electrode.stable_entries) + list(electrode.unstable_entries),
        electrode.working_ion_entry, strip_structures=True)


def row_provenance(row) -> dict:
    """How a table row was made (its ``provenance`` JSON column), as a dict; {} when absent."""
    text = row.get("provenance") if hasattr(row, "get") else None
    if not text or (isinstance(text, float) and np.isnan(text)):
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"row {row.get('id', '?')} has unreadable provenance: {exc}") from None
    return value if isinstance(value, dict) else {"value": value}
