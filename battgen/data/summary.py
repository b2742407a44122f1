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
        "property_ranges": {
            name: {"min": _float(df[name].min()), "median": _median(df[name]),
                   "max": _float(df[name].max())}
            for name in PROPERTY_NAMES
        },
        "stability": stability_summary(df),
    }


def _median(series) -> float | None:
    return _float(series.median()) if len(series) else None


def _float(x) -> float | None:
    x = float(x)
    return None if not np.isfinite(x) else round(x, 4)
