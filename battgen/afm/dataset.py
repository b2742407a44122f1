"""AFM campaign: every electrode's discharged structure → cluster → best views → stacks + descriptors.

For each material: cut a cluster (:mod:`battgen.afm.cluster`), rank ``candidates`` Fibonacci
views by depth entropy and keep the best ``keep`` (:mod:`battgen.afm.rotations`), simulate
each (:mod:`battgen.afm.simulate`) and check it with the recipe's edge test.

Resumable: each finished material is one file ``runs/<id>.npz`` written atomically by the
parent process (workers return arrays, so Dask workers need no shared file system); a rebuild
skips materials whose file exists. ``dataset.npz`` gathers the valid views only — the recipe
drops views whose main feature leaves the window, and with them materials that have no valid
view left — while every invalid view and its reason is listed in ``metrics.json`` and kept
in the ``invalid_*`` arrays. A campaign imaged with another instrument (``--probe``,
``--tip-closer``, ``--df-steps``: the same views, for robustness rows and robust-encoder pairs)
keeps its invalid views too (:func:`consolidate`).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from battgen import atomic
from battgen.afm.cluster import DEFAULT_TARGET_ATOMS, Cluster, cut_cluster
from battgen.afm.rotations import select_rotations
from battgen.afm.simulate import DEFAULT_PROBE, DESCRIPTOR_NAMES, SimulationConfig
from battgen.parallel import local_workers, parallel_map
from battgen.plans import Plan, check_saved_plan

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from battgen.afm.simulate import AFMSimulator

DATASET_FILE = "dataset.npz"
RUNS_DIR = "runs"
# Python distributions whose versions decide the stacks; recorded in metadata.json.
SIMULATION_PACKAGES = ("ppafm", "pyopencl", "pocl-binary-distribution", "pymatgen")


# --------------------------------------------------------------------------- one material


def infer_working_ion(structure: "Structure") -> str:
    """The single working-ion element in ``structure``; ambiguity is the caller's to resolve."""
    from battgen.data.composition import working_ions_in
    from battgen.data.properties import WORKING_IONS

    present = working_ions_in(structure)
    if len(present) == 1:
        return present[0]
    if not present:
        raise ValueError(f"{structure.composition.reduced_formula} contains none of the working ions "
                         f"({', '.join(WORKING_IONS)}); name the working ion")
    raise ValueError(f"{structure.composition.reduced_formula} contains several possible working ions "
                     f"({', '.join(present)}); name the working ion")


@dataclass
class MaterialViews:
    """The kept views of one material: what a run file and ``afm simulate`` store."""

    cluster: Cluster
    ion: str
    candidate_index: np.ndarray  # (k,) index of each view among the Fibonacci candidates
    entropy: np.ndarray  # (k,)
    rotations: np.ndarray  # (k, 3, 3)
    stacks: np.ndarray  # (k, H, W, n_heights) float16, index 0 = farthest height
    descriptors: np.ndarray  # (k, H, W, 6) float16
    df_range: np.ndarray  # (k, 2) raw Δf mapped to −1 / +1
    valid: np.ndarray  # (k,) bool
    reasons: list[str]
    brightest: np.ndarray  # (k, 2) x, y of the closest image's brightest pixel
    edge_distance: np.ndarray  # (k,)
    seconds: np.ndarray  # (k,) wall time per view
    tip_heights: np.ndarray  # (n_heights,)
    extra: dict[str, Any] = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything as plain NumPy arrays (no pickles), for ``np.savez_compressed``."""
        return {
            "stacks": self.stacks,
            "descriptors": self.descriptors,
            "descriptor_names": np.array(DESCRIPTOR_NAMES),
            "rotations": self.rotations.astype(np.float32),
            "candidate_index": self.candidate_index.astype(np.int32),
            "entropy": self.entropy.astype(np.float32),
            "df_range": self.df_range.astype(np.float32),
            "valid": self.valid,
            "reasons": np.array(self.reasons, dtype=str),
            "brightest": self.brightest.astype(np.int16),
            "edge_distance": self.edge_distance.astype(np.int16),
            "seconds": self.seconds.astype(np.float32),
            "tip_heights": self.tip_heights.astype(np.float32),
            "xyz": self.cluster.xyz.astype(np.float32),
            "Zs": self.cluster.Zs.astype(np.int16),
            "symbols": np.array(self.cluster.symbols, dtype=str),
            "elements": np.array(self.cluster.elements, dtype=str),
            "cluster_radius": np.float32(self.cluster.radius),
            "formula": np.array(self.cluster.formula),
            "working_ion": np.array(self.ion),
            **{key: np.array(value) for key, value in self.extra.items()},
        }


def simulate_structure(
    structure: "Structure",
    simulator: "AFMSimulator",
    *,
    ion: str | None = None,
    candidates: int = 100,
    keep: int = 8,
    target_atoms: int = DEFAULT_TARGET_ATOMS,
    progress: Callable[[int, int], None] | None = None,
) -> MaterialViews:
    """Cluster of ``structure``, its ``keep`` most informative of ``candidates`` views, simulated.

    ``progress(done, total)`` is called after each view (a page shows it; a view takes ~1 s).
    """
    ion = ion or infer_working_ion(structure)
    if ion not in {e.symbol for e in structure.composition.elements}:
        raise ValueError(f"working ion {ion} is not in {structure.composition.reduced_formula}")
    cluster = cut_cluster(structure, target_atoms=target_atoms)
    rotations, chosen, entropy = select_rotations(cluster.xyz, candidates, keep)
    results = []
    for r in rotations:
        results.append(simulator.simulate(cluster.xyz, cluster.Zs, r, ion=ion))
        if progress is not None:
            progress(len(results), len(rotations))
    return MaterialViews(
        cluster=cluster,
        ion=ion,
        candidate_index=chosen,
        entropy=entropy,
        rotations=rotations,
        stacks=np.stack([r.stack for r in results]).astype(np.float16),
        descriptors=np.stack([r.descriptors for r in results]).astype(np.float16),
        df_range=np.array([r.df_range for r in results]),
        valid=np.array([r.valid for r in results]),
        reasons=[r.validity.reason for r in results],
        brightest=np.array([(r.validity.x, r.validity.y) for r in results]),
        edge_distance=np.array([r.validity.edge_distance for r in results]),
        seconds=np.array([r.wall_time_s for r in results]),
        tip_heights=results[0].tip_heights,
    )


# --------------------------------------------------------------------------- campaign plan


# The instrument a campaign images with, when it is not the training campaign's (robustness
# rows simulated rather than imitated): saved in the plan only when they differ from these.
_INSTRUMENT_DEFAULTS = {"probe": DEFAULT_PROBE, "tip_closer": 0.0, "df_steps": SimulationConfig.df_steps}


@dataclass(frozen=True)
class CampaignPlan(Plan):
    candidates: int = 100
    keep: int = 8
    grid: int = 64
    target_atoms: int = DEFAULT_TARGET_ATOMS
    probe: str = DEFAULT_PROBE
    # Å the whole stack is recorded closer to the sample than the training campaign's (negative: farther).
    tip_closer: float = 0.0
    # z steps of 0.1 Å in the Δf convolution: the oscillation amplitude; the mean tip heights stay put.
    df_steps: int = SimulationConfig.df_steps

    def __post_init__(self) -> None:
        if not 1 <= self.keep <= self.candidates:
            raise ValueError(f"views kept must be between 1 and the number of candidate rotations "
                             f"({self.candidates}), got {self.keep}")
        if not -1.0 <= self.tip_closer <= 1.0:
            raise ValueError(f"the tip offset must be within ±1 Å, got {self.tip_closer}")
        if not 2 <= self.df_steps <= 40:
            raise ValueError(f"the Δf convolution needs 2-40 steps of 0.1 Å, got {self.df_steps}")
        self.simulation_config()  # validates the grid and the probe

    def simulation_config(self) -> SimulationConfig:
        base = SimulationConfig()
        # The mean apex height of the closest image is distance + df_steps·dz/2 above the surface
        # (plus the probe's radius); a longer oscillation keeps the same mean heights.
        distance = base.distance - self.tip_closer - (self.df_steps - base.df_steps) * base.dz / 2
        return SimulationConfig(grid=self.grid, probe=self.probe, distance=round(distance, 6),
                                df_steps=self.df_steps)

    @property
    def is_training_instrument(self) -> bool:
        return all(getattr(self, k) == v for k, v in _INSTRUMENT_DEFAULTS.items())

    def instrument_name(self) -> str:
        """What differs from the training campaign's instrument, in words ('' when nothing does)."""
        parts = []
        if self.probe != DEFAULT_PROBE:
            parts.append(f"{self.probe} probe")
        if self.tip_closer:
            parts.append(f"tip {abs(self.tip_closer):.2g} Å {'closer' if self.tip_closer > 0 else 'farther'}")
        if self.df_steps != SimulationConfig.df_steps:
            parts.append(f"oscillation {self.df_steps * SimulationConfig.dz:.2g} Å")
        return ", ".join(parts)

    def as_dict(self) -> dict:
        values = super().as_dict()
        for key, default in _INSTRUMENT_DEFAULTS.items():
            if values[key] == default:
                del values[key]  # campaigns saved before these were settings hold no such keys
        # The derived simulation settings are saved too: a change of their defaults changes every stack.
        return {**values, "simulation": self.simulation_config().as_dict()}


def instrument_campaigns(folder: str | Path, split: str = "") -> list[Path]:
    """The campaign folders under ``folder`` (one subfolder with a ``dataset.npz`` each, simulated with
    another instrument), sorted; ValueError naming the command that makes them when there are none."""
    folder = Path(folder)
    campaigns = sorted(p for p in folder.iterdir() if (p / "dataset.npz").is_file()) if folder.is_dir() else []
    if not campaigns:
        raise ValueError(f"{folder} holds no campaign folders with a dataset.npz (build them with "
                         f"`afm build-dataset{split} --probe/--tip-closer/--df-steps --out {folder}/NAME`)")
    return campaigns


def campaign_instrument(path: str | Path) -> str:
    """How the campaign at ``path`` (its folder or dataset.npz) images differently from the training
    campaign, read from its saved plan; ValueError for the training instrument or no plan."""
    from battgen.artifacts import read_metadata

    directory = Path(path) if Path(path).is_dir() else Path(path).parent
    plan = (read_metadata(directory) or {}).get("config")
    if not plan:
        raise ValueError(f"{directory} has no campaign metadata; build it with 'afm build-dataset'")
    name = CampaignPlan.from_dict(plan).instrument_name()
    if not name:
        raise ValueError(f"{directory} was imaged with the training instrument; "
                         "give campaigns built with --probe, --tip-closer or --df-steps")
    return name


# --------------------------------------------------------------------------- workers

# One simulator per worker process: the OpenCL set-up and kernel build are paid once, not per material.
_SIMULATOR: "AFMSimulator | None" = None
# ppafm's OpenCL queue and buffers are per process; Dask workers may run tasks on several threads.
_SIMULATOR_LOCK = threading.Lock()


def _worker_simulator(config: SimulationConfig) -> "AFMSimulator":
    global _SIMULATOR
    if _SIMULATOR is None or _SIMULATOR.config != config:
        from battgen.afm.simulate import AFMSimulator

        _SIMULATOR = AFMSimulator(config)
    return _SIMULATOR


def _limit_opencl_threads(threads: int) -> None:
    """Runs first in each local worker: PoCL otherwise starts a thread per core in every process."""
    for name in ("POCL_MAX_PTHREAD_COUNT", "POCL_CPU_MAX_CU_COUNT"):  # PoCL < 5 and >= 5
        os.environ.setdefault(name, str(threads))


def _simulate_task(task: dict, plan: dict) -> dict:
    """Worker: simulate one material; returns plain arrays (no file access, so it runs on Dask too)."""
    from pymatgen.core import Structure

    plan_obj = CampaignPlan.from_dict(plan)
    with _SIMULATOR_LOCK:
        simulator = _worker_simulator(plan_obj.simulation_config())
        header = {"material_id": task["id"], "table_index": task["index"], "split": task["split"],
                  "device": simulator.device}
        try:
            structure = Structure.from_dict(json.loads(task["structure"]))
            views = simulate_structure(structure, simulator, ion=task["ion"], candidates=plan_obj.candidates,
                                       keep=plan_obj.keep, target_atoms=plan_obj.target_atoms)
        except ValueError as exc:
            # A structure that cannot be imaged is recorded, not retried: the cause is in the data.
            return {**header, "error": str(exc)}
    views.extra.update(header)
    return views.arrays()


# --------------------------------------------------------------------------- campaign


def run_file_name(material_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", material_id) + ".npz"


def _tasks_from_table(table_dir: str | Path, limit: int | None, split: str | None = None) -> list[dict]:
    from battgen.data.table import load_table

    df = load_table(table_dir)
    if split is not None:
        # A held-out subset (calibration, robustness) need not simulate the materials it never uses.
        known = sorted(set(df["split"].astype(str)))
        if split not in known:
            raise ValueError(f"the table has no split '{split}'; its splits are {', '.join(known)}")
        df = df[df["split"].astype(str) == split]
    if limit is not None:
        if limit < 1:
            raise ValueError("the material limit must be at least 1")
        df = df.iloc[:limit]
    tasks = [{"index": int(i), "id": str(row["id"]), "ion": str(row["working_ion"]),
              "split": str(row["split"]), "structure": row["structure_discharge"],
              "composition": np.asarray(row["composition"], np.float32)}
             for i, (_, row) in enumerate(df.iterrows())]
    names = [run_file_name(t["id"]) for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError("material ids collide after making them file names; ids must be unique")
    return tasks


def _worker_task(task: dict) -> dict:
    """What a worker needs of a task (the composition stays with the parent)."""
    return {k: task[k] for k in ("index", "id", "ion", "split", "structure")}


def build_dataset(
    table_dir: str | Path,
    out_dir: str | Path,
    plan: CampaignPlan,
    *,
    workers: int | None = None,
    dask_scheduler: str | None = None,
    limit: int | None = None,
    split: str | None = None,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Simulate every material of the table not yet in ``out_dir/runs`` and write ``dataset.npz``.

    ``workers`` local processes (default: all cores), or the Dask cluster at ``dask_scheduler``
    (see :func:`battgen.parallel.parallel_map`). ``split`` keeps only that split's materials
    (before ``limit``).
    """
    from battgen.data.table import table_path

    started = time.perf_counter()
    out = Path(out_dir)
    (out / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    check_saved_plan(out, plan)
    tasks = _tasks_from_table(table_dir, limit, split)
    todo = [t for t in tasks if not (out / RUNS_DIR / run_file_name(t["id"])).exists()]

    sim_start = time.perf_counter()
    # Workers return arrays and this process writes them, so Dask workers need no shared disk.
    for done in parallel_map(partial(_simulate_task, plan=plan.as_dict()), [_worker_task(t) for t in todo],
                             workers=workers, dask_scheduler=dask_scheduler, progress=progress,
                             desc="AFM materials", unit="material", already_done=len(tasks) - len(todo),
                             on_progress=on_progress, worker_setup=_limit_opencl_threads):
        # Atomic: a killed run never leaves half a file that a rerun would trust.
        atomic.save_npz(out / RUNS_DIR / run_file_name(str(done.value["material_id"])), **done.value)
    simulation_s = time.perf_counter() - sim_start
    return consolidate(
        out, tasks, plan,
        table_file=table_path(table_dir),
        wall_time_s=time.perf_counter() - started,
        session={"materials_simulated": len(todo), "simulation_s": simulation_s, "split": split, "limit": limit,
                 "workers": 0 if dask_scheduler else local_workers(workers, max(1, len(todo))),
                 "dask_scheduler": dask_scheduler},
    )


def consolidate(
    out_dir: str | Path,
    tasks: list[dict],
    plan: CampaignPlan,
    *,
    table_file: Path | None = None,
    wall_time_s: float = 0.0,
    session: dict | None = None,
) -> Path:
    """Gather the run files of ``tasks`` into ``dataset.npz`` (valid views only) plus metadata and metrics.

    A campaign imaged with another instrument than the training campaign's keeps its invalid views
    too (they are still listed): the validity check asks whether the training instrument saw the
    main feature, and with the tip farther most views show no repulsive maximum at all (393 of 600
    test views 0.2 Å farther), which is what such a campaign is built to measure. Its views are
    paired with the training campaign's, whose validity then decides.
    """
    out = Path(out_dir)
    keep_invalid = not plan.is_training_instrument
    missing = [t["id"] for t in tasks if not (out / RUNS_DIR / run_file_name(t["id"])).exists()]
    if missing:
        raise ValueError(f"{len(missing)} materials are missing in {out / RUNS_DIR}; build again")

    keep_fields = ("stacks", "descriptors", "rotations", "candidate_index", "entropy", "df_range")
    rows: dict[str, list] = {k: [] for k in keep_fields}
    index_rows: dict[str, list] = {k: [] for k in ("material_index", "rank", "working_ion", "split")}
    invalid: list[dict] = []
    failed: list[dict] = []
    seconds: list[float] = []
    devices: set[str] = set()
    tip_heights = None
    material_ids = [t["id"] for t in tasks]
    for m, task in enumerate(tasks):
        with np.load(out / RUNS_DIR / run_file_name(task["id"]), allow_pickle=False) as run:
            devices.add(str(run["device"]))
            if "error" in run:
                failed.append({"material_id": task["id"], "reason": str(run["error"])})
                continue
            seconds.extend(run["seconds"].tolist())
            tip_heights = run["tip_heights"]
            for k, (ok, reason) in enumerate(zip(run["valid"], run["reasons"])):
                if not ok:
                    invalid.append({"material_id": task["id"], "material_index": m, "rank": k,
                                    "candidate_index": int(run["candidate_index"][k]), "reason": str(reason)})
                    if keep_invalid is False:
                        continue
                for key in keep_fields:
                    rows[key].append(run[key][k])
                index_rows["material_index"].append(m)
                index_rows["rank"].append(k)
                index_rows["working_ion"].append(str(run["working_ion"]))
                index_rows["split"].append(task["split"])

    n_views = len(seconds)
    n_kept = len(index_rows["material_index"])
    n_valid = n_kept - (len(invalid) if keep_invalid else 0)
    if n_kept == 0:
        raise ValueError(f"no valid view in {out / RUNS_DIR}: every material failed or left the scan window")
    config = plan.simulation_config()
    # Atom counts by atomic number per view (the atom regressor's target), when the table gave them.
    extra_arrays = {}
    if all("composition" in t for t in tasks):
        compositions = np.stack([tasks[m]["composition"] for m in index_rows["material_index"]])
        extra_arrays["composition"] = compositions.astype(np.float32)
    path = out / DATASET_FILE
    atomic.save_npz(
        path,
        stacks=np.stack(rows["stacks"]).astype(np.float16),  # (N, H, W, n_heights), index 0 farthest
        descriptors=np.stack(rows["descriptors"]).astype(np.float16),  # (N, H, W, 6)
        descriptor_names=np.array(DESCRIPTOR_NAMES),
        rotations=np.stack(rows["rotations"]).astype(np.float32),
        rotation_index=np.array(rows["candidate_index"], np.int16),  # among the Fibonacci candidates
        rotation_rank=np.array(index_rows["rank"], np.int16),  # 0 = highest depth entropy
        entropy=np.array(rows["entropy"], np.float32),
        df_range=np.stack(rows["df_range"]).astype(np.float32),
        material_index=np.array(index_rows["material_index"], np.int32),
        material_ids=np.array(material_ids),
        working_ion=np.array(index_rows["working_ion"]),
        split=np.array(index_rows["split"]),
        tip_heights=tip_heights,
        invalid_material_index=np.array([v["material_index"] for v in invalid], np.int32),
        invalid_rotation_index=np.array([v["candidate_index"] for v in invalid], np.int16),
        invalid_reason=np.array([v["reason"] for v in invalid], dtype=str),
        **extra_arrays,
    )

    from battgen.artifacts import write_metadata, write_metrics

    session = session or {}
    kept_materials = sorted(set(index_rows["material_index"]))
    dropped = [material_ids[m] for m in range(len(tasks))
               if m not in kept_materials and material_ids[m] not in {f["material_id"] for f in failed}]
    simulated_now = session.get("materials_simulated", 0)
    simulation_s = session.get("simulation_s", 0.0)
    metrics = {
        "materials": len(tasks),
        "rotations_per_material": plan.keep,
        "campaign_size": len(tasks) * plan.keep,
        "views_simulated": n_views,
        "valid_views": n_valid,
        "valid_fraction": n_valid / n_views if n_views else 0.0,
        "views_kept": n_kept,
        "invalid_views_kept": keep_invalid,
        "materials_kept": len(kept_materials),
        "materials_dropped_all_invalid": dropped,
        "materials_failed": failed,
        "invalid_views": invalid,
        "grid": config.grid,
        "stack_shape": list(np.shape(rows["stacks"][0])),
        # Per process: what one AFMulator sustains; the session figure includes parallelism.
        "stacks_per_s_per_worker": n_views / sum(seconds) if seconds else None,
        "median_stack_s": float(np.median(seconds)) if seconds else None,
        "stacks_per_s_session": (simulated_now * plan.keep / simulation_s
                                 if simulated_now and simulation_s > 0 else None),
    }
    write_metrics(out, metrics)
    write_metadata(
        out,
        command="python -m battgen afm build-dataset",
        config=plan.as_dict(),
        seed=None,  # deterministic: Fibonacci views, no sampling
        inputs=[table_file] if table_file is not None and table_file.exists() else None,
        wall_time_s=wall_time_s,
        extra={
            "opencl_devices": sorted(devices),
            "simulation_versions": _package_versions(SIMULATION_PACKAGES),
            "session": session,
            "layout": "stacks (N, H, W, heights) float16 in [-1, 1], rows y, columns x, "
                      "height index 0 = farthest; descriptors (N, H, W, 6) float16 in [-1, 1]",
        },
    )
    return path


def _package_versions(names: tuple[str, ...]) -> dict[str, str]:
    import importlib.metadata

    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
