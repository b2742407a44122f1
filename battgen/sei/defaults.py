"""SEI defaults, torch-free: the simulator, the dataset builder, the CLI and the page read them here."""

from __future__ import annotations

# Lattice side (sites) of the dataset and of the explorer's live simulation.
DEFAULT_SIZE = 50
MIN_SIZE, MAX_SIZE = 8, 400
# Safety bound on KMC events for a single simulation (CLI, page): every default-barrier run
# passivates long before it; it only stops barrier sets that never passivate.
SIMULATION_MAX_EVENTS = 200_000_000
# Bound on KMC events per dataset run, from measured completion statistics (issue 17,
# benchmarks/results/sei_reference.md): of 40 draws of the dataset design at 50x50, run with the
# dataset's seeds up to 30 M events, 14 passivate within 3 M and 20 within 11.1 M, and no more by
# 30 M. The other 20 are dominated by hops: 19 are at most 4 sites thick, and 15 have not reached
# 0.062 s simulated, the earliest passivation of any finished run. At their own pace they would
# need 5e7-3e11 events (median 1e9) just to get there. So 12 M finishes everything 30 M does, at
# ~1.6 CPU-s per run on average (~1.8 CPU-hours for 4,000 runs, vs. 0.5 at the old 3 M). No
# affordable event bound reaches 95 %; runs stopped here keep status "max_steps" and are truncated.
DATASET_MAX_EVENTS = 12_000_000
