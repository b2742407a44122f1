"""Working ions and the six electrode properties every BattGen model is conditioned on.

Names and units follow the Materials Project battery explorer (``InsertionElectrodeDoc``), so a
table built offline and one fetched from MP line up column for column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Order matters: it is the order of the one-hot vector the models are trained with.
WORKING_IONS: tuple[str, ...] = ("Li", "Na", "K", "Mg", "Ca", "Zn", "Al", "Y", "Rb", "Cs")

# Charge each ion carries into the host; decides how many electrons the host must take up.
ION_CHARGE: dict[str, int] = {
    "Li": 1, "Na": 1, "K": 1, "Rb": 1, "Cs": 1,
    "Mg": 2, "Ca": 2, "Zn": 2,
    "Al": 3, "Y": 3,
}


@dataclass(frozen=True)
class ElectrodeProperty:
    name: str  # column name = MP field name
    label: str
    unit: str

    @property
    def axis_title(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


PROPERTIES: tuple[ElectrodeProperty, ...] = (
    ElectrodeProperty("average_voltage", "Average voltage", "V"),
    ElectrodeProperty("capacity_grav", "Gravimetric capacity", "mAh/g"),
    ElectrodeProperty("capacity_vol", "Volumetric capacity", "mAh/cm³"),
    ElectrodeProperty("energy_grav", "Gravimetric energy", "Wh/kg"),
    ElectrodeProperty("energy_vol", "Volumetric energy", "Wh/L"),
    ElectrodeProperty("max_delta_volume", "Max. volume change", "fraction"),
)
PROPERTY_NAMES: tuple[str, ...] = tuple(p.name for p in PROPERTIES)
PROPERTY_BY_NAME: dict[str, ElectrodeProperty] = {p.name: p for p in PROPERTIES}


def check_ion(ion: str) -> str:
    if ion not in WORKING_IONS:
        raise ValueError(f"unknown working ion {ion!r}; choose one of {', '.join(WORKING_IONS)}")
    return ion


def ion_one_hot(ions) -> np.ndarray:
    """(N, 10) float32 one-hot rows in the order of ``WORKING_IONS``; one ion gives shape (10,)."""
    single = isinstance(ions, str)
    names = [ions] if single else list(ions)
    out = np.zeros((len(names), len(WORKING_IONS)), np.float32)
    for row, ion in enumerate(names):
        out[row, WORKING_IONS.index(check_ion(ion))] = 1.0
    return out[0] if single else out


@dataclass(frozen=True)
class PropertyScaler:
    """Min-max scaling of the six properties to [0, 1]; the ranges travel with the dataset.

    Values outside the stored range are not clipped by ``transform``: a request beyond the data
    is then visible as a value below 0 or above 1 instead of being silently moved inside.
    """

    low: tuple[float, ...]
    high: tuple[float, ...]
    names: tuple[str, ...] = PROPERTY_NAMES

    @classmethod
    def fit(cls, values: np.ndarray, names=PROPERTY_NAMES) -> "PropertyScaler":
        values = np.asarray(values, np.float64)
        if values.ndim != 2 or values.shape[1] != len(names) or len(values) == 0:
            raise ValueError(f"expected an (N, {len(names)}) array of properties, got {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError("properties contain NaN or inf; clean the table before fitting ranges")
        low, high = values.min(axis=0), values.max(axis=0)
        high = np.where(high > low, high, low + 1.0)  # a constant column maps to 0, not NaN
        return cls(tuple(map(float, low)), tuple(map(float, high)), tuple(names))

    def transform(self, values) -> np.ndarray:
        values = np.asarray(values, np.float64)
        low, high = np.array(self.low), np.array(self.high)
        return ((values - low) / (high - low)).astype(np.float32)

    def inverse_transform(self, scaled) -> np.ndarray:
        scaled = np.asarray(scaled, np.float64)
        low, high = np.array(self.low), np.array(self.high)
        return scaled * (high - low) + low

    def as_dict(self) -> dict:
        return {name: [lo, hi] for name, lo, hi in zip(self.names, self.low, self.high)}

    @classmethod
    def from_dict(cls, ranges: dict) -> "PropertyScaler":
        names = tuple(ranges)
        return cls(tuple(float(ranges[n][0]) for n in names), tuple(float(ranges[n][1]) for n in names), names)
