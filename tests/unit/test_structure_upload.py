"""The structure-upload reader on every malformed file of tests/structure_files.py, without a page.

Each file is refused with a ValueError, quickly: the scans read what the text declares before
pymatgen parses it, so a 10⁴-atom CIF or a POSCAR declaring 10⁹ atoms costs no more than a
good file. The app tier replays the same files through the pages.
"""

from __future__ import annotations

import re
import time

import pytest

from battgen.data.evaluate import check_structure, read_structure
from tests.structure_files import CASES, EVALUATION_ONLY, GOOD_POSCAR

# A good 4-atom file takes about 10 ms once pymatgen is imported; the old reader spent minutes on
# the worst cases here.
PER_FILE_S = 2.0


@pytest.fixture(scope="module", autouse=True)
def pymatgen_imported():
    read_structure(GOOD_POSCAR[1], GOOD_POSCAR[0])


@pytest.mark.parametrize("case,name,data", CASES, ids=[case for case, _, _ in CASES])
def test_every_malformed_structure_is_refused_quickly(case, name, data):
    start = time.perf_counter()
    with pytest.raises(ValueError) as refused:
        structure = read_structure(data, name)
        assert case in EVALUATION_ONLY, f"{case} was read: {structure.composition.reduced_formula}"
        check_structure(structure, "Li")
    assert time.perf_counter() - start < PER_FILE_S
    assert "Traceback" not in str(refused.value) and len(str(refused.value)) < 600


@pytest.mark.parametrize("case,message", [
    ("cif-10000-atoms", "at most 1000 atoms are read"),
    ("poscar-huge-count", "declares 1000000002 atoms"),
    ("poscar-no-species-line", "names no elements"),
    ("poscar-counts-below-coordinates", "declares 3 atoms but 4 coordinate lines follow"),
    ("poscar-fewer-counts-than-species", "lists 3 elements (Li Ti S) but 2 counts"),
    ("cif-atoms-0.1A-apart", "atoms overlap"),
    ("poscar-all-atoms-at-origin", "atoms overlap"),
    ("cif-half-li", "partial occupancies"),
    ("cif-unknown-element-Zz", "unknown element Zz"),
    ("poscar-unknown-element", "unknown element Xx"),
    ("cif-negative-occupancy", "occupancy -1.0"),
    ("poscar-nan-coordinate", "not finite"),
    ("cif-zero-atoms", "without atoms"),
    ("cif-negative-cell", "cell lengths are positive"),
    ("poscar-tiny-cell", "not a crystal"),
    ("cif-beyond-pu-Am", "no training data for Am"),
])
def test_the_message_names_the_problem(case, message):
    _, name, data = next(c for c in CASES if c[0] == case)
    with pytest.raises(ValueError, match=re.escape(message)):
        check_structure(read_structure(data, name), "Li")
