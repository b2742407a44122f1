"""CHGNet relaxations: the one place where BattGen turns a structure into an energy.

CHGNet's pretrained weights ship inside its wheel, so this runs offline. Energies are on the
Materials Project GGA/GGA+U scale CHGNet was trained on (uncorrected), which is the scale MP's
own voltages are computed on.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Relaxation settings of the shipped dataset; recorded in its metadata.
DEFAULT_FMAX = 0.1  # eV/Å, max force on atoms (and the cell via FrechetCellFilter)
DEFAULT_STEPS = 120  # FIRE steps; a relaxation that has not converged by then is discarded


@dataclass
class RelaxResult:
    structure: object  # pymatgen Structure, relaxed
    energy: float  # total eV of ``structure``
    steps: int
    max_force: float  # eV/Å on the final structure
    converged: bool
    seconds: float

    @property
    def energy_per_atom(self) -> float:
        return self.energy / len(self.structure)

    def as_dict(self) -> dict:
        return {
            "structure": self.structure.as_dict(),
            "energy": self.energy,
            "steps": self.steps,
            "max_force": self.max_force,
            "converged": self.converged,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "RelaxResult":
        from pymatgen.core import Structure

        return cls(Structure.from_dict(d["structure"]), float(d["energy"]), int(d["steps"]),
                   float(d["max_force"]), bool(d["converged"]), float(d["seconds"]))


@lru_cache(maxsize=2)
def load_chgnet(device: str = "cpu"):
    """The pretrained CHGNet model, loaded once per process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from chgnet.model import CHGNet

        return CHGNet.load(verbose=False, use_device=device)


def relax(structure, *, fmax: float = DEFAULT_FMAX, steps: int = DEFAULT_STEPS,
          device: str | None = None, relax_cell: bool = True) -> RelaxResult:
    """FIRE relaxation of atoms and cell with CHGNet, bounded to ``steps``."""
    from chgnet.model import StructOptimizer

    from battgen.device import get_device

    device = device or get_device().type
    model = load_chgnet(device)
    start = time.perf_counter()
    # CHGNet prints its device on every optimizer; keep CLI output and logs clean.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        optimizer = StructOptimizer(model=model, optimizer_class="FIRE", use_device=device)
        result = optimizer.relax(structure, fmax=fmax, steps=steps, relax_cell=relax_cell,
                                 ase_filter="FrechetCellFilter", verbose=False)
    trajectory = result["trajectory"]
    forces = np.asarray(trajectory.forces[-1])
    max_force = float(np.linalg.norm(forces, axis=1).max()) if len(forces) else 0.0
    n_steps = len(trajectory.energies)
    final = result["final_structure"]
    return RelaxResult(
        structure=final,
        energy=float(trajectory.energies[-1]),
        steps=n_steps,
        max_force=max_force,
        # FIRE stops early only when atom and cell forces are below fmax.
        converged=n_steps <= steps,
        seconds=time.perf_counter() - start,
    )
