"""Plain-table exports of the electrode table for spreadsheets and other tools."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from battgen import atomic
from battgen.data.properties import PROPERTY_NAMES

EXPORT_COLUMNS = ("id", "source", "working_ion", "formula_discharge", "formula_charge",
                  "structure_type", *PROPERTY_NAMES, "stability_discharge", "stability_charge",
                  "competing_phases_discharge", "competing_phases_charge", "split")


def export_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The columns a spreadsheet needs: ion, formulas, the six properties (MP units), E_hull."""
    return df[list(EXPORT_COLUMNS)].reset_index(drop=True)


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    return export_frame(df).to_csv(index=False).encode("utf-8")


def export_table(table_dir: str | Path, out: str | Path, fmt: str = "csv") -> int:
    from battgen.data.table import load_table

    if fmt != "csv":
        raise ValueError(f"unknown export format {fmt!r}; supported: csv")
    df = load_table(table_dir)
    atomic.write_bytes(out, to_csv_bytes(df))
    return len(df)
