"""AFM simulation library: cluster cutting, Fibonacci views and their entropy ranking, the
validity check, and real ppafm simulations (marked slow: OpenCL set-up and ~1 s per stack)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from battgen.afm.cluster import cut_cluster, load_structure
from battgen.afm.rotations import (
    depth_entropy,
    fibonacci_directions,
    fibonacci_rotations,
    rank_rotations,
    select_rotations,
)
from battgen.afm.simulate import (
    DESCRIPTOR_NAMES,
    SimulationConfig,
    check_validity,
    scale_to_unit,
    type_channels,
)
from battgen.data.table import load_table, row_structure


def _arrays(path) -> dict[str, np.ndarray]:
    """Every array of a consolidated dataset.npz, including the invalid-view records."""
    path = Path(path)
    with np.load(path / "dataset.npz" if path.is_dir() else path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def licoo2():
    """Layered LiCoO2 (R-3m, a = 2.82 Å, c = 14.05 Å): the textbook cathode, built by hand."""
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("R-3m", Lattice.hexagonal(2.82, 14.05), ["Li", "Co", "O"],
                                     [[0, 0, 0], [0, 0, 0.5], [0, 0, 0.24]])


@pytest.fixture(scope="module")
def table():
    return load_table()


# --------------------------------------------------------------------------- clusters


@pytest.mark.slow
def test_clusters_of_every_shipped_electrode_are_bounded_centred_and_deterministic(table):
    for _, row in table.iterrows():
        structure = row_structure(row)
        cluster = cut_cluster(structure)
        assert 20 <= len(cluster) <= 60, row["id"]
        np.testing.assert_allclose(cluster.xyz.mean(axis=0), 0.0, atol=1e-9)
        assert set(cluster.elements) == {e.symbol for e in structure.composition.elements}
        again = cut_cluster(structure)
        np.testing.assert_array_equal(cluster.xyz, again.xyz)
        np.testing.assert_array_equal(cluster.Zs, again.Zs)


def test_cluster_keeps_whole_shells_and_honours_the_bounds():
    structure = licoo2()
    cluster = cut_cluster(structure, target_atoms=30)
    assert len(cluster) >= 30
    # Every crystal atom inside the cut radius is in the cluster (no half shells).
    centre = structure.lattice.get_cartesian_coords([0.5, 0.5, 0.5])
    assert len(structure.get_sites_in_sphere(centre, cluster.radius + 0.01)) == len(cluster)
    small = cut_cluster(structure, target_atoms=5, min_atoms=5, max_atoms=6)
    assert 5 <= len(small) <= 6


def test_cluster_rejects_bad_input(tmp_path):
    from pymatgen.core import Lattice, Structure

    with pytest.raises(ValueError, match="min_atoms"):
        cut_cluster(licoo2(), target_atoms=10, min_atoms=20)
    disordered = Structure(Lattice.cubic(4.0), [{"Li": 0.5, "Na": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="partially occupied"):
        cut_cluster(disordered)
    bad = tmp_path / "bad.cif"
    bad.write_text("not a cif\n")
    with pytest.raises(ValueError, match="cannot read a crystal structure"):
        load_structure(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_structure(tmp_path / "missing.cif")


# --------------------------------------------------------------------------- rotations


def test_fibonacci_rotations_are_proper_and_map_each_direction_to_z():
    directions = fibonacci_directions(100)
    rotations = fibonacci_rotations(100)
    assert rotations.shape == (100, 3, 3)
    for d, r in zip(directions, rotations):
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
        np.testing.assert_allclose(r @ d, [0, 0, 1], atol=1e-12)
    np.testing.assert_array_equal(rotations, fibonacci_rotations(100))


def test_fibonacci_directions_cover_the_sphere_evenly():
    d = fibonacci_directions(100)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)
    assert np.linalg.norm(d.mean(axis=0)) < 0.02  # no hemisphere favoured
    cos = np.clip(d @ d.T, -1, 1)
    np.fill_diagonal(cos, -1)
    nearest = np.arccos(cos.max(axis=1))
    # Equal-area cells of 4π/100 sr have ~0.35 rad spacing; no two points crowd, no big holes.
    assert nearest.min() > 0.2 and nearest.max() < 0.45
    octants = {tuple(v) for v in (d > 0).astype(int)}
    assert len(octants) == 8


def test_depth_entropy_is_zero_for_a_flat_layer_and_positive_for_depth():
    grid = np.array([[x, y, 0.0] for x in range(4) for y in range(4)], dtype=float) * 2.5
    assert depth_entropy(grid) == 0.0
    rng = np.random.default_rng(0)
    blob = rng.uniform(-3, 3, size=(16, 3))
    assert depth_entropy(blob) > 1.0
    # Atoms deeper than the window the tip senses do not count.
    assert depth_entropy(np.array([[0, 0, 0], [0, 0, -10.0]]), depth_window=4.0) == 0.0
    assert depth_entropy(np.array([[0, 0, 0], [0, 0, -10.0]]), depth_window=None) > 0.0


def test_entropy_selection_prefers_views_with_depth_over_a_flat_face():
    # A square slab seen face-on shows one flat layer; tilted views show atoms at many depths.
    slab = np.array([[x, y, z] for x in range(5) for y in range(5) for z in (0, 1)], dtype=float) * 2.0
    face_on = np.eye(3)
    tilted = fibonacci_rotations(20)[7]
    order, entropy = rank_rotations(slab, np.stack([face_on, tilted]))
    assert entropy[0] < entropy[1]
    assert order[0] == 1
    rotations, chosen, best = select_rotations(slab, 50, 5)
    assert rotations.shape == (5, 3, 3) and len(set(chosen)) == 5
    assert np.all(np.diff(best) <= 1e-12)  # best first
    all_entropy = rank_rotations(slab, fibonacci_rotations(50))[1]
    assert best[0] == pytest.approx(all_entropy.max())
    assert best[-1] >= np.median(all_entropy)


# --------------------------------------------------------------------------- validity, scaling


def _blob(h: int, w: int, x: float, y: float) -> np.ndarray:
    rows, cols = np.mgrid[0:h, 0:w]
    return np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / 8.0)


def test_validity_finds_the_brightest_pixel_of_the_closest_image():
    stack = np.zeros((32, 40, 10))
    stack[:, :, 0] = _blob(32, 40, 0, 0)  # farthest image: bright corner, must be ignored
    stack[:, :, -1] = _blob(32, 40, 30, 5)
    v = check_validity(stack)
    assert v.valid and (v.x, v.y) == (30, 5) and v.edge_distance == 5
    edge = check_validity(_blob(32, 40, 39, 16))
    assert not edge.valid and edge.edge_distance == 0 and "edge" in edge.reason
    assert not check_validity(np.zeros((8, 8, 3))).valid
    nan = _blob(8, 8, 4, 4)
    nan[0, 0] = np.nan
    assert "NaN" in check_validity(nan).reason
    with pytest.raises(ValueError):
        check_validity(np.zeros(5))


def test_scale_to_unit_and_type_channels():
    scaled = scale_to_unit(np.array([0.0, 1.0, 2.0, 5.0]), 0.0, 2.0)
    np.testing.assert_allclose(scaled, [-1, 0, 1, 1])
    assert np.all(scale_to_unit(np.ones(3), 1.0, 1.0) == -1)
    # Li (ion) blue, O and H green, Co red; without an ion Li is just another element.
    np.testing.assert_array_equal(type_channels([3, 8, 27, 1], "Li"), [2, 1, 0, 1])
    np.testing.assert_array_equal(type_channels([3, 8, 27], None), [0, 1, 0])
    with pytest.raises(ValueError):
        SimulationConfig(grid=100)


def test_campaign_plan_and_working_ion_inference():
    from pymatgen.core import Lattice, Structure

    from battgen.afm.dataset import CampaignPlan, infer_working_ion

    assert infer_working_ion(licoo2()) == "Li"
    with pytest.raises(ValueError, match="several"):
        infer_working_ion(Structure(Lattice.cubic(4), ["Li", "Al", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]]))
    with pytest.raises(ValueError, match="none of the working ions"):
        infer_working_ion(Structure(Lattice.cubic(4), ["Co", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"views kept must be between 1 and the number of candidate rotations \(4\)"):
        CampaignPlan(candidates=4, keep=8)


def _fake_views(valid: list[bool]):
    from battgen.afm.cluster import Cluster
    from battgen.afm.dataset import MaterialViews

    k = len(valid)
    return MaterialViews(
        cluster=Cluster(xyz=np.zeros((2, 3)), Zs=np.array([3, 8], np.int32), radius=1.0, formula="Li2O"),
        ion="Li", candidate_index=np.arange(k), entropy=np.linspace(2, 1, k), rotations=np.tile(np.eye(3), (k, 1, 1)),
        stacks=np.zeros((k, 8, 8, 10), np.float16), descriptors=np.zeros((k, 8, 8, 6), np.float16),
        df_range=np.tile([-1.0, 1.0], (k, 1)), valid=np.array(valid),
        reasons=["ok" if v else "brightest pixel (x=0, y=3) lies on the window edge" for v in valid],
        brightest=np.zeros((k, 2)), edge_distance=np.array([3 if v else 0 for v in valid]),
        seconds=np.full(k, 0.5), tip_heights=np.linspace(5.8, 4.9, 10),
    )


def test_consolidate_keeps_valid_views_and_records_invalid_and_failed_ones(tmp_path):
    from battgen.afm.dataset import RUNS_DIR, CampaignPlan, consolidate, run_file_name
    from battgen.atomic import save_npz

    tasks = [{"id": f"m{i}", "index": i, "split": split} for i, split in enumerate(["train", "val", "test"])]
    for task, valid in zip(tasks[:2], ([True, False], [False, False])):
        views = _fake_views(valid)
        views.extra.update({"material_id": task["id"], "device": "test"})
        save_npz(tmp_path / RUNS_DIR / run_file_name(task["id"]), **views.arrays())
    save_npz(tmp_path / RUNS_DIR / run_file_name("m2"),
             material_id=np.array("m2"), device=np.array("test"), error=np.array("no atoms"))
    data = _arrays(consolidate(tmp_path, tasks, CampaignPlan(candidates=2, keep=2, grid=32)))
    assert data["stacks"].shape == (1, 8, 8, 10)
    assert data["material_index"].tolist() == [0] and data["split"].tolist() == ["train"]
    assert data["invalid_material_index"].tolist() == [0, 1, 1]
    assert all("window edge" in reason for reason in data["invalid_reason"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["valid_fraction"] == pytest.approx(0.25)
    assert metrics["materials_dropped_all_invalid"] == ["m1"]
    assert metrics["materials_failed"] == [{"material_id": "m2", "reason": "no atoms"}]
    assert metrics["stacks_per_s_per_worker"] == pytest.approx(2.0)
    assert metrics["views_kept"] == 1 and metrics["invalid_views_kept"] is False

    # Another instrument keeps every view (paired later with the training campaign's valid ones),
    # still listing the ones the training instrument's check would drop.
    data = _arrays(consolidate(tmp_path, tasks, CampaignPlan(candidates=2, keep=2, grid=32, tip_closer=-0.2)))
    assert data["stacks"].shape == (4, 8, 8, 10) and data["material_index"].tolist() == [0, 0, 1, 1]
    assert data["invalid_material_index"].tolist() == [0, 1, 1]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["valid_views"] == 1 and metrics["views_kept"] == 4 and metrics["invalid_views_kept"] is True


def _parser() -> argparse.ArgumentParser:
    from battgen.afm import commands

    parser = argparse.ArgumentParser(prog="python -m battgen afm")
    commands.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_parses_both_commands_and_reports_bad_files(tmp_path):
    args = _parser().parse_args(["build-dataset", "--out", str(tmp_path), "--rotations-candidates", "100",
                                 "--views", "8", "--grid", "64", "--workers", "2", "--limit", "3",
                                 "--dask-scheduler", "local"])
    assert (args.views, args.grid, args.workers, args.limit, args.rotations_candidates) == (8, 64, 2, 3, 100)
    assert args.dask_scheduler == "local"
    args = _parser().parse_args(["build-dataset", "--out", str(tmp_path), "--rotations-candidates", "4",
                                 "--views", "8"])
    with pytest.raises(ValueError, match="--views must be between 1 and --rotations-candidates"):
        args.func(args)
    bad = tmp_path / "bad.cif"
    bad.write_text("garbage\n")
    args = _parser().parse_args(["simulate", "--structure", str(bad), "--out", str(tmp_path / "s.npz"),
                                 "--ion", "Li"])
    with pytest.raises(ValueError, match="cannot read a crystal structure"):
        args.func(args)
    with pytest.raises(SystemExit):
        _parser().parse_args(["simulate", "--structure", "x.cif", "--out", "y.npz", "--ion", "Xx"])


# --------------------------------------------------------------------------- ppafm (OpenCL)


@pytest.fixture(scope="module")
def simulator():
    pytest.importorskip("pyopencl")
    from battgen.afm.simulate import AFMSimulator

    return AFMSimulator(SimulationConfig(grid=64))


def _view_with_top_element(simulator, cluster, Z: int) -> np.ndarray:
    """First Fibonacci view whose topmost atom (highest vdW surface) is element Z."""
    for rotation in fibonacci_rotations(50):
        placed = simulator.place(cluster.xyz, cluster.Zs, rotation)
        if cluster.Zs[np.argmax(placed[:, 2] + simulator.vdw_radii(cluster.Zs))] == Z:
            return rotation
    raise AssertionError(f"no view has element {Z} on top")


def _pixel(simulator, x: float, y: float) -> tuple[int, int]:
    """(row, column) of the scan pixel nearest to the point (x, y) of the placed frame."""
    c = simulator.config
    return (int(round((y + c.scan_size / 2) / c.pixel_size)), int(round((x + c.scan_size / 2) / c.pixel_size)))


@pytest.mark.slow
def test_simulation_of_licoo2_stack_and_descriptors(simulator):
    cluster = cut_cluster(licoo2())
    rotation = _view_with_top_element(simulator, cluster, 3)  # a Li atom on top
    result = simulator.simulate(cluster.xyz, cluster.Zs, rotation, ion="Li")

    assert result.stack.shape == (64, 64, 10) and result.descriptors.shape == (64, 64, len(DESCRIPTOR_NAMES))
    for array in (result.stack, result.descriptors):
        assert array.dtype == np.float32 and array.min() >= -1 and array.max() <= 1
    assert result.stack.min() == -1 and result.stack.max() == 1
    # Index 0 is the farthest height: the closest image carries the most contrast.
    contrast = np.ptp(result.stack, axis=(0, 1))
    assert contrast[-1] > 1.5 * contrast[0]
    assert np.all(np.diff(result.tip_heights) < 0)
    assert result.valid and result.df_range[0] < 0 < result.df_range[1]  # attraction and Pauli repulsion

    # Height, vdW spheres and disks each show the cluster on an empty (−1) background.
    for k in range(3):
        channel = result.descriptors[..., k]
        assert channel.min() == -1 and channel.max() > 0 and 0.02 < (channel > -1).mean() < 0.6

    # The topmost atom is Li: blue (and only blue) under it, and the stack is brightest there.
    placed = simulator.place(cluster.xyz, cluster.Zs, rotation)
    top = np.argmax(placed[:, 2] + simulator.vdw_radii(cluster.Zs))
    row, col = _pixel(simulator, *placed[top, :2])
    np.testing.assert_array_equal(result.descriptors[row, col, 3:5], [-1, -1])
    assert result.descriptors[row, col, 5] > 0.5
    assert abs(result.validity.x - col) <= 2 and abs(result.validity.y - row) <= 2
    # Blue appears only near working-ion atoms: every blue pixel lies within a vdW radius of a Li.
    li = placed[cluster.Zs == 3, :2]
    for r, c in np.argwhere(result.descriptors[..., 5] > -1):
        x = c * simulator.config.pixel_size - simulator.config.scan_size / 2
        y = r * simulator.config.pixel_size - simulator.config.scan_size / 2
        assert np.min(np.hypot(li[:, 0] - x, li[:, 1] - y)) < 2.1

    # Without a working ion nothing is blue; the same input always gives the same stack.
    plain = simulator.simulate(cluster.xyz, cluster.Zs, rotation, ion=None)
    assert plain.descriptors[..., 5].max() == -1
    np.testing.assert_array_equal(plain.stack, result.stack)


@pytest.mark.slow
def test_oxygen_on_top_is_green(simulator):
    cluster = cut_cluster(licoo2())
    rotation = _view_with_top_element(simulator, cluster, 8)
    result = simulator.simulate(cluster.xyz, cluster.Zs, rotation, ion="Li")
    placed = simulator.place(cluster.xyz, cluster.Zs, rotation)
    top = np.argmax(placed[:, 2] + simulator.vdw_radii(cluster.Zs))
    row, col = _pixel(simulator, *placed[top, :2])
    assert result.descriptors[row, col, 4] > 0.5 and result.descriptors[row, col, 5] == -1


@pytest.mark.slow
def test_force_field_padding_leaves_no_edge_artifacts(simulator):
    """Growing every force-field margin leaves stack and height map unchanged (ppafm wraps the box)."""
    from battgen.afm.simulate import AFMSimulator

    cluster = cut_cluster(licoo2())
    rotation = fibonacci_rotations(10)[3]
    config = SimulationConfig(grid=32)
    # Whole-Å growth keeps the 8 px/Å grid points where they were, so only edge effects remain.
    roomy = SimulationConfig(grid=32, lateral_pad=config.lateral_pad + 2, box_floor=config.box_floor - 3,
                             pad_above=config.pad_above + 1)
    results = [AFMSimulator(cfg).simulate(cluster.xyz, cluster.Zs, rotation, ion="Li") for cfg in (config, roomy)]
    raw = [(r.stack + 1) / 2 * (r.df_range[1] - r.df_range[0]) + r.df_range[0] for r in results]
    deviation = np.abs(raw[0] - raw[1]).max(axis=(0, 1)) / np.ptp(raw[1], axis=(0, 1))
    assert deviation.max() < 0.01
    np.testing.assert_allclose(results[0].descriptors, results[1].descriptors, atol=0.01)


@pytest.mark.slow
def test_build_dataset_is_resumable_and_records_provenance(tmp_path, monkeypatch):
    pytest.importorskip("pyopencl")
    from battgen.afm import dataset
    from battgen.afm.dataset import CampaignPlan, build_dataset

    plan = CampaignPlan(candidates=10, keep=2, grid=32)
    path = build_dataset("assets/electrodes", tmp_path, plan, workers=1, limit=2, progress=False)
    data = _arrays(path)
    n = len(data["stacks"])
    assert 1 <= n <= 4
    assert data["stacks"].shape == (n, 32, 32, 10) and data["descriptors"].shape == (n, 32, 32, 6)
    assert np.abs(data["stacks"]).max() <= 1 and np.abs(data["descriptors"]).max() <= 1
    table = load_table()
    for m, ion, split, composition in zip(data["material_index"], data["working_ion"], data["split"],
                                          data["composition"]):
        assert (ion, split) == (table.iloc[m]["working_ion"], table.iloc[m]["split"])
        np.testing.assert_array_equal(composition, table.iloc[m]["composition"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["campaign_size"] == 4 and metrics["views_simulated"] == 4
    assert metrics["valid_views"] == n and len(metrics["invalid_views"]) == 4 - n
    assert metrics["stacks_per_s_per_worker"] > 0
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    assert metadata["command"] == "python -m battgen afm build-dataset"
    assert metadata["config"]["grid"] == 32 and "ppafm" in metadata["simulation_versions"]

    # A rerun simulates nothing: every material already has its run file.
    def fail(*args, **kwargs):
        raise AssertionError("a finished material was simulated again")

    monkeypatch.setattr(dataset, "_simulate_task", fail)
    build_dataset("assets/electrodes", tmp_path, plan, workers=1, limit=2, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        build_dataset("assets/electrodes", tmp_path, CampaignPlan(candidates=10, keep=2, grid=64),
                      workers=1, limit=2, progress=False)


def test_a_campaign_can_be_limited_to_one_split_of_the_table():
    from battgen.afm.dataset import _tasks_from_table
    from battgen.data.table import load_table

    table = load_table("assets/electrodes")
    tasks = _tasks_from_table("assets/electrodes", 5, split="test")
    assert [t["id"] for t in tasks] == table.loc[table["split"] == "test", "id"].head(5).tolist()
    assert {t["split"] for t in tasks} == {"test"}
    with pytest.raises(ValueError, match="no split 'holdout'"):
        _tasks_from_table("assets/electrodes", None, split="holdout")


def test_another_instrument_is_a_plan_setting_that_old_campaigns_do_not_carry():
    from battgen.afm.dataset import CampaignPlan
    from battgen.afm.simulate import SimulationConfig

    training = CampaignPlan(keep=4)
    # Saved plans from before these settings existed must still match the training instrument's.
    assert not {"probe", "tip_closer", "df_steps"} & set(training.as_dict())
    assert "probe" not in training.as_dict()["simulation"]
    assert training.is_training_instrument and training.instrument_name() == ""
    assert CampaignPlan.from_dict(training.as_dict()) == training

    xe = CampaignPlan(keep=4, probe="Xe")
    assert xe.simulation_config().probe_z == 54 and xe.as_dict()["probe"] == "Xe"
    assert CampaignPlan.from_dict(xe.as_dict()) == xe
    closer, farther = CampaignPlan(keep=4, tip_closer=0.2), CampaignPlan(keep=4, tip_closer=-0.2)
    assert closer.simulation_config().distance == pytest.approx(SimulationConfig().distance - 0.2)
    assert farther.simulation_config().distance == pytest.approx(SimulationConfig().distance + 0.2)
    # A longer oscillation keeps the mean tip heights: the closest turning point comes closer.
    swing = CampaignPlan(keep=4, df_steps=20)
    assert swing.simulation_config().distance == pytest.approx(SimulationConfig().distance - 0.5)
    assert [p.instrument_name() for p in (xe, closer, farther, swing)] == [
        "Xe probe", "tip 0.2 Å closer", "tip 0.2 Å farther", "oscillation 2 Å"]
    for bad in ({"probe": "W"}, {"tip_closer": 3.0}, {"df_steps": 1}):
        with pytest.raises(ValueError):
            CampaignPlan(keep=4, **bad)


@pytest.mark.slow
def test_a_xe_probe_campaign_images_the_same_views_and_scores_as_a_robustness_row(tmp_path):
    pytest.importorskip("pyopencl")
    import torch

    from battgen.afm.dataset import CampaignPlan, build_dataset
    from battgen.afm.loader import load_afm_dataset
    from battgen.afm.ood import LatentDensity
    from battgen.afm.robustness import matching_views, robustness_table
    from battgen.models.atom_regressor import AtomRegressor
    from battgen.models.translator import AFMTranslator

    torch.set_num_threads(1)
    paths = {}
    for name, probe in (("co", "CO"), ("xe", "Xe")):
        plan = CampaignPlan(candidates=10, keep=2, grid=64, probe=probe)
        paths[name] = build_dataset("assets/electrodes", tmp_path / name, plan, workers=1, limit=2, split="test",
                                    progress=False)
    clean = load_afm_dataset(paths["co"], required_splits=("test",))
    xe = load_afm_dataset(paths["xe"], required_splits=("test",))
    rows = clean.indices("test")
    ours, theirs = matching_views(xe, clean, rows)
    assert len(ours) == len(xe) == len(clean)
    # The probe changes the force map, not the atoms under it.
    assert not np.allclose(np.asarray(xe.stacks[ours], np.float32), np.asarray(clean.stacks[theirs], np.float32))

    checkpoints = Path(__file__).resolve().parents[2] / "checkpoints"
    result = robustness_table(
        AFMTranslator.from_pretrained(checkpoints / "translator").eval(),
        AtomRegressor.from_pretrained(checkpoints / "atom_regressor").eval(),
        LatentDensity.load(checkpoints / "translator"), clean, distortions=(), simulated=[("Xe probe", xe)])
    clean_row, xe_row = result["rows"]
    assert xe_row["condition"] == "Xe probe (simulated)" and xe_row["views"] == len(xe)
    # Every clean view is matched here, so the same-view reference is the clean row itself.
    assert xe_row["clean_ssim_same_views"] == pytest.approx(clean_row["ssim_mean"])
    assert xe_row["ssim_drop"] == pytest.approx(clean_row["ssim_mean"] - xe_row["ssim_mean"])
    assert xe_row["composition_r2_drop"] == pytest.approx(clean_row["composition_r2"] - xe_row["composition_r2"])

    # A campaign of other atoms under the same view ids is refused, not scored.
    shuffled = load_afm_dataset(paths["xe"], required_splits=("test",))
    shuffled.descriptors = np.full_like(np.asarray(shuffled.descriptors), -1.0)  # no atom anywhere
    with pytest.raises(ValueError, match="other atoms"):
        matching_views(shuffled, clean, rows)


def test_robustness_names_a_simulated_campaign_by_its_instrument_and_refuses_the_training_one(tmp_path):
    from battgen.afm.dataset import CampaignPlan
    from battgen.afm.dataset import campaign_instrument

    for name, plan in (("closer", CampaignPlan(keep=4, tip_closer=0.2)), ("same", CampaignPlan(keep=4))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metadata.json").write_text(json.dumps({"config": plan.as_dict()}))
    assert campaign_instrument(str(tmp_path / "closer" / "dataset.npz")) == "tip 0.2 Å closer"
    with pytest.raises(ValueError, match="training instrument"):
        campaign_instrument(str(tmp_path / "same"))
    with pytest.raises(ValueError, match="no campaign metadata"):
        campaign_instrument(str(tmp_path))
