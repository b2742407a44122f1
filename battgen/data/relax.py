"""CHGNet relaxations: the one place where BattGen turns a structure into an energy.

CHGNet's pretrained weights ship inside its wheel, so this runs offline. Energies are on the
Materials Project GGA/GGA+U scale CHGNet was trained on (uncorrected), which is the scale MP's
own voltages are computed on.

Two guards come from the olivine failure (issue 15). CHGNet divides its strain derivative by
the *signed* triple product of the lattice vectors, so on a left-handed lattice (pymatgen's
bundled LiFePO4.json is one, det = -299.6 Å³) its stress has the wrong sign: FePO4 then
reported -11.8 GPa where a finite difference of CHGNet's own energy gives +11.7 GPa, and the
cell filter expanded it 300 -> 750 Å³ uphill. Every structure is therefore relaxed on a
right-handed lattice; and a relaxation whose energy ends above where it started followed a
force field inconsistent with its energy, so it is flagged instead of trusted.

The optimiser is BFGS with a line search (ASE's BFGSLineSearch: every step must lower the
energy) to 0.05 eV/Å. Measured on CHGNet (fmax 0.05 unless said): FIRE at 0.1 eV/Å left
charged FePO4 at 287 Å³ and Li3V2(PO4)3 18 meV/atom above its minimum (0.13 V of voltage);
plain L-BFGS, which has no line search, expanded a 1T CoO2 start from 62 to 343 Å³ while its
energy rose 2.3 eV/atom (and never converged on K2NiF4-type VF4 in 600 steps); BFGSLineSearch
ended within 0.5 meV/atom of the lowest energy any optimiser found on each of those four
(CoO2 at 37 Å³, VF4 in 3 steps, FePO4 at 285 Å³, Li3V2(PO4)3 the lowest).
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Relaxation settings of the builder; recorded in the table's metadata.
DEFAULT_FMAX = 0.05  # eV/Å, max force on atoms (and the cell via FrechetCellFilter)
DEFAULT_STEPS = 300  # optimiser steps; a relaxation that has not converged by then is discarded
DEFAULT_OPTIMIZER = "BFGSLineSearch"
OPTIMIZERS = ("BFGSLineSearch", "FIRE", "LBFGS", "BFGS")
RELAX_METHOD = "CHGNet relaxation (FrechetCellFilter, right-handed cell)"
# A relaxation may end this much above its start (eV/atom; FIRE's momentum and CHGNet's
# noise) before it counts as having climbed.
UPHILL_TOLERANCE = 0.005


@dataclass
class RelaxResult:
    structure: object  # pymatgen Structure, relaxed
    energy: float  # total eV of ``structure``
    steps: int
    max_force: float  # eV/Å on the final structure
    converged: bool
    seconds: float
    # final energy minus initial, eV/atom; > UPHILL_TOLERANCE means the optimiser climbed
    energy_change: float = 0.0

    @property
    def energy_per_atom(self) -> float:
        return self.energy / len(self.structure)

    @property
    def climbed(self) -> bool:
        return self.energy_change > UPHILL_TOLERANCE

    def as_dict(self) -> dict:
        return {
            "structure": self.structure.as_dict(),
            "energy": self.energy,
            "steps": self.steps,
            "max_force": self.max_force,
            "converged": self.converged,
            "seconds": self.seconds,
            "energy_change": self.energy_change,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "RelaxResult":
        from pymatgen.core import Structure

        return cls(Structure.from_dict(d["structure"]), float(d["energy"]), int(d["steps"]),
                   float(d["max_force"]), bool(d["converged"]), float(d["seconds"]),
                   float(d.get("energy_change", 0.0)))


@lru_cache(maxsize=2)
def load_chgnet(device: str = "cpu"):
    """The pretrained CHGNet model, loaded once per process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from chgnet.model import CHGNet

        return CHGNet.load(verbose=False, use_device=device)


def right_handed(structure):
    """The same crystal on a lattice with a positive triple product (a copy if it already is).

    Negating all three lattice vectors (and the fractional coordinates with them) keeps every
    Cartesian position, the lattice lengths and angles, and flips the handedness.
    """
    from pymatgen.core import Lattice, Structure

    matrix = structure.lattice.matrix
    if np.linalg.det(matrix) > 0:
        return structure.copy()
    return Structure(Lattice(-matrix), structure.species, -structure.frac_coords,
                     site_properties=structure.site_properties)


def relax(structure, *, fmax: float = DEFAULT_FMAX, steps: int = DEFAULT_STEPS,
          device: str | None = None, relax_cell: bool = True,
          optimizer: str = DEFAULT_OPTIMIZER) -> RelaxResult:
    """Relaxation of atoms and cell (FrechetCellFilter) with CHGNet, bounded to ``steps``."""
    import ase.optimize
    from ase.filters import FrechetCellFilter
    from chgnet.model.dynamics import CHGNetCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    from battgen.device import get_device

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    device = device or get_device().type
    start = time.perf_counter()
    atoms = AseAtomsAdaptor.get_atoms(right_handed(structure))
    # CHGNet prints its device on every calculator; keep CLI output and logs clean.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        atoms.calc = CHGNetCalculator(model=load_chgnet(device), use_device=device)
        initial = atoms.get_potential_energy()
        target = FrechetCellFilter(atoms) if relax_cell else atoms
        runner = getattr(ase.optimize, optimizer)(target, logfile=None)
        converged = bool(runner.run(fmax=fmax, steps=steps))
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
    final = AseAtomsAdaptor.get_structure(atoms)
    for key in list(final.site_properties):
        final.remove_site_property(key)
    max_force = float(np.linalg.norm(forces, axis=1).max()) if len(forces) else 0.0
    return RelaxResult(
        structure=final,
        energy=float(energy),
        steps=int(runner.nsteps),
        max_force=max_force,
        converged=converged,
        seconds=time.perf_counter() - start,
        energy_change=float(energy - initial) / len(atoms),
    )
