"""A screening request: six target properties in physical units and a working ion.

Unspecified properties default to the median of the chosen ion's electrodes in the table, so
"Mg, 2.5 V" means "a typical Mg electrode, but at 2.5 V". Slider ranges are the table's ranges
(the min-max scaling the models are trained with); requests outside them are allowed but
flagged, because the model was never shown such a condition.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from battgen.data.properties import PROPERTY_BY_NAME, PROPERTY_NAMES, PropertyScaler, check_ion


# A capacity, an energy or a volume change below zero is not a request but a typo.
NON_NEGATIVE = frozenset(PROPERTY_NAMES) - {"average_voltage"}


def ion_medians(table: pd.DataFrame, ion: str) -> dict[str, float]:
    """Median of every property over the table's electrodes of ``ion`` (all rows if it has none)."""
    rows = table[table["working_ion"] == check_ion(ion)]
    if rows.empty:
        rows = table
    if rows.empty:
        raise ValueError("the electrode table is empty; there is nothing to take defaults from")
    return {name: float(np.nanmedian(rows[name].to_numpy(np.float64))) for name in PROPERTY_NAMES}


@dataclass(frozen=True)
class ScreeningRequest:
    working_ion: str
    properties: dict[str, float]  # all six, physical units
    outside_range: tuple[str, ...] = field(default=())  # properties requested beyond the data

    @classmethod
    def build(cls, table: pd.DataFrame, scaler: PropertyScaler, ion: str,
              given: dict[str, float | None] | None = None) -> "ScreeningRequest":
        """Fill the properties ``given`` leaves out (or sets to None) with the ion's medians."""
        given = {k: v for k, v in (given or {}).items() if v is not None}
        unknown = sorted(set(given) - set(PROPERTY_NAMES))
        if unknown:
            raise ValueError(f"unknown properties {unknown}; choose from {', '.join(PROPERTY_NAMES)}")
        properties = ion_medians(table, ion)
        for name, value in given.items():
            value = float(value)
            if not np.isfinite(value):
                raise ValueError(f"{PROPERTY_BY_NAME[name].label} must be a finite number, got {value}")
            if name in NON_NEGATIVE and value < 0:
                raise ValueError(f"{PROPERTY_BY_NAME[name].label} cannot be negative, got {value:g}")
            properties[name] = value
        scaled = scaler.transform([properties[n] for n in scaler.names])
        outside = tuple(n for n, s in zip(scaler.names, scaled) if s < -1e-6 or s > 1 + 1e-6)
        return cls(check_ion(ion), properties, outside)

    def describe_outside(self, scaler: PropertyScaler) -> str:
        """One sentence naming the properties requested beyond the dataset's range ('' if none)."""
        parts = []
        for name in self.outside_range:
            lo, hi = scaler.low[scaler.names.index(name)], scaler.high[scaler.names.index(name)]
            p = PROPERTY_BY_NAME[name]
            parts.append(f"{p.label} {self.properties[name]:g} {p.unit} (data: {lo:.3g}–{hi:.3g})")
        return ("Requested beyond the training data, so the model extrapolates: " + "; ".join(parts)) if parts else ""
