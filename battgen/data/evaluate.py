""""Evaluate my electrode": a user's discharged structure → the six properties, like the dataset.

The discharged structure is relaxed with CHGNet, the charged state is the same cell with every
working-ion atom removed (relaxed too), the ion metal gives the reference energy, and pymatgen's
``InsertionElectrode`` gives the properties: the builder's pipeline, step for step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from battgen.data.electrode import RejectedElectrode, computed_entry, evaluate_electrode, ion_entry
from battgen.data.frameworks import elemental_reference_structure
from battgen.data.properties import check_ion
from battgen.data.relax import DEFAULT_FMAX, DEFAULT_STEPS, RELAX_METHOD, RelaxResult, relax

# CHGNet's cost grows with atoms; ~64 atoms relax in about a minute or two on a 2-core CPU.
MAX_ATOMS = 64
MAX_FILE_BYTES = 2 * 1024 * 1024
# CHGNet was trained on Materials Project data, which stops at Pu.
MAX_Z = 94
STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar")
# Above this a file is refused before parsing: the AFM page simulates clusters cut from cells of a
# few hundred atoms, and pymatgen's CIF site merging is quadratic in the atoms it generates.
MAX_READ_ATOMS = 1000
# Closer than this two nuclei are one atom written twice (shortest real bond, H–H, is 0.74 Å).
MIN_DISTANCE_A = 0.5

Progress = Callable[[float, str], None]


def read_structure(data: bytes, filename: str):
    """A pymatgen Structure from CIF or POSCAR bytes; clear ``ValueError`` for anything else.

    Uploads are untrusted: the text is scanned first (:mod:`battgen.data.structure_scan`) so that
    a file declaring thousands of atoms, impossible counts or unknown elements is refused before
    pymatgen works through it, and the parsed structure must be a crystal: ordered, finite, no two
    atoms closer than :data:`MIN_DISTANCE_A`, a sane volume per atom.
    """
    from pymatgen.core import Structure

    from battgen.data import structure_scan

    name = filename.lower()
    if len(data) == 0:
        raise ValueError(f"{filename} is empty")
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{filename} is {len(data) / 1e6:.1f} MB; structure files over "
                         f"{MAX_FILE_BYTES // (1024 * 1024)} MB are not accepted")
    if name.endswith(".cif"):
        fmt = "cif"
    elif name.endswith((".vasp", ".poscar")) or name.split("/")[-1].upper() in ("POSCAR", "CONTCAR"):
        fmt = "poscar"
    else:
        raise ValueError(f"{filename}: upload a CIF (.cif) or a VASP POSCAR (POSCAR, .vasp, .poscar)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{filename} is not a text file; CIF and POSCAR are plain text") from None
    if "\x00" in text:
        raise ValueError(f"{filename} is not a text file; CIF and POSCAR are plain text")
    if fmt == "cif":
        structure_scan.scan_cif(text, filename, MAX_READ_ATOMS)
        structure = structure_scan.parse_cif(text, filename)
    else:
        structure_scan.scan_poscar(text, filename, MAX_READ_ATOMS)
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = Structure.from_str(text, fmt="poscar")
        except Exception as err:  # pymatgen raises many kinds for malformed files
            raise ValueError(f"{filename} could not be read as POSCAR: {err}") from None
    structure_scan.check_crystal(structure, filename, MIN_DISTANCE_A)
    return structure


def check_structure(structure, ion: str) -> None:
    from battgen.data import structure_scan

    check_ion(ion)
    if not structure.is_ordered:
        raise ValueError("the structure has partial occupancies; order it first (e.g. with "
                         "pymatgen's OrderDisorderedStructureTransformation)")
    if len(structure) > MAX_ATOMS:
        raise ValueError(f"the cell has {len(structure)} atoms; at most {MAX_ATOMS} are relaxed "
                         "here (use a primitive cell)")
    elements = {el.symbol: el.Z for el in structure.composition.elements}
    unsupported = sorted(sym for sym, z in elements.items() if z > MAX_Z)
    if unsupported:
        raise ValueError(f"CHGNet has no training data for {', '.join(unsupported)}")
    if ion not in elements:
        raise ValueError(f"the structure contains no {ion}: upload the discharged "
                         f"({ion}-containing) state")
    if len(elements) == 1:
        raise ValueError(f"the structure is {ion} metal; an electrode needs a host")
    structure_scan.check_volume(structure)


@lru_cache(maxsize=None)
def ion_reference(ion: str, fmax: float = DEFAULT_FMAX, steps: int = DEFAULT_STEPS) -> RelaxResult:
    return relax(elemental_reference_structure(ion), fmax=fmax, steps=steps)


@dataclass
class Evaluation:
    row: dict  # table columns, as in the dataset
    discharged: RelaxResult
    charged: RelaxResult
    electrode: object  # pymatgen InsertionElectrode

    @property
    def properties(self) -> dict:
        from battgen.data.properties import PROPERTY_NAMES

        return {k: self.row[k] for k in PROPERTY_NAMES}


def evaluate_structure(structure, ion: str, *, name: str = "upload", fmax: float = DEFAULT_FMAX,
                       steps: int = DEFAULT_STEPS, progress: Progress | None = None,
                       require_converged: bool = True) -> Evaluation:
    """Relax, remove the ions, relax, and compute the electrode. Raises ``ValueError`` if unusable.

    ``require_converged=False`` accepts relaxations stopped at ``steps`` (an estimate, as the
    design loop's short pre-relaxation wants); one that climbed in energy is refused either way.
    """
    from battgen.data.table import electrode_row

    check_structure(structure, ion)
    report = progress or (lambda fraction, message: None)
    report(0.02, f"relaxing the {ion} metal reference")
    ref = ion_reference(ion, fmax, steps)
    report(0.1, f"relaxing the discharged structure ({len(structure)} atoms)")
    discharged = relax(structure, fmax=fmax, steps=steps)
    charged_start = structure.copy()
    charged_start.remove_species([ion])
    report(0.55, f"relaxing the charged structure ({len(charged_start)} atoms)")
    charged = relax(charged_start, fmax=fmax, steps=steps)
    report(0.95, "computing the electrode")
    for state, r in (("discharged", discharged), ("charged", charged)):
        if require_converged and not r.converged:
            raise RejectedElectrode(f"the {state} relaxation did not converge in {steps} steps "
                                    f"(max force {r.max_force:.2f} eV/Å); the structure may be "
                                    "far from a stable one")
        if r.climbed:
            raise RejectedElectrode(f"the {state} relaxation ended {r.energy_change:.3f} eV/atom "
                                    "above its start; the structure may be far from a stable one")
    entries = [computed_entry(discharged.structure, discharged.energy, f"{name}:discharge"),
               computed_entry(charged.structure, charged.energy, f"{name}:charge")]
    result = evaluate_electrode(entries, ion_entry(ion, ref.energy_per_atom))
    row = electrode_row(
        id=f"upload:{name}", source="computed", electrode=result.electrode,
        discharged=discharged.structure, charged=charged.structure, structure_type="uploaded",
        ion_energy_per_atom=ref.energy_per_atom, properties=result.properties,
        provenance={"method": RELAX_METHOD + " + pymatgen InsertionElectrode", "file": name,
                    "fmax_eV_per_A": fmax,
                    "relax_steps": {"discharge": discharged.steps, "charge": charged.steps}},
    )
    report(1.0, "done")
    return Evaluation(row, discharged, charged, result.electrode)


def structure_to_text(structure, fmt: str) -> str:
    """CIF or POSCAR text of a structure, for downloads."""
    if fmt == "cif":
        from pymatgen.io.cif import CifWriter

        return str(CifWriter(structure, symprec=None))
    if fmt == "poscar":
        from pymatgen.io.vasp import Poscar

        return Poscar(structure).get_str()
    raise ValueError(f"unknown structure format {fmt!r}; use cif or poscar")
