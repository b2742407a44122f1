"""Verification of one proposal: CHGNet pair relaxation, InsertionElectrode, offline E_hull.

The relaxation and electrode code is the "evaluate my electrode" pipeline of
``battgen.data.evaluate`` (the builder's, step for step), so a designed candidate's numbers are
computed exactly like the table's. A failure is returned with its reason, never dropped.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time

from battgen.data.relax import DEFAULT_FMAX
from battgen.design.proposals import Proposal

_MODEL_LOCK = threading.Lock()


def load_model_quietly() -> None:
    """Load CHGNet once per process with its banner kept off stdout (it would corrupt ``--json``).

    Once cached, the model prints nothing again, so the stdout swap happens once, under a lock.
    """
    from battgen.data.relax import load_chgnet
    from battgen.device import get_device

    with _MODEL_LOCK:
        if load_chgnet.cache_info().currsize == 0:
            with contextlib.redirect_stdout(io.StringIO()):
                load_chgnet(get_device().type)


def one_thread() -> None:
    # Two torch threads per worker against busy cores made pair relaxations 10x slower here.
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def verify(proposal: Proposal, ion: str, table_dir, *, steps: int, fmax: float = DEFAULT_FMAX,
           novelty_tables=()) -> dict:
    """Relaxed properties, E_hull and novelty of ``proposal`` (against ``table_dir`` and
    ``novelty_tables``), or ``status: failed`` and the reason."""
    from battgen.data.evaluate import evaluate_structure
    from battgen.design.hull import chgnet_entry, e_above_hull
    from battgen.design.novelty import NoveltyChecker

    one_thread()
    load_model_quietly()
    start = time.perf_counter()
    base = {"key": proposal.key, "arm": proposal.arm}
    try:
        evaluation = evaluate_structure(proposal.structure, ion, name=proposal.key, fmax=fmax, steps=steps)
    except ValueError as err:  # RejectedElectrode and unusable structures: the reason is the message
        return {**base, "status": "failed", "reason": str(err), "seconds": time.perf_counter() - start}
    except Exception as err:  # a crash in CHGNet or pymatgen is still a recorded failure
        return {**base, "status": "failed", "reason": f"{type(err).__name__}: {err}",
                "seconds": time.perf_counter() - start}
    discharged, charged = evaluation.discharged, evaluation.charged
    hull_d = e_above_hull(chgnet_entry(discharged.structure.composition, discharged.energy, proposal.key), table_dir)
    hull_c = e_above_hull(chgnet_entry(charged.structure.composition, charged.energy, proposal.key + ":charge"),
                          table_dir)
    novel = NoveltyChecker.for_tables(table_dir, *novelty_tables).is_novel(discharged.structure)
    return {
        **base, "status": "verified", "reason": "",
        "formula_discharge": evaluation.row["formula_discharge"],
        "formula_charge": evaluation.row["formula_charge"],
        "properties": evaluation.properties,
        "e_hull": hull_d.e_hull, "e_hull_charge": hull_c.e_hull,
        "competing_phases": hull_d.competing_phases, "competing_phases_charge": hull_c.competing_phases,
        "hull_note": "; ".join(r for r in (hull_d.reason, hull_c.reason) if r),
        "novel": bool(novel),
        "structure_discharge": discharged.structure.as_dict(),
        "structure_charge": charged.structure.as_dict(),
        "relax_steps": {"discharge": discharged.steps, "charge": charged.steps},
        "seconds": time.perf_counter() - start,
    }
