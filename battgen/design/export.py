"""A design's results as rows, CSV and structure files (CIF/POSCAR), for the CLI, page and evaluation."""

from __future__ import annotations

import io
import zipfile

import pandas as pd

from battgen.data.evaluate import structure_to_text
from battgen.data.properties import PROPERTY_NAMES
from battgen.design.store import DesignStore


def candidate_id(design_id: str, candidate: dict) -> str:
    return f"{design_id}:{candidate['arm']}:{candidate['rank']}"


def candidate_record(design_id: str, request: dict, candidate: dict) -> dict:
    """One candidate: requested and computed properties under the table's column names."""
    result = candidate["result"] or {}
    proposal = candidate["proposal"]
    computed = result.get("properties") or {}
    return {
        "id": candidate_id(design_id, candidate),
        "arm": candidate["arm"],
        "rank": candidate["rank"],
        "status": candidate["status"],
        "reason": candidate["reason"],
        "working_ion": request["working_ion"],
        "formula_discharge": result.get("formula_discharge") or proposal["formula"],
        "formula_charge": result.get("formula_charge", ""),
        "structure_type": proposal["structure_type"],
        "source_id": proposal["source_id"],
        "substitution": proposal["substitution"],
        "requested": dict(request["targets"]),
        "estimated": proposal.get("estimates") or {},
        "computed": {k: computed[k] for k in PROPERTY_NAMES if k in computed},
        "e_hull": result.get("e_hull"),
        "e_hull_charge": result.get("e_hull_charge"),
        "competing_phases": result.get("competing_phases"),
        "novel": result.get("novel"),
        "seconds": result.get("seconds"),
    }


def design_records(store: DesignStore, design_id: str, status: str | None = None) -> list[dict]:
    design = store.design(design_id)
    return [candidate_record(design_id, design["request"], c) for c in store.candidates(design_id, status=status)]


def records_frame(records: list[dict]) -> pd.DataFrame:
    """Flat table: ``requested_<name>``, ``<name>`` (computed) and ``estimated_<name>`` columns."""
    rows = []
    for r in records:
        flat = {k: v for k, v in r.items() if k not in ("requested", "estimated", "computed")}
        flat.update({f"requested_{k}": v for k, v in r["requested"].items()})
        flat.update({k: r["computed"].get(k) for k in PROPERTY_NAMES})
        flat.update({f"estimated_{k}": v for k, v in r["estimated"].items()})
        rows.append(flat)
    return pd.DataFrame(rows)


def csv_bytes(records: list[dict]) -> bytes:
    return records_frame(records).to_csv(index=False).encode()


def structures(store: DesignStore, design_id: str) -> dict[str, object]:
    """Relaxed structures of the verified candidates: ``<id>_<state>`` → pymatgen Structure."""
    from pymatgen.core import Structure

    out = {}
    for c in store.candidates(design_id, status="verified"):
        cid = candidate_id(design_id, c).replace(":", "_")
        for state in ("discharge", "charge"):
            out[f"{cid}_{state}"] = Structure.from_dict(c["result"][f"structure_{state}"])
    return out


def structures_zip(store: DesignStore, design_id: str) -> bytes:
    """CIF and POSCAR of every verified candidate's relaxed pair, in one zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, structure in structures(store, design_id).items():
            zf.writestr(f"{name}.cif", structure_to_text(structure, "cif"))
            zf.writestr(f"{name}.vasp", structure_to_text(structure, "poscar"))
    return buffer.getvalue()
