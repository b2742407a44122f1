"""An electrode crystal as a finite "molecule" that ppafm can image.

ppafm's AFMulator (like the ASD-AFM recipe it comes from) images a finite set of atoms; a
periodic crystal has to be cut first. BattGen cuts a *ball*: every atom of the infinite
crystal (the cell and its periodic images, i.e. a supercell large enough to hold the ball)
whose distance to the centre of the unit cell is within a cut radius R. R is not fixed in
Å: it is the radius of the shell that brings the atom count to ``target_atoms``, so dense
oxides and open sulfides give clusters of about the same size (32–54 atoms, 3.9–5.3 Å radius
for the shipped electrodes), which keeps every cluster well inside the same 16 Å scan window
and every simulation about equally fast.

Why a ball and not a slab: the campaign images each cluster from up to a hundred
directions; a ball looks the same size from all of them, so only the crystal's orientation
changes between views, never how much of it the scan window cuts off.

Whole coordination shells are kept (atoms at the same distance from the centre are all in
or all out), so the cluster keeps the point symmetry of the crystal around the cell centre;
only when a single shell would overshoot ``max_atoms`` is it truncated, in a fixed order.
Everything is deterministic: the same structure always gives the same cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pymatgen.core import Structure

DEFAULT_TARGET_ATOMS = 32
DEFAULT_MIN_ATOMS = 20
DEFAULT_MAX_ATOMS = 60
# Atoms whose distances to the centre differ by less than this belong to one shell; relaxed
# structures carry ~1e-4 Å noise that must not split a symmetric shell.
SHELL_TOLERANCE_A = 0.02


@dataclass(frozen=True)
class Cluster:
    """Finite cut of a crystal: Cartesian coordinates (Å) centred on their mean, and atomic numbers."""

    xyz: np.ndarray  # (N, 3) float64, mean at the origin
    Zs: np.ndarray  # (N,) int32
    radius: float  # cut radius in Å around the cell centre
    formula: str  # reduced formula of the source crystal

    def __post_init__(self) -> None:
        if self.xyz.ndim != 2 or self.xyz.shape[1] != 3 or len(self.xyz) != len(self.Zs):
            raise ValueError(f"cluster needs (N, 3) coordinates and N atomic numbers, got "
                             f"{self.xyz.shape} and {self.Zs.shape}")

    def __len__(self) -> int:
        return len(self.Zs)

    @property
    def symbols(self) -> list[str]:
        from pymatgen.core import Element

        return [Element.from_Z(int(z)).symbol for z in self.Zs]

    @property
    def elements(self) -> list[str]:
        """Element symbols present, in order of atomic number."""
        from pymatgen.core import Element

        return [Element.from_Z(int(z)).symbol for z in np.unique(self.Zs)]


def load_structure(path: str | Path) -> "Structure":
    """A pymatgen Structure from a CIF/POSCAR/JSON file, with a clear error for bad files."""
    from pymatgen.core import Structure

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"structure file {path} does not exist")
    try:
        structure = Structure.from_file(path)
    except Exception as exc:  # pymatgen raises many types for unreadable files
        raise ValueError(f"cannot read a crystal structure from {path}: {exc}") from exc
    if len(structure) == 0:
        raise ValueError(f"{path} holds a structure with no atoms")
    return structure


def cut_cluster(
    structure: "Structure",
    *,
    target_atoms: int = DEFAULT_TARGET_ATOMS,
    min_atoms: int = DEFAULT_MIN_ATOMS,
    max_atoms: int = DEFAULT_MAX_ATOMS,
) -> Cluster:
    """Ball of whole coordination shells around the unit-cell centre, ≈ ``target_atoms`` atoms.

    If that ball misses an element of the structure, it is centred on an atom of the rarest
    element instead, so every element (the working ion above all) is in the cluster.

    Shells are added from the centre outwards until at least ``target_atoms`` atoms are in;
    if the last shell would pass ``max_atoms`` it is left out when that still leaves
    ``min_atoms``, otherwise it is truncated in (distance, Z, x, y, z) order.
    """
    if not 1 <= min_atoms <= target_atoms <= max_atoms:
        raise ValueError(f"need 1 <= min_atoms <= target_atoms <= max_atoms, got "
                         f"{min_atoms}, {target_atoms}, {max_atoms}")
    if len(structure) == 0:
        raise ValueError("the structure has no atoms")
    if not structure.is_ordered:
        raise ValueError("the structure has partially occupied sites; a cluster needs whole atoms "
                         "(order it first, e.g. with pymatgen's OrderDisorderedStructureTransformation)")
    if structure.volume <= 0 or not math.isfinite(structure.volume):
        raise ValueError("the structure's lattice has no volume")

    cell_centre = structure.lattice.get_cartesian_coords([0.5, 0.5, 0.5])
    cluster = _ball(structure, cell_centre, target_atoms, min_atoms, max_atoms)
    present = {el.symbol for el in structure.composition.elements}
    if set(cluster.elements) == present:
        return cluster
    # A ball around the bare cell centre can miss an element entirely (the single Al of an
    # Al-filled olivine), and the type map then has no working ion to draw: centre it on an
    # atom of the rarest element instead, the one nearest the cell centre.
    counts = structure.composition.element_composition
    rarest = min(counts, key=lambda el: (counts[el], el.Z)).symbol
    sites = [site.coords for site in structure if site.specie.symbol == rarest]
    centre = min(sites, key=lambda xyz: (float(np.linalg.norm(xyz - cell_centre)), tuple(xyz)))
    return _ball(structure, centre, target_atoms, min_atoms, max_atoms)


def _ball(structure: "Structure", centre: np.ndarray, target_atoms: int, min_atoms: int,
          max_atoms: int) -> Cluster:
    density = len(structure) / structure.volume
    # Radius of a sphere that holds ~max_atoms at the crystal's density, with margin for
    # the graininess of small balls; grown until enough candidates are found.
    radius = (3 * max_atoms / (4 * math.pi * density)) ** (1 / 3) + 2.0
    while True:
        neighbours = structure.get_sites_in_sphere(centre, radius)
        if len(neighbours) > max_atoms:
            break
        radius *= 1.5

    xyz = np.array([site.coords for site in neighbours], dtype=np.float64)
    Zs = np.array([site.specie.Z for site in neighbours], dtype=np.int32)
    dist = np.linalg.norm(xyz - centre, axis=1)
    by_distance = np.argsort(dist, kind="stable")
    # A new shell starts wherever the sorted distances jump by more than the tolerance.
    shell = np.empty(len(dist), dtype=np.int64)
    shell[by_distance] = np.cumsum(np.r_[0, np.diff(dist[by_distance]) > SHELL_TOLERANCE_A])
    # Within a shell, a fixed order (lexsort keys go last-to-first) so truncation is reproducible.
    order = np.lexsort((xyz[:, 2], xyz[:, 1], xyz[:, 0], Zs, shell))
    xyz, Zs, dist, shell = xyz[order], Zs[order], dist[order], shell[order]

    last_shell = shell[target_atoms - 1]
    count = int(np.sum(shell <= last_shell))
    if count > max_atoms:
        without_last = int(np.sum(shell < last_shell))
        count = without_last if without_last >= min_atoms else max_atoms
    xyz, Zs = xyz[:count], Zs[:count]
    return Cluster(
        xyz=xyz - xyz.mean(axis=0),
        Zs=Zs,
        radius=float(dist[count - 1]),
        formula=structure.composition.reduced_formula,
    )

