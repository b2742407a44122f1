"""The SEI kinetic Monte Carlo: invariants of the model, determinism, physical trends, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from battgen.sei import kernel
from battgen.sei.barriers import DEFAULT_BARRIERS, parse_barrier_string, resolve_barriers
from battgen.sei.kmc import simulate
from battgen.sei.observables import compute_observables
from battgen.sei.species import (
    ATTACHED,
    FREE_CLUSTER,
    INORGANIC,
    RADICAL,
    SOLVENT,
)

TUNNEL_ROWS = 4


@pytest.fixture(scope="module")
def default_run():
    return simulate(nx=30, ny=30, seed=3, n_snapshots=60)


def _sei(lattice):
    return (lattice == INORGANIC) | (lattice == ATTACHED)


def test_run_completes_with_a_grown_sei(default_run):
    assert default_run.status == "complete"
    assert default_run.steps > 1000
    assert default_run.observables["thickness"] > TUNNEL_ROWS
    assert default_run.lattice.dtype == np.uint8
    assert set(np.unique(default_run.lattice)) <= set(range(7))


def test_inorganic_sei_never_beyond_the_tunnelling_limit(default_run):
    for frame in default_run.snapshots:
        rows = np.nonzero(frame == INORGANIC)[0]
        assert rows.size == 0 or rows.max() < TUNNEL_ROWS


def test_sei_only_grows_and_attached_sites_never_move(default_run):
    frames = default_run.snapshots
    assert len(frames) >= 10
    for before, after in zip(frames[:-1], frames[1:]):
        assert np.all(after[before == ATTACHED] == ATTACHED)
        assert np.all(after[before == INORGANIC] == INORGANIC)
    counts = [_sei(f).sum() for f in frames]
    assert counts == sorted(counts) and counts[-1] > counts[0]


def test_every_sei_site_is_connected_to_the_electrode(default_run):
    sei = _sei(default_run.lattice)
    reached = np.zeros_like(sei)
    stack = [(0, x) for x in range(sei.shape[1]) if sei[0, x]]
    for site in stack:
        reached[site] = True
    while stack:
        r, x = stack.pop()
        for dr, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            rr, xx = r + dr, x + dx
            if 0 <= rr < sei.shape[0] and 0 <= xx < sei.shape[1] and sei[rr, xx] and not reached[rr, xx]:
                reached[rr, xx] = True
                stack.append((rr, xx))
    assert np.array_equal(reached, sei)


def test_complete_run_leaves_no_reduction_possible(default_run):
    lattice = default_run.lattice
    assert not np.any(lattice[0] == SOLVENT), "solvent left touching the electrode"
    sei = _sei(lattice)
    ny, nx = lattice.shape
    for r in range(ny):
        for x in range(nx):
            touches_sei = any(
                0 <= r + dr < ny and 0 <= x + dx < nx and sei[r + dr, x + dx]
                for dr, dx in ((1, 0), (-1, 0), (0, 1), (0, -1))
            )
            if lattice[r, x] == SOLVENT and r <= TUNNEL_ROWS:
                assert not touches_sei, f"first reduction still possible at {(r, x)}"
            if lattice[r, x] == RADICAL and r < TUNNEL_ROWS:
                assert not (touches_sei or r == 0), f"second reduction still possible at {(r, x)}"
    assert not np.any(lattice == FREE_CLUSTER) or default_run.locked_sites > 0


def test_snapshots_start_empty_and_end_on_the_final_state(default_run):
    assert not default_run.snapshots[0].any()
    assert np.array_equal(default_run.snapshots[-1], default_run.lattice)
    assert np.all(np.diff(default_run.snapshot_steps) > 0)
    assert default_run.snapshot_steps[-1] == default_run.steps


def test_event_counts_add_up(default_run):
    assert default_run.event_counts.sum() == default_run.steps
    counts = default_run.event_counts
    # every Li2CO3 site came from a second reduction (events 3 and 7)
    assert counts[2] + counts[6] == default_run.observables["n_inorganic"]


def test_same_seed_same_run_other_seed_other_run():
    a = simulate(nx=20, ny=20, seed=11)
    b = simulate(nx=20, ny=20, seed=11)
    c = simulate(nx=20, ny=20, seed=12)
    assert np.array_equal(a.lattice, b.lattice) and a.steps == b.steps
    assert a.sim_time_s == b.sim_time_s
    assert not np.array_equal(a.lattice, c.lattice)


def _mean_observable(barriers, key, seeds, **kw):
    return np.mean([simulate(barriers, nx=30, ny=30, seed=s, **kw).observables[key] for s in seeds])


def test_fast_second_reduction_raises_the_inorganic_fraction():
    fast = _mean_observable({"e3": 0.25, "e4": 0.50}, "inorganic_fraction", range(3), max_steps=3_000_000)
    slow = _mean_observable({"e3": 0.50, "e4": 0.25}, "inorganic_fraction", range(3), max_steps=3_000_000)
    assert fast > 1.5 * slow


def test_higher_first_reduction_barrier_slows_growth():
    def grown(e1):
        return np.mean([
            (r := simulate({"e1": e1}, nx=30, ny=30, seed=s, max_time=1e-5)).observables["n_inorganic"]
            + r.observables["n_organic"]
            for s in range(6)
        ])

    assert grown(0.42) > 2 * grown(0.58)


def test_bounds_stop_the_run():
    r = simulate(nx=20, ny=20, seed=0, max_steps=500)
    assert r.status == "max_steps" and r.steps == 500
    r = simulate(nx=20, ny=20, seed=0, max_time=1e-7)
    assert r.status == "max_time" and r.sim_time_s <= 1e-7


def test_observables_of_a_hand_made_lattice():
    lattice = np.zeros((6, 4), np.uint8)
    lattice[0, :] = INORGANIC  # full first row
    lattice[1, 0] = ATTACHED
    lattice[2, 0] = ATTACHED  # column 0 reaches height 3
    lattice[1, 2] = SOLVENT
    lattice[2, 2] = ATTACHED  # column 2 height 3 with a pore at row 1
    obs = compute_observables(lattice)
    assert obs["thickness"] == pytest.approx((3 + 1 + 3 + 1) / 4)
    layer = 8
    assert obs["porosity"] == pytest.approx(1 / layer)
    assert obs["inorganic_fraction"] == pytest.approx(4 / layer)
    assert obs["organic_fraction"] == pytest.approx(3 / layer)
    grams = (4 * 73.89 + 3 * 161.95) / 6.02214076e23
    assert obs["density"] == pytest.approx(grams / (4 * 1e-14) * 1e6)
    assert obs["coverage"] == 1.0
    empty = compute_observables(np.zeros((5, 5), np.uint8))
    assert empty["thickness"] == 0 and empty["porosity"] == 0


@pytest.mark.parametrize(
    "barriers",
    [
        [0.5] * 14,
        [0.5] * 16,
        [float("nan")] + [0.5] * 14,
        [float("inf")] + [0.5] * 14,
        [-0.1] + [0.5] * 14,
        {"e1": -1},
        {"e20": 0.3},
        {"x": 0.3},
        {"e2": "fast"},
        [[0.5] * 15],
        "0.5",
    ],
)
def test_bad_barriers_are_rejected_clearly(barriers):
    with pytest.raises(ValueError, match="barrier"):
        simulate(barriers, nx=10, ny=10)


@pytest.mark.parametrize("size", [0, 3, 7, 401, 2.5, True, "50"])
def test_bad_sizes_are_rejected_clearly(size):
    with pytest.raises(ValueError, match="nx"):
        simulate(nx=size, ny=10)


def test_barrier_resolution_and_parsing():
    full = resolve_barriers({"e1": 0.45})
    assert full[0] == 0.45 and np.array_equal(full[1:], DEFAULT_BARRIERS[1:])
    assert resolve_barriers(np.full(15, 0.3))[15:].tolist() == [0.01] * 4
    assert parse_barrier_string("e1=0.5, e7=0.6") == {"e1": 0.5, "e7": 0.6}
    with pytest.raises(ValueError):
        parse_barrier_string("e1:0.5")


def test_pair_table_counts_symmetric_pairs_once():
    # P + P from both sides: only directions 0 and 1 hold the event
    assert kernel.PAIR[RADICAL, RADICAL, 0] == kernel.E4
    assert kernel.PAIR[RADICAL, RADICAL, 2] == -1
    assert kernel.PAIR[SOLVENT, kernel.N_ELECTRODE, 3] == kernel.E1
    assert kernel.PAIR[INORGANIC].max() == -1 and kernel.PAIR[ATTACHED].max() == -1


def test_cli_simulate_prints_json():
    out = subprocess.run(
        [sys.executable, "-m", "battgen", "sei", "simulate", "--size", "16", "--seed", "1",
         "--barriers", "e1=0.45", "--json"],
        capture_output=True, text=True, check=True,
    ).stdout
    record = json.loads(out)
    for key in ("thickness", "porosity", "inorganic_fraction", "density", "wall_time_s", "steps"):
        assert key in record
    assert record["status"] == "complete"


def test_cli_rejects_bad_barriers_with_a_message():
    proc = subprocess.run(
        [sys.executable, "-m", "battgen", "sei", "simulate", "--size", "16", "--barriers", "e1=nan"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "barrier e1 must be finite" in proc.stderr and "Traceback" not in proc.stderr


def test_species_alone_in_inert_pores_are_locked_and_the_run_ends():
    from scipy import ndimage

    from battgen.sei.species import MOBILE_CODES

    result = simulate(nx=50, ny=50, seed=4, max_steps=20_000_000)
    assert result.status == "complete" and result.locked_sites > 0
    lattice = result.lattice
    pores, _ = ndimage.label(~_sei(lattice))
    open_labels = set(np.unique(pores[-1])) - {0}
    mobile = np.isin(lattice, MOBILE_CODES)
    # every species left sits in a closed pore: locked, or unable to move or react at all
    assert mobile.any()
    assert not (set(np.unique(pores[mobile])) & open_labels)


def test_progress_callback_follows_the_run_without_changing_it():
    seen = []
    followed = simulate(nx=40, ny=40, seed=5, progress_interval_s=0.01,
                        on_progress=lambda steps, t, lattice: seen.append((steps, t, lattice.shape)))
    plain = simulate(nx=40, ny=40, seed=5)
    assert np.array_equal(followed.lattice, plain.lattice) and followed.steps == plain.steps
    assert seen and all(shape == (40, 40) for _, _, shape in seen)
    steps = [s for s, _, _ in seen]
    assert steps == sorted(steps) and steps[-1] <= followed.steps



def test_reference_defaults_lie_inside_the_sampled_ranges():
    # the page conditions the trained models on the defaults: they must not ask for extrapolation
    from battgen.sei.barriers import BARRIER_RANGES

    defaults = DEFAULT_BARRIERS[:15]
    assert np.all(defaults >= BARRIER_RANGES[:, 0]) and np.all(defaults <= BARRIER_RANGES[:, 1])


def test_hop_ratio_leaves_runs_alone_when_hops_do_not_dominate():
    exact = simulate(nx=20, ny=20, seed=5)
    loose = simulate(nx=20, ny=20, seed=5, hop_ratio=1e12)
    assert np.array_equal(exact.lattice, loose.lattice) and exact.steps == loose.steps
    assert exact.hop_ratio is None and loose.summary()["hop_ratio"] == 1e12


def test_hop_ratio_caps_diffusion_moves_per_reaction():
    # Fast O hops (e13 = 0.2 eV) outnumber reactions by two orders of magnitude in the exact model.
    barriers = {"e13": 0.20, "e5": 0.80}
    exact = simulate(barriers, nx=20, ny=20, seed=2, max_steps=300_000)
    capped = simulate(barriers, nx=20, ny=20, seed=2, max_steps=300_000, hop_ratio=10.0)

    def hops_per_reaction(result):
        counts = result.event_counts
        return counts[11:15].sum() / max(counts[:11].sum(), 1)

    assert hops_per_reaction(exact) > 100
    assert hops_per_reaction(capped) < 12  # at most 10 expected: leaving events are not capped
    assert exact.status == "max_steps" and capped.completed and capped.steps < exact.steps / 10


@pytest.mark.parametrize("ratio", [0.5, 0.0, -3.0, float("nan"), float("inf")])
def test_bad_hop_ratio_is_rejected_clearly(ratio):
    with pytest.raises(ValueError, match="hop_ratio"):
        simulate(nx=10, ny=10, hop_ratio=ratio)


def test_acceleration_starts_after_the_exact_events():
    barriers = {"e13": 0.20, "e5": 0.80}
    exact = simulate(barriers, nx=20, ny=20, seed=4, max_steps=40_000)
    delayed = simulate(barriers, nx=20, ny=20, seed=4, max_steps=40_000, hop_ratio=10.0, accelerate_after=40_000)
    assert np.array_equal(exact.lattice, delayed.lattice) and delayed.accelerated_events == 0
    later = simulate(barriers, nx=20, ny=20, seed=4, max_steps=80_000, hop_ratio=10.0, accelerate_after=40_000)
    assert later.accelerated_events > 0 and later.summary()["accelerated_events"] == later.accelerated_events
    with pytest.raises(ValueError, match="accelerate_after"):
        simulate(nx=10, ny=10, hop_ratio=10.0, accelerate_after=-1)
