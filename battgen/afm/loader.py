"""Load an AFM ``dataset.npz`` for training: validated arrays, one split at a time.

The dataset file (written by ``python -m battgen afm build-dataset``, see
:mod:`battgen.afm.dataset`) holds per view:

* ``stacks`` (N, H, W, 10): frequency-shift stacks in [−1, 1], height index 0 = farthest;
* ``descriptors`` (N, H, W, 6): height map, vdW spheres, atomic disks and the R, G, B type map
  (R other elements, G gas-phase elements, B working ion; −1 = no atom) in [−1, 1];
* ``material`` (N,) row of the electrode table, ``rotation`` (N,) which view, ``working_ion``
  (N,) str, ``split`` (N,) "train" / "val" / "test" (grouped by composition upstream);
* ``composition`` (N, 112) atom counts by atomic number (H = index 0) — needed only by the
  atom regressor, so a file without it still loads for the translator.

``stacks`` / ``descriptors`` may be stored as float16/float32 (values) or uint8 (value =
x / 127.5 − 1). The builder names two columns differently (``material_index``,
``rotation_index``); :data:`KEY_ALIASES` accepts those so either spelling loads.

Every problem raises :class:`ValueError` naming the key and what is wrong, because a silently
mis-scaled or transposed stack trains a model that is wrong without any error ever showing.
This module only reads; building the dataset is :mod:`battgen.afm.dataset`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from battgen.afm.simulate import DESCRIPTOR_NAMES
from battgen.data.composition import N_ELEMENTS
from battgen.data.properties import WORKING_IONS
from battgen.data.splits import SPLITS, inverse_frequency_weights

DATASET_FILE = "dataset.npz"
STACK_HEIGHTS = 10
DESCRIPTOR_CHANNELS = len(DESCRIPTOR_NAMES)
# Descriptor channels the two discriminator branches and the metrics treat as a group.
GREY_CHANNELS = slice(0, 3)  # height map, vdW spheres, atomic disks
TYPE_MAP_CHANNELS = slice(3, 6)  # R other, G gas-phase, B working ion
# The translator halves the grid twice; the grid must divide evenly so decode(encode(x)) has x's size.
GRID_MULTIPLE = 4

REQUIRED_KEYS = ("stacks", "descriptors", "material", "rotation", "working_ion", "split")
# Canonical key -> other names accepted for it, in order of preference.
KEY_ALIASES: dict[str, tuple[str, ...]] = {
    "material": ("material_index",),
    "rotation": ("rotation_index", "rotation_rank"),
}
# float16 rounding of values that were clipped to exactly ±1 can land a hair outside.
RANGE_TOLERANCE = 1e-3
# Bounds the float32 temporary while decoding uint8 arrays.
_DECODE_CHUNK = 256


@dataclass
class AFMDataset:
    """Validated AFM views. ``stacks`` / ``descriptors`` are channels-last, in [−1, 1].

    Their dtype is what :func:`load_afm_dataset` was asked for (float32 by default; the
    trainers ask for float16 to halve memory, 5,000 views at 64 × 64 being 1.3 GB in float32).
    """

    stacks: np.ndarray  # (N, H, W, 10)
    descriptors: np.ndarray  # (N, H, W, 6)
    material: np.ndarray  # (N,) int64
    rotation: np.ndarray  # (N,) int64
    working_ion: np.ndarray  # (N,) str
    split: np.ndarray  # (N,) str
    composition: np.ndarray | None  # (N, 112) float32, or None when the file has none
    path: Path
    # (N,) electrode-table id of each view's material: indices alone break when the table is
    # rebuilt in another order, ids do not. None for files without ``material_ids``.
    material_id: np.ndarray | None = None
    descriptor_names: tuple[str, ...] = DESCRIPTOR_NAMES

    def __len__(self) -> int:
        return int(self.stacks.shape[0])

    @property
    def grid(self) -> tuple[int, int]:
        """(H, W) of every map."""
        return int(self.stacks.shape[1]), int(self.stacks.shape[2])

    def indices(self, split: str) -> np.ndarray:
        """Row indices of ``split`` ("train", "val" or "test"), ascending."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
        return np.flatnonzero(self.split == split)

    def ion_weights(self, idx: np.ndarray) -> np.ndarray:
        """Inverse-frequency per-ion weights of rows ``idx`` (mean 1 over those rows)."""
        return inverse_frequency_weights(self.working_ion[idx])

    def require_composition(self) -> np.ndarray:
        if self.composition is None:
            raise ValueError(f"{self.path} has no 'composition' array (N, {N_ELEMENTS}); "
                             "the atom regressor needs the atom counts of every view")
        return self.composition


def _dataset_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir() or path.suffix != ".npz":
        path = path / DATASET_FILE
    if not path.is_file():
        raise ValueError(f"no AFM dataset at {path} (build one with `python -m battgen afm build-dataset`)")
    return path


def _pick_key(files: list[str], key: str) -> str | None:
    for name in (key, *KEY_ALIASES.get(key, ())):
        if name in files:
            return name
    return None


def _decode_maps(raw: np.ndarray, key: str, dtype: np.dtype, path: Path) -> np.ndarray:
    """float or uint8 maps -> ``dtype`` in [−1, 1]; ValueError when the values are not that."""
    if raw.dtype == np.uint8:
        out = np.empty(raw.shape, dtype)
        for start in range(0, raw.shape[0], _DECODE_CHUNK):
            chunk = raw[start:start + _DECODE_CHUNK].astype(np.float32)
            out[start:start + _DECODE_CHUNK] = chunk / 127.5 - 1.0
        return out
    if raw.dtype.kind != "f":
        raise ValueError(f"{path}: '{key}' must be float16/float32 in [-1, 1] or uint8, got {raw.dtype}")
    if raw.size:
        lo, hi = float(np.min(raw)), float(np.max(raw))
        # min/max propagate NaN, so one check catches both non-finite and out-of-range values.
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError(f"{path}: '{key}' holds NaN or infinite values")
        if lo < -1.0 - RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
            raise ValueError(f"{path}: '{key}' must be scaled to [-1, 1], found values in [{lo:.4g}, {hi:.4g}]")
    # Clip the tolerated rounding overshoot so downstream code can rely on [−1, 1] exactly.
    out = raw.astype(dtype, copy=False)
    return np.clip(out, -1.0, 1.0, out=out)


def load_afm_dataset(path: str | Path, dtype: type | np.dtype = np.float32,
                     required_splits: tuple[str, ...] = ("train", "val")) -> AFMDataset:
    """Read and check ``dataset.npz`` (the file or its directory); ValueError on anything off.

    ``dtype`` (float32 or float16) is the dtype of the returned stacks and descriptors.
    ``required_splits`` must hold views: a trainer needs train and val, an evaluation on a
    held-out subset (``afm build-dataset --split test``) only its own split.
    Checks: required keys present; stacks (N, H, W, 10) and descriptors (N, H, W, 6) on the
    same grid, H and W multiples of 4; values in [−1, 1] (or uint8); one material, rotation,
    ion and split per view; ions among :data:`WORKING_IONS`; splits among train/val/test with
    train and val non-empty; composition, when present, (N, 112), finite and non-negative.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise ValueError(f"dtype must be float32 or float16, got {dtype}")
    path = _dataset_path(path)
    with np.load(path, allow_pickle=False) as z:
        files = list(z.files)
        keys = {k: _pick_key(files, k) for k in REQUIRED_KEYS}
        missing = [k for k, name in keys.items() if name is None]
        if missing:
            alias = [f"{k} (or {', '.join(KEY_ALIASES[k])})" if k in KEY_ALIASES else k for k in missing]
            raise ValueError(f"{path} lacks required arrays: {', '.join(alias)}; it has {', '.join(sorted(files))}")
        raw_stacks, raw_desc = z[keys["stacks"]], z[keys["descriptors"]]
        if raw_stacks.ndim != 4 or raw_stacks.shape[-1] != STACK_HEIGHTS:
            raise ValueError(f"{path}: 'stacks' must be (N, H, W, {STACK_HEIGHTS}) with the heights last, "
                             f"got {raw_stacks.shape}")
        if raw_desc.ndim != 4 or raw_desc.shape[-1] != DESCRIPTOR_CHANNELS:
            raise ValueError(f"{path}: 'descriptors' must be (N, H, W, {DESCRIPTOR_CHANNELS}), got {raw_desc.shape}")
        if raw_desc.shape[:3] != raw_stacks.shape[:3]:
            raise ValueError(f"{path}: stacks {raw_stacks.shape} and descriptors {raw_desc.shape} "
                             "disagree on N, H or W")
        n, h, w = raw_stacks.shape[:3]
        if n == 0:
            raise ValueError(f"{path} holds no views")
        if h % GRID_MULTIPLE or w % GRID_MULTIPLE:
            raise ValueError(f"{path}: the grid {h} x {w} must be a multiple of {GRID_MULTIPLE} on both sides")
        stacks = _decode_maps(raw_stacks, "stacks", dtype, path)
        del raw_stacks
        descriptors = _decode_maps(raw_desc, "descriptors", dtype, path)
        del raw_desc

        columns = {}
        for key in ("material", "rotation", "working_ion", "split"):
            arr = z[keys[key]]
            if arr.shape != (n,):
                raise ValueError(f"{path}: '{keys[key]}' must have one entry per view, shape ({n},), got {arr.shape}")
            columns[key] = arr
        composition = z["composition"] if "composition" in files else None
        material_ids = z["material_ids"].astype(str) if "material_ids" in files else None
        names = tuple(str(s) for s in z["descriptor_names"]) if "descriptor_names" in files else DESCRIPTOR_NAMES

    for key in ("material", "rotation"):
        if columns[key].dtype.kind not in "iu":
            raise ValueError(f"{path}: '{keys[key]}' must hold integers, got {columns[key].dtype}")
    ions = columns["working_ion"].astype(str)
    unknown = sorted(set(ions) - set(WORKING_IONS))
    if unknown:
        raise ValueError(f"{path}: unknown working ions {unknown}; expected some of {', '.join(WORKING_IONS)}")
    split = columns["split"].astype(str)
    bad = sorted(set(split) - set(SPLITS))
    if bad:
        raise ValueError(f"{path}: 'split' values must be train/val/test, found {bad}")
    for s in required_splits:
        if not (split == s).any():
            raise ValueError(f"{path} has an empty {s} split")
    if len(names) != DESCRIPTOR_CHANNELS:
        raise ValueError(f"{path}: 'descriptor_names' must name {DESCRIPTOR_CHANNELS} channels, got {names}")
    if composition is not None:
        if composition.shape != (n, N_ELEMENTS):
            raise ValueError(f"{path}: 'composition' must be (N, {N_ELEMENTS}) = ({n}, {N_ELEMENTS}), "
                             f"got {composition.shape}")
        composition = composition.astype(np.float32)
        if not np.isfinite(composition).all() or (composition < 0).any():
            raise ValueError(f"{path}: 'composition' must hold finite, non-negative atom counts")

    material_id = None
    if material_ids is not None:
        index = columns["material"].astype(np.int64)
        if index.min() < 0 or index.max() >= len(material_ids):
            raise ValueError(f"{path}: 'material' indices run past the {len(material_ids)} 'material_ids'")
        material_id = material_ids[index]

    return AFMDataset(
        stacks=stacks,
        descriptors=descriptors,
        material=columns["material"].astype(np.int64),
        rotation=columns["rotation"].astype(np.int64),
        working_ion=ions,
        split=split,
        composition=composition,
        path=path,
        descriptor_names=names,
        material_id=material_id,
    )
