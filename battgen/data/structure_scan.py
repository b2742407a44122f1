"""Checks on uploaded CIF/POSCAR text and on the structure parsed from it.

pymatgen reads what it can and guesses the rest: a POSCAR whose counts exceed its coordinate
lines makes it build a billion-entry species list, a CIF with 10⁴ sites takes minutes in its
quadratic site merging, a POSCAR without an element line gets elements from its comment line,
sites with unknown symbols or negative occupancies are dropped without a word, and NaN
coordinates pass. The scans here read the declared counts, symbols and numbers from the text
first (cheap, bounded), so such files are refused with a message that names the problem;
:func:`check_crystal` then refuses parsed structures that are not a crystal.
"""

from __future__ import annotations

import io
import math
import re
import warnings

import numpy as np

# Distances above this per atom are a gas, below the lower one collapsed nuclei; real solids lie
# between about 5 and 60 Å³ per atom.
MIN_VOLUME_PER_ATOM = 3.0
MAX_VOLUME_PER_ATOM = 200.0

def _float(token: str) -> float | None:
    """A CIF/POSCAR number (CIF may append an uncertainty, "0.1234(5)"), NaN and inf included;
    None if not a number."""
    try:
        return float(re.sub(r"\(\d+\)$", "", token))
    except ValueError:
        return None


def _element(symbol: str) -> str | None:
    """The element of a CIF type symbol ("Fe", "Fe3+", "O2-") or POSCAR species ("Fe_pv"), or None."""
    from pymatgen.core import Element

    match = re.fullmatch(r"([A-Za-z]{1,2})(\d*[+-]?|[+-]\d*)", symbol.split("_")[0].split("/")[0].strip())
    if match is None or not Element.is_valid_symbol(match.group(1).capitalize()):
        return None
    return match.group(1).capitalize()


def _poscar(filename: str) -> str:
    return f"{filename} could not be read as POSCAR: "


def scan_poscar(text: str, filename: str, max_atoms: int) -> None:
    """Refuse a POSCAR whose header and coordinate block do not agree, before pymatgen reads it."""
    lines = text.splitlines()
    if len(lines) < 8:
        raise ValueError(_poscar(filename) + "too short (comment, scale, 3 lattice vectors, "
                         "elements, counts, coordinates)")
    scale = _float(lines[1].split()[0]) if lines[1].split() else None
    if scale is None or not math.isfinite(scale) or scale == 0:
        raise ValueError(_poscar(filename) + f"line 2 must be a non-zero scale factor, found {lines[1].strip()!r}")
    for i in (2, 3, 4):
        values = [_float(t) for t in lines[i].split()[:3]]
        if len(values) != 3 or any(v is None or not math.isfinite(v) for v in values):
            raise ValueError(_poscar(filename) + f"line {i + 1} must be a lattice vector of three finite numbers, "
                             f"found {lines[i].strip()!r}")
    species = lines[5].split()
    if not species:
        raise ValueError(_poscar(filename) + "line 6 must list the elements")
    if all(_float(t) is not None for t in species):
        raise ValueError(f"{filename} names no elements (a VASP 4 POSCAR): add a line with the element "
                         "symbols above the counts line")
    unknown = [s for s in species if _element(s) is None]
    if unknown:
        raise ValueError(f"{filename}: unknown element {', '.join(unknown)} on the elements line")
    counts_text = lines[6].split()
    if not all(re.fullmatch(r"\d+", t) for t in counts_text):
        raise ValueError(_poscar(filename) + f"line 7 must give a whole, non-negative atom count per element, "
                         f"found {lines[6].strip()!r}")
    counts = [int(t) for t in counts_text]
    if len(counts) != len(species):
        raise ValueError(f"{filename} lists {len(species)} elements ({' '.join(species)}) but "
                         f"{len(counts)} counts")
    total = sum(counts)
    if total == 0:
        raise ValueError(f"{filename} holds no atoms")
    if total > max_atoms:
        raise ValueError(f"{filename} declares {total} atoms; at most {max_atoms} are read")
    start = 7
    if lines[start].strip()[:1].lower() == "s":  # "Selective dynamics"
        start += 1
    if start >= len(lines) or lines[start].strip()[:1].lower() not in ("d", "c", "k"):
        raise ValueError(_poscar(filename) + "expected 'Direct' or 'Cartesian' after the counts line")
    coordinates = 0
    for line in lines[start + 1:]:
        values = [_float(t) for t in line.split()[:3]]
        if len(values) < 3 or None in values:
            break
        if not all(math.isfinite(v) for v in values):
            raise ValueError(_poscar(filename) + f"coordinate line {coordinates + 1} is not finite: {line.strip()!r}")
        coordinates += 1
    if coordinates != total:
        raise ValueError(_poscar(filename) + f"the counts line declares {total} atoms but {coordinates} "
                         "coordinate lines follow")


def _cif_blocks(text: str, filename: str):
    from pymatgen.io.cif import CifFile

    try:
        return list(CifFile.from_str(text).data.values())
    except ZeroDivisionError:  # pymatgen divides a loop's values by its (zero) columns
        raise ValueError(f"{filename} could not be read as CIF: a loop_ has no values "
                         "(an atom list without atoms?)") from None
    except Exception as err:  # pymatgen's tokenizer fails in many ways on broken syntax
        raise ValueError(f"{filename} could not be read as CIF (broken syntax: {err})") from None


def scan_cif(text: str, filename: str, max_atoms: int) -> None:
    """Refuse a CIF whose atom sites are missing, too many, or not numbers and elements."""
    blocks = [b for b in _cif_blocks(text, filename) if "_atom_site_label" in b.data
              or "_atom_site_type_symbol" in b.data]
    if not blocks:
        raise ValueError(f"{filename} could not be read as CIF: it has no _atom_site loop (no atoms)")
    for block in blocks:
        data = block.data
        labels = data.get("_atom_site_label") or data.get("_atom_site_type_symbol")
        labels = [labels] if isinstance(labels, str) else list(labels)
        if not labels:
            raise ValueError(f"{filename} holds no atoms")
        ops = next((data[k] for k in ("_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz",
                                      "_space_group_symop.operation_xyz") if k in data), ["x,y,z"])
        n_ops = 1 if isinstance(ops, str) else len(ops)
        # Every site times every operation is what pymatgen generates and then merges pairwise.
        if len(labels) > max_atoms or len(labels) * n_ops > 192 * max_atoms:
            raise ValueError(f"{filename} lists {len(labels)} atom sites and {n_ops} symmetry operations; "
                             f"at most {max_atoms} atoms are read")
        # Labels ("Li1", "O2a") are free text; only the type symbols must name elements.
        symbols = data.get("_atom_site_type_symbol", [])
        symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        unknown = sorted({s for s in symbols if _element(s) is None})
        if unknown:
            raise ValueError(f"{filename}: unknown element {', '.join(unknown)} in the atom sites")
        for key in ("_cell_length_a", "_cell_length_b", "_cell_length_c"):
            value = _float(str(data.get(key, "1")))
            if value is None or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{filename}: {key} is {data.get(key)!r}; cell lengths are positive numbers")
        for key in ("_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z", "_atom_site_occupancy"):
            values = data.get(key)
            if values is None:
                continue
            for label, token in zip(labels, [values] if isinstance(values, str) else values):
                if token in ("?", ".") and key == "_atom_site_occupancy":
                    continue
                value = _float(token)
                if value is None or not math.isfinite(value):
                    raise ValueError(f"{filename}: site {label} has {key} = {token!r}, not a number")
                if key == "_atom_site_occupancy" and not 0 < value <= 1:
                    raise ValueError(f"{filename}: site {label} has occupancy {token}; occupancies lie "
                                     "between 0 and 1")


def parse_cif(text: str, filename: str):
    """The first structure of a CIF; pymatgen's reason (from its warnings) when there is none."""
    from pymatgen.io.cif import CifParser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parser = CifParser(io.StringIO(text))
            return parser.parse_structures(primitive=False)[0]
        except Exception as err:
            reasons = [w.strip().splitlines()[-1] for w in getattr(locals().get("parser"), "warnings", [])
                       if "No structure parsed" in w]
            reason = reasons[-1] if reasons else str(err)
            if re.fullmatch(r"'_\S+'", reason):  # pymatgen's KeyError for a missing tag
                reason = f"the tag {reason} is missing"
            if "Occupancy" in reason and "exceeded" in reason:
                reason += " (atoms on top of each other, or occupancies summing above 1)"
            elif "Singular matrix" in reason:
                reason = "the cell has no volume (check the cell lengths and angles)"
            raise ValueError(f"{filename} could not be read as CIF: {reason}") from None


def check_crystal(structure, filename: str, min_distance: float) -> None:
    """Refuse a parsed structure that is not an ordered crystal of real, separate atoms."""
    from pymatgen.core import Element

    if len(structure) == 0:
        raise ValueError(f"{filename} holds no atoms")
    dummies = sorted({str(sp) for sp in structure.composition.elements if not isinstance(sp, Element)})
    if dummies:
        raise ValueError(f"{filename}: unknown element {', '.join(dummies)}")
    if not structure.is_ordered:
        raise ValueError(f"{filename}: the structure has partial occupancies; order it first (e.g. with "
                         "pymatgen's OrderDisorderedStructureTransformation)")
    if not (np.isfinite(structure.lattice.matrix).all() and np.isfinite(structure.frac_coords).all()):
        raise ValueError(f"{filename}: the lattice or the coordinates are not finite numbers")
    check_volume(structure, filename)
    centers, _, _, distances = structure.get_neighbor_list(min_distance)
    if len(centers):
        i = int(np.argmin(distances))
        site = structure[int(centers[i])]
        raise ValueError(f"{filename}: atoms overlap ({site.specie} at {np.round(site.frac_coords, 3).tolist()} "
                         f"is {distances[i]:.2f} Å from another atom; the closest real bond is 0.74 Å)")


def check_volume(structure, label: str = "the structure") -> None:
    with np.errstate(all="ignore"):  # a 1e300 Å lattice overflows to inf, which is refused below
        per_atom = abs(structure.volume) / len(structure)
    if not MIN_VOLUME_PER_ATOM <= per_atom <= MAX_VOLUME_PER_ATOM:
        raise ValueError(f"{label}: {per_atom:.1f} Å³ per atom is not a crystal (expected about 5–60); "
                         "check the lattice")
