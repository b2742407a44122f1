"""Observables of a final SEI lattice.

Definitions (lattice sites are ≈ 1 nm; row 0 touches the electrode):

- column height h_c: 1 + the highest row of column c holding SEI (Li2CO3 or attached Li2EDC),
  0 when the column has none.
- thickness: mean of h_c over columns, in sites (≈ nm).
- SEI layer: the sites of each column from the electrode up to its highest SEI site (rows
  0 .. h_c − 1); it holds every SEI site by construction.
- porosity ("layer porosity", ours): fraction of layer sites that are not SEI (solvent or
  trapped mobile species).
- porosity_half ("half-thickness porosity", the public reference implementation's definition,
  KMC-CIDEMOD ``support.thickness``): the sites below half the thickness (1-based row y with
  y < thickness / 2) that are not Li2CO3 or Li2EDC cluster (attached or free), over
  (thickness / 2) · width. Its numerator counts only ceil(thickness / 2) − 1 rows while its
  denominator has thickness / 2 of them, so it runs low by about one row in thickness / 2 (an
  eighth at 16 nm); it is kept as written so our runs compare with the published 0.025.
- inorganic_fraction / organic_fraction: fraction of layer sites that are Li2CO3 / attached
  Li2EDC. The three add up to 1 (0 when there is no layer).
- density: SEI mass per electrode area in µg/cm²: Li2CO3 73.89 g/mol and Li2EDC 161.95 g/mol per
  site, over a 1 nm × 1 nm footprint per column (the 2D lattice is one site deep).
- coverage: fraction of electrode sites directly covered by SEI (row 0).
"""

from __future__ import annotations

import numpy as np

from battgen.sei.species import ATTACHED, FREE_CLUSTER, INORGANIC, MOBILE_CODES, MOLAR_MASS

AVOGADRO = 6.02214076e23
SITE_AREA_CM2 = 1e-14  # (1 nm)^2

OBSERVABLE_NAMES = (
    "thickness",
    "porosity",
    "inorganic_fraction",
    "organic_fraction",
    "density",
    "coverage",
    "n_inorganic",
    "n_organic",
    "n_trapped",
    # last, so the positions of the older names stay as they were in stored datasets
    "porosity_half",
)
UNITS = {
    "thickness": "nm",
    "porosity": "",
    "inorganic_fraction": "",
    "organic_fraction": "",
    "density": "µg/cm²",
    "coverage": "",
    "n_inorganic": "sites",
    "n_organic": "sites",
    "n_trapped": "sites",
    "porosity_half": "",
}
# The four properties the prVAE regresses, in the published order ("volume fraction" first).
PROPERTY_NAMES = ("inorganic_fraction", "thickness", "density", "porosity")


def column_heights(lattice: np.ndarray) -> np.ndarray:
    lattice = np.asarray(lattice)
    sei = (lattice == INORGANIC) | (lattice == ATTACHED)
    ny = lattice.shape[0]
    has_sei = sei.any(axis=0)
    top = ny - np.argmax(sei[::-1, :], axis=0)  # 1 + highest SEI row
    return np.where(has_sei, top, 0)


def half_thickness_porosity(lattice: np.ndarray, thickness: float) -> float:
    """The reference implementation's porosity of one lattice (see the module docstring); 0 without SEI."""
    lattice = np.asarray(lattice)
    height = thickness / 2
    if height <= 0:
        return 0.0
    rows = np.arange(lattice.shape[0]) + 1  # the reference numbers rows from 1 above the electrode
    below = lattice[rows < height]
    filled = np.isin(below, (INORGANIC, ATTACHED, FREE_CLUSTER))
    return float((~filled).sum() / (height * lattice.shape[1]))


def compute_observables(lattice: np.ndarray) -> dict[str, float]:
    """Observables of one lattice (ny, nx) of species codes; see the module docstring."""
    lattice = np.asarray(lattice)
    if lattice.ndim != 2:
        raise ValueError(f"lattice must be 2-D (rows, columns), got shape {lattice.shape}")
    ny, nx = lattice.shape
    heights = column_heights(lattice)
    rows = np.arange(ny)[:, None]
    layer = rows < heights[None, :]
    n_layer = int(layer.sum())
    n_inorganic = int((lattice == INORGANIC).sum())
    n_organic = int((lattice == ATTACHED).sum())
    n_trapped = int(np.isin(lattice[layer], MOBILE_CODES).sum())
    mass_g = (n_inorganic * MOLAR_MASS[INORGANIC] + n_organic * MOLAR_MASS[ATTACHED]) / AVOGADRO
    if n_layer:
        porosity = 1.0 - (n_inorganic + n_organic) / n_layer
        inorganic_fraction = n_inorganic / n_layer
        organic_fraction = n_organic / n_layer
    else:
        porosity = inorganic_fraction = organic_fraction = 0.0
    sei_row0 = (lattice[0] == INORGANIC) | (lattice[0] == ATTACHED)
    return {
        "thickness": float(heights.mean()),
        "porosity": float(porosity),
        "inorganic_fraction": float(inorganic_fraction),
        "organic_fraction": float(organic_fraction),
        "density": float(mass_g / (nx * SITE_AREA_CM2) * 1e6),
        "coverage": float(sei_row0.mean()),
        "n_inorganic": float(n_inorganic),
        "n_organic": float(n_organic),
        "n_trapped": float(n_trapped),
        "porosity_half": half_thickness_porosity(lattice, float(heights.mean())),
    }
