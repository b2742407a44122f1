"""Structure files (CIF, POSCAR) for the structure-upload tests: one good electrode and every way we
know an upload can be wrong, generated from parts so that each case corrupts one thing.

The unit tier runs the reader over the cases (tests/unit/test_structure_upload.py); the app tier
replays them through both pages that take a structure upload (tests/app/test_hostile_structures.py).
"""

from __future__ import annotations

import numpy as np

# LiTiS2 (1T): a real 4-atom electrode every case is a distortion of.
LATTICE = "3.43 0 0\n-1.715 2.970467 0\n0 0 6.19"
SITES = [("Li", (0, 0, 0.5)), ("Ti", (0, 0, 0)), ("S", (1 / 3, 2 / 3, 0.25)), ("S", (2 / 3, 1 / 3, 0.75))]


def poscar(species: list[str], counts: list[str] | None = None, coords: list[tuple] | None = None,
           lattice: str = LATTICE, scale: str = "1.0", mode: str = "Direct") -> bytes:
    """POSCAR text from parts, each of which a case may corrupt on its own."""
    coords = coords if coords is not None else [xyz for _, xyz in SITES]
    counts = counts if counts is not None else _counts(species, [s for s, _ in SITES])
    names = list(dict.fromkeys(species))
    lines = ["hostile", scale, lattice, " ".join(names), " ".join(counts), mode]
    lines += [" ".join(f"{v:.6f}" if isinstance(v, float) else str(v) for v in xyz) for xyz in coords]
    return ("\n".join(lines) + "\n").encode()


def _counts(names: list[str], sites: list[str]) -> list[str]:
    return [str(sites.count(n)) for n in dict.fromkeys(names)]


def cif(sites: list[tuple[str, str, tuple, float]], *, a="3.43", b="3.43", c="6.19", alpha="90", beta="90",
        gamma="120", symops: list[str] | None = None, extra: str = "") -> bytes:
    """CIF text: cell, symmetry operations and an atom_site loop of (label, symbol, xyz, occupancy)."""
    ops = symops or ["x, y, z"]
    text = [
        "data_hostile",
        f"_cell_length_a {a}", f"_cell_length_b {b}", f"_cell_length_c {c}",
        f"_cell_angle_alpha {alpha}", f"_cell_angle_beta {beta}", f"_cell_angle_gamma {gamma}",
        "_symmetry_space_group_name_H-M 'P 1'",
        "loop_", "_symmetry_equiv_pos_as_xyz", *[f"'{op}'" for op in ops],
        extra,
        "loop_", "_atom_site_label", "_atom_site_type_symbol", "_atom_site_fract_x", "_atom_site_fract_y",
        "_atom_site_fract_z", "_atom_site_occupancy",
    ]
    text += [f"{label} {symbol} {x} {y} {z} {occ}" for label, symbol, (x, y, z), occ in sites]
    return ("\n".join(text) + "\n").encode()


def good_sites() -> list[tuple[str, str, tuple, float]]:
    return [(f"{s}{i}", s, xyz, 1.0) for i, (s, xyz) in enumerate(SITES)]


def grid_sites(n: int, symbol: str = "Li") -> list[tuple[str, str, tuple, float]]:
    side = int(np.ceil(n ** (1 / 3)))
    points = [(i / side, j / side, k / side) for i in range(side) for j in range(side) for k in range(side)][:n]
    return [(f"{symbol}{i}", symbol, tuple(round(v, 5) for v in p), 1.0) for i, p in enumerate(points)]


def structure_cases() -> list[tuple[str, str, bytes]]:
    """(case id, file name, bytes): every way a structure upload can be wrong that we know of."""
    li, ti, s1, s2 = SITES
    cases: list[tuple[str, str, bytes]] = []

    def add(case: str, name: str, data: bytes) -> None:
        cases.append((case, name, data))

    # Not a structure file at all.
    add("wrong-extension-txt", "LiTiS2.txt", poscar(["Li", "Ti", "S"]))
    add("wrong-extension-xyz", "LiTiS2.xyz", b"4\n\nLi 0 0 0\n")
    add("no-extension", "structure", poscar(["Li", "Ti", "S"]))
    add("empty-cif", "empty.cif", b"")
    add("empty-poscar", "POSCAR", b"")
    add("binary-cif", "binary.cif", bytes(range(256)) * 4)
    add("png-as-cif", "image.cif", b"\x89PNG\r\n\x1a\n" + bytes(200))
    add("utf16-cif", "utf16.cif", cif(good_sites()).decode().encode("utf-16"))
    add("over-2MB", "huge.cif", b"#" * (2 * 1024 * 1024 + 10))
    add("whitespace-cif", "blank.cif", b"   \n\n\t\n")
    add("nul-bytes-poscar", "nul.vasp", b"\x00" * 512)
    # Broken CIF syntax.
    add("cif-no-data-block", "noblock.cif", b"_cell_length_a 3\n")
    add("cif-loop-without-rows", "loop.cif", b"data_x\n_cell_length_a 3\nloop_\n_atom_site_label\n")
    add("cif-unterminated-quote", "quote.cif", b"data_x\n_cell_length_a '3\n")
    add("cif-no-cell", "nocell.cif", b"data_x\nloop_\n_atom_site_label\n_atom_site_fract_x\nLi1 0\n")
    # Zero atoms.
    add("cif-zero-atoms", "zero.cif", cif([]))
    add("poscar-zero-counts", "zero.vasp", poscar(["Li"], counts=["0"], coords=[]))
    add("poscar-no-coordinates", "nocoords.vasp", poscar(["Li", "Ti", "S"], coords=[]))
    # Partial occupancy.
    add("cif-half-li", "half.cif", cif([("Li0", "Li", li[1], 0.5), *good_sites()[1:]]))
    add("cif-mixed-site", "mixed.cif", cif([("Li0", "Li", li[1], 0.5), ("Na0", "Na", li[1], 0.5),
                                              *good_sites()[1:]]))
    add("cif-vacancy-everywhere", "vacant.cif", cif([(lab, sym, xyz, 0.3) for lab, sym, xyz, _ in good_sites()]))
    add("cif-occupancy-over-1", "over.cif", cif([("Li0", "Li", li[1], 1.7), *good_sites()[1:]]))
    add("cif-negative-occupancy", "negocc.cif", cif([("Li0", "Li", li[1], -1.0), *good_sites()[1:]]))
    # Overlapping atoms.
    add("cif-two-atoms-one-place", "overlap.cif", cif([*good_sites(), ("Li9", "Li", ti[1], 1.0)]))
    add("cif-atoms-0.1A-apart", "close.cif", cif([*good_sites(), ("S9", "S", (1 / 3, 2 / 3, 0.26), 1.0)]))
    add("poscar-duplicate-position", "dup.vasp",
        poscar(["Li", "Ti", "S"], counts=["2", "1", "2"], coords=[li[1], li[1], ti[1], s1[1], s2[1]]))
    add("poscar-all-atoms-at-origin", "origin.vasp",
        poscar(["Li", "Ti", "S"], coords=[(0.0, 0.0, 0.0)] * 4))
    # Too many atoms (the 10⁴-atom cases must be refused before pymatgen works through them).
    add("cif-10000-atoms", "big.cif", cif(grid_sites(10_000), a="200", b="200", c="200", gamma="90"))
    add("poscar-10000-atoms", "big.vasp",
        poscar(["Li"], counts=["10000"], coords=[xyz for _, _, xyz, _ in grid_sites(10_000)],
               lattice="200 0 0\n0 200 0\n0 0 200"))
    add("cif-2000-sites-x-192-ops", "expand.cif",
        cif(grid_sites(2_000), a="100", b="100", c="100", gamma="90",
            symops=[f"{sx}{p}, {sy}{q}, {sz}{r}" for p, q, r in ("xyz", "yzx", "zxy", "xzy", "yxz", "zyx")
                    for sx in "+-" for sy in "+-" for sz in "+-"] * 4))
    add("poscar-200-atoms", "cell200.vasp",
        poscar(["Li", "S"], counts=["100", "100"], coords=[xyz for _, _, xyz, _ in grid_sites(200)],
               lattice="20 0 0\n0 20 0\n0 0 20"))
    # Unknown or unsupported elements.
    for symbol in ("Xx", "Qq", "Zz", "J", "123", "Uuo"):
        add(f"cif-unknown-element-{symbol}", f"unknown_{symbol}.cif",
            cif([(f"{symbol}0", symbol, li[1], 1.0), *good_sites()[1:]]))
    add("poscar-unknown-element", "unknown.vasp", poscar(["Xx", "Ti", "S"]))
    add("poscar-lowercase-garbage-element", "garbage.vasp", poscar(["foo", "Ti", "S"]))
    for symbol in ("Am", "Og", "Fm"):  # real elements CHGNet was never trained on
        add(f"cif-beyond-pu-{symbol}", f"heavy_{symbol}.cif",
            cif([("Li0", "Li", li[1], 1.0), (f"{symbol}1", symbol, ti[1], 1.0), *good_sites()[2:]]))
    # POSCAR counts that do not match the coordinates or the species.
    add("poscar-counts-exceed-coordinates", "more.vasp", poscar(["Li", "Ti", "S"], counts=["1", "1", "5"]))
    add("poscar-counts-below-coordinates", "fewer.vasp", poscar(["Li", "Ti", "S"], counts=["1", "1", "1"]))
    add("poscar-more-counts-than-species", "extra.vasp", poscar(["Li", "Ti", "S"], counts=["1", "1", "2", "4"]))
    add("poscar-fewer-counts-than-species", "short.vasp", poscar(["Li", "Ti", "S"], counts=["1", "1"]))
    add("poscar-negative-count", "negative.vasp", poscar(["Li", "Ti", "S"], counts=["-1", "1", "2"]))
    add("poscar-fractional-count", "fraction.vasp", poscar(["Li", "Ti", "S"], counts=["1.5", "1", "2"]))
    add("poscar-text-count", "text.vasp", poscar(["Li", "Ti", "S"], counts=["one", "1", "2"]))
    add("poscar-huge-count", "hugecount.vasp", poscar(["Li", "Ti", "S"], counts=["999999999", "1", "2"]))
    add("poscar-no-species-line", "nospecies.vasp",
        b"hostile\n1.0\n" + LATTICE.encode() + b"\n1 1 2\nDirect\n0 0 0.5\n0 0 0\n0.33 0.67 0.25\n0.67 0.33 0.75\n")
    # Lattices that are no crystal.
    add("poscar-zero-scale", "zeroscale.vasp", poscar(["Li", "Ti", "S"], scale="0"))
    add("poscar-negative-volume-scale", "negscale.vasp", poscar(["Li", "Ti", "S"], scale="-0.001"))
    add("poscar-singular-lattice", "flat.vasp", poscar(["Li", "Ti", "S"], lattice="1 0 0\n2 0 0\n0 0 1"))
    add("poscar-nan-lattice", "nanlattice.vasp", poscar(["Li", "Ti", "S"], lattice="nan 0 0\n0 3 0\n0 0 3"))
    add("poscar-inf-coordinate", "infcoord.vasp",
        poscar(["Li", "Ti", "S"], coords=[("inf", 0, 0), ti[1], s1[1], s2[1]]))
    add("poscar-nan-coordinate", "nancoord.vasp",
        poscar(["Li", "Ti", "S"], coords=[("nan", 0, 0), ti[1], s1[1], s2[1]]))
    add("poscar-1e300-lattice", "vast.vasp", poscar(["Li", "Ti", "S"], lattice="1e300 0 0\n0 1e300 0\n0 0 1e300"))
    add("cif-zero-cell", "zerocell.cif", cif(good_sites(), a="0", b="0", c="0"))
    add("cif-negative-cell", "negcell.cif", cif(good_sites(), a="-3.43"))
    add("cif-impossible-angles", "angles.cif", cif(good_sites(), alpha="170", beta="170", gamma="170"))
    add("cif-nan-coordinate", "nan.cif", cif([("Li0", "Li", ("nan", 0, 0.5), 1.0), *good_sites()[1:]]))
    add("cif-text-coordinate", "textcoord.cif", cif([("Li0", "Li", ("x", 0, 0.5), 1.0), *good_sites()[1:]]))
    add("cif-garbage-symop", "symop.cif", cif(good_sites(), symops=["x, y, z", "import os"]))
    add("poscar-tiny-cell", "tiny.vasp", poscar(["Li", "Ti", "S"], lattice="0.5 0 0\n0 0.5 0\n0 0 0.5"))
    add("poscar-vast-cell", "sparse.vasp", poscar(["Li", "Ti", "S"], lattice="100 0 0\n0 100 0\n0 0 100"))
    return cases


GOOD_POSCAR = ("LiTiS2.vasp", poscar(["Li", "Ti", "S"]))
CASES = structure_cases()
# Real crystals that only the electrode evaluation refuses (CHGNet's size and element range);
# the AFM simulator takes them, so there they must be accepted.
EVALUATION_ONLY = {"poscar-200-atoms", "cif-beyond-pu-Am", "cif-beyond-pu-Og", "cif-beyond-pu-Fm"}
