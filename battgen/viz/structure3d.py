"""Interactive 3D view of a crystal structure: 3Dmol.js through py3Dmol, served by the app itself.

py3Dmol writes a self-contained HTML snippet that normally pulls 3Dmol.js from a CDN; here it
loads the copy that ``make assets`` puts in ``static/vendor/`` and Streamlit serves at
``/app/static/``, so the viewer works offline. Show the HTML with ``st.iframe(html, height=...)``
(``st.components.v1.html`` in older Streamlit): that iframe shares the app's origin, so the
absolute script path resolves to the app server.

Colours follow VESTA's element scheme (familiar to crystallographers) and are set explicitly per
element, so the legend drawn next to the atoms shows exactly the colours on screen.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VIEWER_SCRIPT_FILE = REPO_ROOT / "static" / "vendor" / "3Dmol-min.js"
VIEWER_SCRIPT_URL = "/app/static/vendor/3Dmol-min.js"

STYLES = ("ball-and-stick", "spheres", "sticks")
UNKNOWN_ELEMENT_COLOR = "#B0B0B0"
FALLBACK_ATOMIC_RADIUS = 1.3  # Å, for elements pymatgen has no atomic radius for
# Atoms this close (in fractional units) to a cell face are also drawn on the opposite face,
# as crystallographers expect: a corner atom shows at all eight corners.
BOUNDARY_TOLERANCE = 0.01


def viewer_script_problem(script_file: Path = VIEWER_SCRIPT_FILE) -> str | None:
    """Why the viewer cannot be shown (3Dmol.js is missing), or ``None`` when it can."""
    if script_file.is_file():
        return None
    shown = script_file.relative_to(REPO_ROOT) if script_file.is_relative_to(REPO_ROOT) else script_file
    return (f"The 3D viewer needs 3Dmol.js at `{shown}`, which is missing. "
            "Fetch it with `make assets` and reload the page.")


@lru_cache(maxsize=1)
def _vesta_colors() -> dict[str, str]:
    import pymatgen.core
    from monty.serialization import loadfn

    schemes = loadfn(Path(pymatgen.core.__file__).parent / "ElementColorSchemes.yaml")
    return {symbol: "#{:02X}{:02X}{:02X}".format(*rgb) for symbol, rgb in schemes["VESTA"].items()}


def element_colors(symbols: Iterable[str]) -> dict[str, str]:
    """Hex colour of each element symbol, in the order given (duplicates dropped)."""
    palette = _vesta_colors()
    return {symbol: palette.get(symbol, UNKNOWN_ELEMENT_COLOR) for symbol in dict.fromkeys(symbols)}


def structure_elements(structure) -> list[str]:
    """Element symbols of a structure, most electropositive first (Li, Co, O), as formulas read."""
    return [el.symbol for el in sorted(structure.composition.elements, key=lambda el: el.X)]


def element_legend_html(symbols: Iterable[str]) -> str:
    """A one-line colour key (swatch + symbol per element) as inline HTML."""
    items = "".join(
        '<span style="display:inline-flex;align-items:center;margin-right:0.9em;white-space:nowrap">'
        f'<span style="width:0.85em;height:0.85em;border-radius:50%;background:{colour};'
        'border:1px solid #777;display:inline-block;margin-right:0.3em"></span>'
        f"{html.escape(symbol)}</span>"
        for symbol, colour in element_colors(symbols).items()
    )
    return f'<div class="element-legend" style="font:13px sans-serif;line-height:1.6">{items}</div>'


def cell_atoms(structure, tolerance: float = BOUNDARY_TOLERANCE) -> list[tuple[str, tuple[float, float, float]]]:
    """(element, Cartesian Å) of every atom in the unit cell, plus its images on the cell faces."""
    import itertools

    import numpy as np

    atoms = []
    lattice = structure.lattice.matrix
    for site in structure:
        frac = np.mod(site.frac_coords, 1.0)
        frac[np.isclose(frac, 1.0, atol=tolerance)] = 0.0  # 0.9999 is the same site as 0
        shifts = [(0, 1) if f < tolerance else (0,) for f in frac]
        for shift in itertools.product(*shifts):
            xyz = (frac + np.array(shift)) @ lattice
            atoms.append((site.specie.symbol, tuple(float(v) for v in xyz)))
    return atoms


def extended_xyz(structure) -> str:
    """Extended-XYZ text (with ``Lattice=``), which 3Dmol.js reads together with the unit cell."""
    atoms = cell_atoms(structure)
    lattice = " ".join(f"{v:.6f}" for v in structure.lattice.matrix.reshape(-1))
    lines = [str(len(atoms)), f'Lattice="{lattice}" Properties=species:S:1:pos:R:3']
    lines += [f"{symbol} {x:.6f} {y:.6f} {z:.6f}" for symbol, (x, y, z) in atoms]
    return "\n".join(lines) + "\n"


def _atom_style(symbol: str, colour: str, style: str) -> dict:
    from pymatgen.core import Element

    radius = Element(symbol).atomic_radius
    radius = float(radius) if radius is not None else FALLBACK_ATOMIC_RADIUS
    if style == "spheres":
        return {"sphere": {"color": colour, "radius": 0.9 * radius}}
    if style == "sticks":
        return {"stick": {"color": colour, "radius": 0.15}}
    return {"sphere": {"color": colour, "radius": max(0.3, 0.42 * radius)},
            "stick": {"color": colour, "radius": 0.1}}


def structure_view_html(structure, *, width: int | str = "100%", height: int = 420,
                        style: str = "ball-and-stick", legend: bool = True,
                        background: str = "white", script_url: str = VIEWER_SCRIPT_URL) -> str:
    """A complete HTML page showing ``structure`` with its unit cell; rotate, zoom and pan with the mouse.

    ``style`` is one of ``STYLES``. The page says so in words if 3Dmol.js cannot be loaded or
    WebGL is unavailable, rather than leaving an empty box. The output depends only on the
    arguments, so Streamlit keeps an open viewer (and its orientation) across reruns.
    """
    import py3Dmol

    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")
    if len(structure) == 0:
        raise ValueError("the structure has no atoms to show")
    symbols = structure_elements(structure)
    view = py3Dmol.view(width=width, height=height, js=script_url)
    view.addModel(extended_xyz(structure), "xyz")
    for symbol, colour in element_colors(symbols).items():
        view.setStyle({"elem": symbol}, _atom_style(symbol, colour, style))
    view.addUnitCell()
    view.zoomTo()
    snippet = view.write_html()
    # py3Dmol names its viewer after the clock; a content hash keeps the HTML identical for
    # identical input, so reruns do not reload the iframe and reset the user's rotation.
    stable_id = hashlib.sha1(snippet.replace(view.uniqueid, "").encode()).hexdigest()[:12]
    snippet = snippet.replace(view.uniqueid, stable_id)

    overlay = (f'<div style="position:absolute;top:6px;left:10px;z-index:20;pointer-events:none;'
               f'background:rgba(255,255,255,0.8);padding:0 4px">{element_legend_html(symbols)}</div>'
               if legend else "")
    problem = (
        f"The 3D viewer could not start: 3Dmol.js did not load from {html.escape(script_url)}. "
        "Run <code>make assets</code> and start the app with <code>streamlit run app.py</code> "
        "from the repository root (static serving on)."
    )
    # py3Dmol's loader has no error path: without these checks a failed load is a blank box.
    guard = f"""<script>
(function () {{
  function explain(message) {{
    var box = document.getElementById("viewer-problem");
    box.innerHTML = message;
    box.style.display = "block";
  }}
  window.addEventListener("load", function () {{
    if (typeof $3Dmol === "undefined") explain({json.dumps(problem)});
  }});
  window.addEventListener("unhandledrejection", function (event) {{
    explain("The 3D viewer failed: " + String(event.reason && event.reason.message || event.reason)
            + " (this browser may lack WebGL).");
  }});
}})();
</script>"""
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"></head>
<body style="margin:0;padding:0;background:{html.escape(background)};overflow:hidden">
<div class="structure-viewer" style="position:relative">
{overlay}
<div id="viewer-problem" style="display:none;position:absolute;inset:0;z-index:30;padding:1em;
  background:#FFF3F3;color:#7A1010;font:14px sans-serif"></div>
{snippet}
</div>
{guard}
</body></html>
"""


def lattice_facts(structure, *, symprec: float = 0.1) -> dict[str, str]:
    """Lattice parameters, volume, density and space group of ``structure``, formatted for a table."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    lattice = structure.lattice
    try:
        analyzer = SpacegroupAnalyzer(structure, symprec=symprec)
        spacegroup = f"{analyzer.get_space_group_symbol()} ({analyzer.get_space_group_number()})"
    except Exception:  # spglib gives up on badly distorted cells; the rest is still meaningful
        spacegroup = "not determined"
    return {
        "formula": structure.composition.reduced_formula,
        "space group": spacegroup,
        "a, b, c (Å)": ", ".join(f"{v:.3f}" for v in lattice.abc),
        "α, β, γ (°)": ", ".join(f"{v:.2f}" for v in lattice.angles),
        "volume (Å³)": f"{lattice.volume:.2f}",
        "density (g/cm³)": f"{float(structure.density):.3f}",
        "atoms in cell": str(len(structure)),
    }
