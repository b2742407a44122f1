"""Example AFM stacks shipped with the app: simulated test-split views with their ground truth.

The campaign dataset is far too large to commit, but a person opening the AFM page must have
something to translate. ``write_examples`` picks one test-split view per working ion (of distinct
materials) and stores stack, true descriptors and the
material's composition in ``assets/afm/examples.npz``, so the page can show predictions next
to the truth for materials the models never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from battgen import atomic, paths
from battgen.data.properties import WORKING_IONS

EXAMPLES_FILE = paths.REPO_ROOT / paths.ASSETS / paths.AFM / "examples.npz"


@dataclass
class Example:
    label: str
    material_id: str
    working_ion: str
    stack: np.ndarray  # (H, W, 10)
    descriptors: np.ndarray  # (H, W, 6), simulated ground truth
    composition: np.ndarray | None  # (112,)


def write_examples(dataset_path: str | Path, out: str | Path = EXAMPLES_FILE, *, per_ion: int = 1,
                   typical=None) -> Path:
    """One (or ``per_ion``) test-split view per working ion of an AFM ``dataset.npz``.

    ``typical`` (stacks (N, H, W, 10) -> bool (N,)), when given, skips views the shipped models
    find unusual: an example should show what the model does on what it knows, not greet the user
    with an out-of-distribution warning (1 % of held-out views are flagged by construction).
    """
    from battgen.afm.loader import load_afm_dataset

    data = load_afm_dataset(dataset_path, dtype=np.float16)
    chosen: list[int] = []
    for ion in WORKING_IONS:
        rows = np.flatnonzero((data.split == "test") & (data.working_ion == ion))
        rows = rows[np.argsort(data.rotation[rows], kind="stable")]
        if typical is not None and len(rows):
            rows = rows[np.asarray(typical(data.stacks[rows].astype(np.float32)), bool)]
        seen: set[int] = set()
        for r in rows:
            if int(data.material[r]) in seen:
                continue
            seen.add(int(data.material[r]))
            chosen.append(int(r))
            if len(seen) == per_ion:
                break
    if not chosen:
        raise ValueError(f"{dataset_path} has no test-split views to take examples from")
    idx = np.array(chosen)
    ids = data.material_id[idx] if data.material_id is not None else np.array([str(m) for m in data.material[idx]])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = dict(stacks=data.stacks[idx].astype(np.float16), descriptors=data.descriptors[idx].astype(np.float16),
                  material_id=ids.astype(str), working_ion=data.working_ion[idx], rotation=data.rotation[idx])
    if data.composition is not None:
        arrays["composition"] = data.composition[idx]
    atomic.save_npz(out, **arrays)
    return out


def load_examples(path: str | Path = EXAMPLES_FILE, formulas: dict[str, str] | None = None) -> list[Example]:
    """The shipped examples; ``formulas`` (id → formula) makes the labels readable."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no example stacks at {path}; make them with "
                         "`python -m battgen afm export-examples --data data/afm`")
    with np.load(path, allow_pickle=False) as z:
        composition = z["composition"] if "composition" in z.files else None
        out = []
        for i, material_id in enumerate(z["material_id"].astype(str)):
            ion = str(z["working_ion"][i])
            formula = (formulas or {}).get(material_id, material_id)
            out.append(Example(f"{formula} ({ion}), view {int(z['rotation'][i]) + 1}", material_id, ion,
                               z["stacks"][i].astype(np.float32), z["descriptors"][i].astype(np.float32),
                               None if composition is None else composition[i].astype(np.float32)))
    return out
