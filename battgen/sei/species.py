"""Species codes of the SEI lattice, shared by the simulator, the models and every figure.

One code per interior site. The electrode row (below row 0) and the absorbing row (above the
top row) are boundaries, not stored sites.
"""

from __future__ import annotations

SOLVENT = 0  # S: ethylene carbonate / empty site
RADICAL = 1  # P: C2H4OCOOLi radical, first reduction product (mobile)
INORGANIC = 2  # F: Li2CO3, inorganic SEI (immobile)
MONOMER = 3  # O: Li2EDC, organic building block (mobile)
DIMER = 4  # OO: two bonded Li2EDC (mobile, two sites)
FREE_CLUSTER = 5  # C: >= 3 Li2EDC moving rigidly
ATTACHED = 6  # C attached to the electrode / SEI: organic SEI (immobile)

N_SPECIES = 7

SYMBOLS = ("S", "P", "F", "O", "OO", "C", "C*")
NAMES = (
    "solvent (EC)",
    "radical P",
    "Li2CO3 (inorganic SEI)",
    "Li2EDC monomer",
    "Li2EDC dimer",
    "free Li2EDC cluster",
    "attached Li2EDC (organic SEI)",
)
# One palette everywhere (lattice images, legends, per-species metrics): SEI phases strong,
# electrolyte pale, mobile intermediates in distinct mid tones.
COLORS = (
    "#eef3f8",  # solvent
    "#f4a261",  # radical
    "#1d3557",  # Li2CO3
    "#90be6d",  # monomer
    "#43aa8b",  # dimer
    "#c77dff",  # free cluster
    "#7b2cbf",  # attached organic
)
ELECTRODE_COLOR = "#3a3a3a"

SEI_CODES = (INORGANIC, ATTACHED)
MOBILE_CODES = (RADICAL, MONOMER, DIMER, FREE_CLUSTER)

# Molar masses (g/mol) of the species that make up the SEI, per site.
MOLAR_MASS = {INORGANIC: 73.89, ATTACHED: 161.95}
