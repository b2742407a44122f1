"""Candidate insertion electrodes from host frameworks that ship with installed packages.

A *template* is a known intercalation structure type with three roles: ``A`` (the sites the
working ion fills), ``M`` (the redox-active metal) and ``X`` (the anion), plus spectators that
stay as they are (P in phosphates, Si in silicates, C in cyanides). Templates come from
pymatgen's bundled structures (LiFePO4, NaFePO4, Li3V2(PO4)3, BaNiO3), from the AFLOW prototype
library pymatgen ships (its ternary ionic prototypes and the pyroxene silicate, each with a role
per element), or from textbook space groups and Wyckoff positions (layered O3, P2, 1T and 2H,
spinel, ReO3/perovskite, delafossite, rutile channels, anatase, hollandite, Prussian blue); the
relaxation fixes their lattice constants, so the starting values only need the right topology
(``test_data_frameworks`` checks every template's bond lengths).

A candidate substitutes one working ion for ``A``, one metal for ``M`` and one anion for ``X``
and keeps only charge-balanced pairs: the metal's mean oxidation state must lie inside the range
observed in ICSD (pymatgen's ``icsd_oxidation_states``) both with the ions in (discharged) and
with all ions out (charged). Multivalent ions fill only as many ``A`` sites as the metal can
take electrons for; where one cell has too few sites for that, it is doubled. A host with two
or more ions per cell also gets the half-filled state, so its voltage profile has two steps.

Two more roles cover hosts where lithium is part of the framework. ``S`` sites hold lithium that
stays whatever the working ion (Li in the transition-metal layer of Li2MnO3, Li on the spinel
16d sites of Li4Ti5O12; a template can also turn a share of its ``M`` sites into ``S``). ``V``
sites hold the working ion in the *charged* state and are emptied on discharge, when the ions
move to the ``A`` sites instead (Li4Ti5O12's 8a → 16c, tetrahedral spinel to rock salt).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import lru_cache
from math import gcd

import numpy as np

from battgen.data.properties import ION_CHARGE, WORKING_IONS

REDOX_METALS: tuple[str, ...] = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Nb", "Mo", "W")
ANION_CHARGE = {"O": -2, "S": -2, "Se": -2, "Te": -2, "F": -1, "N": -3}
# Cyanide counts as C(+2) N(-3), so a Prussian-blue host with N as its anion role balances
# like CN- without a molecular-anion rule.
SPECTATOR_CHARGE = {"P": 5, "C": 2, "Si": 4}
# Placeholders used in template definitions; real elements replace them. S (lithium that stays)
# and V (sites the working ion leaves on discharge) need stand-ins no template uses otherwise.
ROLE_SPECIES = {"A": "Li", "M": "Co", "X": "O", "S": "Be", "V": "Mg"}
STAYING_ION = "Li"


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    anions: tuple[str, ...]
    # "spacegroup": (number, lattice kind, lattice params, roles or spectator elements, fractional coords)
    spacegroup: tuple | None = None
    # a structure file of pymatgen/util/structures and its role map {element: role}
    bundled: tuple[str, dict] | None = None
    # an AFLOW prototype label of pymatgen's library and its role map {element: role}
    prototype: tuple[str, dict] | None = None
    metals: tuple[str, ...] = REDOX_METALS
    # More ions than this per metal atom is not an insertion compound any more (rutile's 4c
    # channel sites outnumber its metals two to one).
    max_ions_per_metal: float = 1.0
    # (k, n): k of every n M sites hold lithium that stays (S); the cell grows until n divides
    # its M count, and the S sites are chosen far apart.
    staying_share: tuple[int, int] | None = None
    # The working ions the template is made for (None: all); V sites hold the working ion in the
    # charged state, which only makes sense for the ion the real compound has.
    ions: tuple[str, ...] | None = None

    def structure(self):
        """The template with its generic roles shown as pymatgen species A→Li, M→Co, X→O, S→Be,
        V→Mg (primitive, or the smallest supercell its ``staying_share`` needs)."""
        return _template_structure(self.name).copy()


TEMPLATES: tuple[Template, ...] = (
    Template("layered-O3", "α-NaFeO2 layered (R-3m), ions in octahedral interlayer sites",
             ("O", "S", "Se"),
             spacegroup=(166, "hexagonal", (2.85, 14.2), ["A", "M", "X"],
                         [[0, 0, 0.5], [0, 0, 0], [0, 0, 0.24]])),
    Template("layered-1T", "CdI2/TiS2 (P-3m1), ions in the van der Waals gap",
             ("S", "Se", "Te", "O"),
             spacegroup=(164, "hexagonal", (3.4, 6.2), ["A", "M", "X"],
                         [[0, 0, 0.5], [0, 0, 0], [1 / 3, 2 / 3, 0.25]])),
    Template("layered-2H", "MoS2 2H (P6_3/mmc), ions between trigonal-prismatic layers",
             ("S", "Se", "Te"),
             spacegroup=(194, "hexagonal", (3.2, 13.5), ["A", "M", "X"],
                         [[0, 0, 0], [1 / 3, 2 / 3, 0.25], [1 / 3, 2 / 3, 0.621]])),
    Template("spinel", "spinel AM2X4 (Fd-3m, origin 1), ions on tetrahedral 8a",
             ("O", "S", "Se"),
             spacegroup=(227, "cubic", (8.3,), ["A", "M", "X"],
                         [[0, 0, 0], [0.625, 0.625, 0.625], [0.388, 0.388, 0.388]])),
    Template("perovskite", "ReO3 host with ions in the cuboctahedral A site (Pm-3m)",
             ("O", "F"),
             spacegroup=(221, "cubic", (3.9,), ["A", "M", "X"],
                         [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0]])),
    Template("delafossite", "CuFeO2 (R-3m), ions linearly coordinated between layers",
             ("O",),
             spacegroup=(166, "hexagonal", (3.0, 17.2), ["A", "M", "X"],
                         [[0, 0, 0], [0, 0, 0.5], [0, 0, 0.107]])),
    Template("rutile-channel", "rutile MO2 (P4_2/mnm), ions in the c-axis channels",
             ("O",),
             spacegroup=(136, "tetragonal", (4.6, 3.0), ["A", "M", "X"],
                         [[0, 0.5, 0.5], [0, 0, 0], [0.305, 0.305, 0]])),
    Template("layered-P2", "P2 NaxCoO2 (P6_3/mmc), ions in trigonal prisms between MO2 layers",
             ("O", "S"),
             spacegroup=(194, "hexagonal", (2.85, 11.0), ["A", "M", "X"],
                         [[2 / 3, 1 / 3, 0.25], [0, 0, 0], [1 / 3, 2 / 3, 0.09]])),
    Template("anatase", "anatase TiO2 (I4_1/amd), ions in the octahedral interstices (x ≤ 0.5)",
             ("O",),
             spacegroup=(141, "tetragonal", (3.78, 9.5), ["A", "M", "X"],
                         [[0, 0, 0.5], [0, 0, 0], [0, 0, 0.2083]]),
             max_ions_per_metal=0.5),
    Template("hollandite", "α-MnO2 hollandite (I4/m), ions in the 2×2 tunnels", ("O",),
             spacegroup=(87, "tetragonal", (9.8, 2.86), ["A", "M", "X", "X"],
                         [[0, 0, 0.5], [0.348, 0.167, 0], [0.153, 0.198, 0], [0.542, 0.167, 0]])),
    Template("V2O5", "orthorhombic V2O5 (Pmmn), ions between the vanadyl layers", ("O",),
             spacegroup=(59, "orthorhombic", (11.51, 3.564, 4.368), ["A", "M", "X", "X", "X"],
                         [[0, 0.5, 0.6], [0.35118, 0.5, 0.89163], [0.3543, 0.5, 0.5311],
                          [0.5, 0.5, 0.0012], [0.1811, 0.5, 0.0027]]),
             metals=("V", "Mo", "Nb", "Cr", "Mn", "W")),
    Template("chevrel", "Chevrel Mo6S8 (R-3), ions in the cavity between Mo6 clusters",
             ("S", "Se", "Te"),
             spacegroup=(148, "hexagonal", (9.19, 10.88), ["A", "M", "X", "X"],
                         [[0, 0, 0], [0.01708, 0.17035, 0.39705], [0.3192, 0.2924, 0.4152],
                          [0, 0, 0.2097]]),
             metals=("Mo",)),
    Template("prussian-blue", "Prussian-blue analogue A2M[M(CN)6] (Fm-3m), ions in the cages",
             ("N",),
             spacegroup=(225, "cubic", (10.2,), ["A", "M", "M", "C", "X"],
                         [[0.25, 0.25, 0.25], [0, 0, 0], [0.5, 0.5, 0.5], [0.19, 0, 0], [0.30, 0, 0]]),
             metals=("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")),
    Template("Li4Ti5O12", "Li4Ti5O12 spinel Li[Li1/3M5/3]O4 (Fd-3m, origin 1): Li on 16d stays, "
             "8a Li moves to 16c on discharge (spinel → rock salt Li7Ti5O12)", ("O",),
             spacegroup=(227, "cubic", (8.36,), ["V", "A", "M", "X"],
                         [[0, 0, 0], [0.125, 0.125, 0.125], [0.625, 0.625, 0.625],
                          [0.3875, 0.3875, 0.3875]]),
             metals=("Ti", "Mn"), max_ions_per_metal=1.2, staying_share=(1, 6), ions=("Li",)),
    Template("Li2MnO3", "Li2MnO3 (C2/m), Li in the transition-metal layer (2b) stays, ions in the "
             "interlayer octahedra (2c, 4h)", ("O",),
             spacegroup=(12, "monoclinic", (4.937, 8.532, 5.030, 109.46), ["S", "A", "A", "M", "X", "X"],
                         [[0, 0.5, 0], [0, 0, 0.5], [0, 0.6606, 0.5], [0, 0.16708, 0],
                          [0.2189, 0, 0.2273], [0.2540, 0.32119, 0.2233]]),
             metals=("Mn", "Cr", "Mo", "W", "V", "Nb", "Fe", "Ni", "Co"), max_ions_per_metal=1.5),
    Template("perovskite-GdFeO3", "orthorhombic perovskite CaTiO3 (Pnma, AFLOW prototype)",
             ("O", "F"), prototype=("AB3C_oP20_62_c_cd_a", {"Ca": "A", "Ti": "M", "O": "X"})),
    Template("K2NiF4", "(La,Ba)2CuO4 / K2NiF4 (I4/mmm, AFLOW prototype), ions in rock-salt layers",
             ("O", "F"), prototype=("AB2C4_tI14_139_a_e_ce", {"La": "A", "Cu": "M", "O": "X"})),
    Template("ilmenite", "ilmenite FeTiO3 (R-3, AFLOW prototype), ions on the A octahedra", ("O",),
             prototype=("AB3C_hR10_148_c_f_c", {"Fe": "A", "Ti": "M", "O": "X"})),
    Template("LiNbO3", "LiNbO3 (R3c, AFLOW prototype)", ("O",),
             prototype=("ABC3_hR10_161_a_a_b", {"Li": "A", "Nb": "M", "O": "X"})),
    Template("LiNbO3-paraelectric", "paraelectric LiNbO3 (R-3c, AFLOW prototype)", ("O",),
             prototype=("ABC3_hR10_167_a_b_e", {"Li": "A", "Nb": "M", "O": "X"})),
    Template("infinite-layer", "CaCuO2 infinite layer (P4/mmm, AFLOW prototype)", ("O",),
             prototype=("ABC2_tP4_123_d_a_f", {"Ca": "A", "Cu": "M", "O": "X"})),
    Template("chalcopyrite", "chalcopyrite CuFeS2 (I-42d, AFLOW prototype), ions on Cu", ("S", "Se"),
             prototype=("ABC2_tI16_122_a_b_d", {"Cu": "A", "Fe": "M", "S": "X"})),
    Template("SrCuO2", "SrCuO2 chains (Cmcm, AFLOW prototype), ions between CuO2 ribbons", ("O",),
             prototype=("AB2C_oC16_63_c_2c_c", {"Sr": "A", "Cu": "M", "O": "X"})),
    Template("thiogallate", "defect spinel CdAl2S4 (I-4, AFLOW prototype), ions on Cd", ("S", "Se"),
             prototype=("A2BC4_tI14_82_bc_a_g", {"Cd": "A", "Al": "M", "S": "X"})),
    Template("perovskite-2H", "hexagonal perovskite BaNiO3 (P6_3mc, pymatgen's bundled structure), "
             "ions in the channels between face-sharing octahedra", ("O", "S"),
             bundled=("BaNiO3.json", {"Ba": "A", "Ni": "M"})),
    # Beyond Fe/Mn/Co/Ni: the M2+/M3+ olivine phosphates of high-throughput phosphate screens
    # (V, Cr, Cu, Ti); the 4d/5d metals stay out, their 2+ state in a phosphate is not known.
    Template("olivine", "olivine LiFePO4 (pymatgen's bundled structure)", ("O",),
             bundled=("LiFePO4.json", {"Li": "A", "Fe": "M"}),
             metals=("Fe", "Mn", "Co", "Ni", "V", "Cr", "Cu", "Ti")),
    Template("olivine-Na", "NaFePO4 (Pnma, pymatgen's bundled structure)", ("O",),
             bundled=("NaFePO4.json", {"Na": "A", "Fe": "M"}),
             metals=("Fe", "Mn", "Co", "Ni", "V", "Cr", "Cu", "Ti")),
    Template("pyroxene", "pyroxene silicate AMSi2O6 (C2/c; AFLOW's esseneite prototype), ions on the "
             "M2 site between the SiO4 chains (LiFeSi2O6, NaCrSi2O6)", ("O",),
             prototype=("ABC6D2_mC40_15_e_e_3f_f", {"Ca": "A", "Fe": "M", "O": "X", "Si": "Si"})),
    Template("nasicon", "Li3V2(PO4)3 (pymatgen's bundled structure)", ("O",),
             bundled=("Li3V2(PO4)3.json", {"Li": "A", "V": "M"}),
             metals=("Ti", "V", "Cr", "Mn", "Fe", "Nb", "Mo"), max_ions_per_metal=1.5),
)
TEMPLATE_BY_NAME = {t.name: t for t in TEMPLATES}


@lru_cache(maxsize=None)
def _template_structure(name: str):
    from pymatgen.core import Lattice, Structure

    template = TEMPLATE_BY_NAME[name]
    if template.spacegroup is not None:
        number, kind, params, roles, coords = template.spacegroup
        lattice = getattr(Lattice, kind)(*params)
        species = [ROLE_SPECIES.get(r, r) for r in roles]  # anything else is a spectator element
        structure = Structure.from_spacegroup(number, lattice, species, coords).get_primitive_structure()
        return _with_staying_share(structure, template.staying_share)
    if template.prototype is not None:
        label, role_map = template.prototype
        structure = aflow_prototype(label, tuple(sorted(role_map)))
    else:
        import pymatgen.util

        filename, role_map = template.bundled
        folder = os.path.join(os.path.dirname(pymatgen.util.__file__), "structures")
        structure = Structure.from_file(os.path.join(folder, filename))
    structure.remove_oxidation_states()
    _substitute_roles(structure, role_map)
    return structure.get_primitive_structure() if template.prototype is not None else structure


def _with_staying_share(structure, share: tuple[int, int] | None):
    if share is None:
        return structure
    k, n = share
    metals = [i for i, site in enumerate(structure) if site.specie.symbol == ROLE_SPECIES["M"]]
    structure = _supercell(structure, n // gcd(len(metals), n))
    metals = [i for i, site in enumerate(structure) if site.specie.symbol == ROLE_SPECIES["M"]]
    for i in _spread_sites(structure, metals, len(metals) * k // n):
        structure.replace(i, ROLE_SPECIES["S"])
    return structure


def _substitute_roles(structure, role_map: dict) -> None:
    # Via dummies: a prototype's own elements can be stand-ins for another role (O is X's).
    from pymatgen.core import DummySpecies

    dummies = {el: DummySpecies(f"X{role.lower()}") for el, role in role_map.items()}
    structure.replace_species(dummies)
    # A role that is not a generic one is a spectator element that stays (Si in a pyroxene).
    structure.replace_species({dummies[el]: ROLE_SPECIES.get(role, role) for el, role in role_map.items()})


@lru_cache(maxsize=None)
def _aflow_library() -> dict:
    import pymatgen.analysis.prototypes
    from monty.serialization import loadfn

    folder = os.path.dirname(pymatgen.analysis.prototypes.__file__)
    entries = loadfn(os.path.join(folder, "aflow_prototypes.json.gz"))
    # One label can name two compounds (calcite and paraelectric LiNbO3 are both
    # ABC3_hR10_167_a_b_e), so the elements are part of the key.
    return {(e["tags"]["aflow"], tuple(sorted(el.symbol for el in e["snl"].structure.composition))):
            e["snl"].structure for e in entries}


def aflow_prototype(label: str, elements: tuple[str, ...]):
    """A copy of the structure of pymatgen's AFLOW prototype library with this label and elements."""
    return _aflow_library()[(label, tuple(sorted(elements)))].copy()


@dataclass(frozen=True)
class Candidate:
    """One electrode to compute: discharged = ``n_ions`` ions in a host; charged = host alone."""

    template: str
    ion: str
    metal: str
    anion: str
    supercell: int  # 1 or 2 (cell doubled along its shortest axis)
    n_ions: int
    n_sites: int
    metal_ox_discharged: float
    metal_ox_charged: float
    # ions on V sites in the charged state, gone from there on discharge (net change n_ions - n_vacated)
    n_vacated: int = 0

    @property
    def framework_key(self) -> str:
        return f"{self.template}_{self.metal}_{self.anion}_x{self.supercell}"

    @property
    def key(self) -> str:
        return f"{self.framework_key}_{self.ion}{self.n_ions}"

    @property
    def intermediates(self) -> tuple["Candidate", ...]:
        """Partially filled states between charged and discharged: the half-filled cell.

        Charge-balanced by construction (its metal oxidation state lies between the two end
        states); relaxed like a discharged state, so ``InsertionElectrode`` gets three points.
        """
        if self.n_ions < 2 or self.n_vacated:
            return ()  # which V sites empty as A sites fill is not modelled
        half = self.n_ions // 2
        ox = self.metal_ox_charged + (self.metal_ox_discharged - self.metal_ox_charged) * half / self.n_ions
        return (replace(self, n_ions=half, metal_ox_discharged=ox),)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _metal_ox_range(metal: str) -> tuple[int, int]:
    from pymatgen.core import Element

    states = [s for s in Element(metal).icsd_oxidation_states if s > 0]
    return min(states), max(states)


def _host_counts(template: Template) -> tuple[int, int, int, dict, int, int]:
    """(A sites, M atoms, anion atoms, spectator counts, S sites, V sites) of one template cell."""
    s = template.structure()
    comp = s.composition.element_composition
    spectators = {el.symbol: int(n) for el, n in comp.items()
                  if el.symbol not in ROLE_SPECIES.values()}
    return (int(comp[ROLE_SPECIES["A"]]), int(comp[ROLE_SPECIES["M"]]),
            int(comp[ROLE_SPECIES["X"]]), spectators, int(comp[ROLE_SPECIES["S"]]),
            int(comp[ROLE_SPECIES["V"]]))


def plan_candidate(template: Template, ion: str, metal: str, anion: str) -> Candidate | None:
    """The charge-balanced candidate with the most ions, or None if no filling balances."""
    if template.ions is not None and ion not in template.ions:
        return None
    n_a, n_m, n_x, spectators, n_s, n_v = _host_counts(template)
    low, high = _metal_ox_range(metal)
    spectator_charge = sum(SPECTATOR_CHARGE.get(el, 0) * n for el, n in spectators.items())
    if any(el not in SPECTATOR_CHARGE and el not in ANION_CHARGE for el in spectators):
        return None
    for supercell in (1, 2):
        anion_total = -ANION_CHARGE[anion] * n_x * supercell
        # Spectators that are anions (O in a phosphate) count with their charge.
        host_charge = anion_total - spectator_charge * supercell
        for el, n in spectators.items():
            if el in ANION_CHARGE:
                host_charge += -ANION_CHARGE[el] * n * supercell
        host_charge -= n_s * supercell * ION_CHARGE[STAYING_ION]
        vacated = n_v * supercell
        metals = n_m * supercell
        charged_ox = Fraction(host_charge - vacated * ION_CHARGE[ion], metals)
        if not (low <= charged_ox <= high):
            return None  # the empty host is already impossible; doubling will not help
        most = min(n_a * supercell, int(template.max_ions_per_metal * metals))
        for n in range(most, 0, -1):
            ox = Fraction(host_charge - n * ION_CHARGE[ion], metals)
            if low <= ox <= high and ox >= 1:
                return Candidate(template.name, ion, metal, anion, supercell, n, n_a * supercell,
                                 float(ox), float(charged_ox), vacated)
    return None


def plan_candidates(templates=TEMPLATES, ions=WORKING_IONS) -> list[Candidate]:
    out = []
    for template in templates:
        for metal in template.metals:
            for anion in template.anions:
                for ion in ions:
                    c = plan_candidate(template, ion, metal, anion)
                    if c is not None:
                        out.append(c)
    return out


def _supercell(structure, factor: int):
    if factor == 1:
        return structure.copy()
    axis = int(np.argmin(structure.lattice.abc))
    scale = [1, 1, 1]
    scale[axis] = factor
    return structure.make_supercell(scale, in_place=False)


def _spread_sites(structure, indices: list[int], n: int) -> list[int]:
    """``n`` of ``indices`` chosen greedily far apart (periodic distances), deterministic."""
    if n >= len(indices):
        return list(indices)
    coords = structure.frac_coords[indices]
    dist = structure.lattice.get_all_distances(coords, coords)
    chosen = [0]
    while len(chosen) < n:
        d_min = dist[:, chosen].min(axis=1)
        d_min[chosen] = -1
        chosen.append(int(np.argmax(d_min)))
    return [indices[i] for i in sorted(chosen)]


def framework_structure(candidate: Candidate):
    """The charged host: template with roles substituted, every A site empty, V sites holding
    the working ion and S sites lithium."""
    s = _supercell(candidate_template(candidate).structure(), candidate.supercell)
    s.remove_species([ROLE_SPECIES["A"]])
    _substitute(s, candidate.metal, candidate.anion)
    _fill_fixed_roles(s, candidate.ion)
    return s


def discharged_structure(candidate: Candidate):
    """The host with ``n_ions`` of its A sites filled by the working ion, the rest and every V
    site empty, S sites lithium."""
    s = _supercell(candidate_template(candidate).structure(), candidate.supercell)
    s.remove_species([ROLE_SPECIES["V"]])
    a_sites = [i for i, site in enumerate(s) if site.specie.symbol == ROLE_SPECIES["A"]]
    keep = set(_spread_sites(s, a_sites, candidate.n_ions))
    s.remove_sites([i for i in a_sites if i not in keep])
    _substitute(s, candidate.metal, candidate.anion, ion=candidate.ion)
    _fill_fixed_roles(s, candidate.ion)
    return s


def _fill_fixed_roles(structure, ion: str) -> None:
    # After _substitute: its dummies never touch the S and V stand-ins, so no collision here.
    present = {el.symbol for el in structure.composition.elements}
    mapping = {ROLE_SPECIES["S"]: STAYING_ION, ROLE_SPECIES["V"]: ion}
    structure.replace_species({k: v for k, v in mapping.items() if k in present})


def _substitute(structure, metal: str, anion: str, ion: str | None = None) -> None:
    # Placeholders can collide with real targets (Co→Li when the ion is Li), so go via dummies.
    from pymatgen.core import DummySpecies

    mapping = {ROLE_SPECIES["M"]: DummySpecies("Xm"), ROLE_SPECIES["X"]: DummySpecies("Xx")}
    if ion is not None:
        mapping[ROLE_SPECIES["A"]] = DummySpecies("Xa")
    present = {el.symbol for el in structure.composition.elements}
    structure.replace_species({k: v for k, v in mapping.items() if k in present})
    final = {"Xm0+": metal, "Xx0+": anion, "Xa0+": ion}
    structure.replace_species({sp: final[str(sp)] for sp in structure.composition.elements
                               if str(sp) in final})


def candidate_template(candidate: Candidate) -> Template:
    return TEMPLATE_BY_NAME[candidate.template]


def elemental_reference_structure(element: str):
    """Ground-state-type metal of a working ion, for its reference energy per atom."""
    from pymatgen.core import Lattice, Structure

    kinds = {
        "Li": ("bcc", 3.44), "Na": ("bcc", 4.23), "K": ("bcc", 5.23), "Rb": ("bcc", 5.59),
        "Cs": ("bcc", 6.05), "Ca": ("fcc", 5.58), "Al": ("fcc", 4.05),
        "Mg": ("hcp", 3.21, 5.21), "Zn": ("hcp", 2.66, 4.95), "Y": ("hcp", 3.65, 5.73),
    }
    kind, *params = kinds[element]
    if kind == "bcc":
        return Structure(Lattice.cubic(params[0]), [element] * 2, [[0, 0, 0], [0.5, 0.5, 0.5]])
    if kind == "fcc":
        return Structure.from_spacegroup(225, Lattice.cubic(params[0]), [element], [[0, 0, 0]]).get_primitive_structure()
    a, c = params
    return Structure(Lattice.hexagonal(a, c), [element] * 2, [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
