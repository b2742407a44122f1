"""What a table holds: counts per ion and source, property ranges, medians per ion."""

from __future__ import annotations

import numpy as np
import pandas as pd

from battgen.data.properties import PROPERTY_NAMES, WORKING_IONS


def table_summary(df: pd.DataFrame) -> dict:
    from battgen.data.stability import stability_summary

    per_ion = {}
    for ion in WORKING_IONS:
        sub = df[df["working_ion"] == ion]
        per_ion[ion] = {
            "count": int(len(sub)),
            "median_average_voltage": _median(sub["average_voltage"]),
            "median_capacity_grav": _median(sub["capacity_grav"]),
        }
    return {
        "electrodes": int(len(df)),
        "per_ion": per_ion,
        "per_source": {k: int(v) for k, v in df["source"].value_counts().sort_index().items()},
        "per_split": {k: int(v) for k, v in df["split"].value_counts().sort_index().items()},
        "distinct_discharged_formulas": int(df["formula_discharge"].nunique()),
        **_framework_counts(df),
        "property_ranges": {
            name: {"min": _float(df[name].min()), "median": _median(df[name]),
                   "max": _float(df[name].max())}
            for name in PROPERTY_NAMES
        },
        "stability": stability_summary(df),
    }


def _framework_counts(df: pd.DataFrame) -> dict:
    """Structure types and host frameworks present (rows without a structure type, e.g. MP's, left out)."""
    if "structure_type" not in df:
        return {}
    typed = df[df["structure_type"].notna() & (df["structure_type"].astype(str) != "")]
    hosts = typed[["structure_type", "framework_formula"]].drop_duplicates() if "framework_formula" in df else None
    return {
        "structure_types": int(typed["structure_type"].nunique()),
        **({} if hosts is None else {"host_frameworks": int(len(hosts))}),
        "per_structure_type": {k: int(v) for k, v in typed["structure_type"].value_counts().sort_index().items()},
    }


def _median(series) -> float | None:
    return _float(series.median()) if len(series) else None


def _float(x) -> float | None:
    x = float(x)
    return None if not np.isfinite(x) else round(x, 4)
