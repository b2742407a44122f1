"""SEI defaults, torch-free: the simulator, the dataset builder, the CLI and the page read them here."""

from __future__ import annotations

# Lattice side (sites) of the dataset and of the explorer's live simulation.
DEFAULT_SIZE = 50
MIN_SIZE, MAX_SIZE = 8, 400
# Safety bound on KMC events for a single simulation (CLI, page): every default-barrier run
# passivates long before it; it only stops barrier sets that never passivate.
SIMULATION_MAX_EVENTS = 200_000_000
# Bound on KMC events per dataset run. Runs whose barriers never passivate the electrode
# (radicals escape faster than they are reduced) would otherwise run forever; 3 M events is
# ~1.3x what a default-barrier 50x50 run needs to complete, ~1 s on one core.
DATASET_MAX_EVENTS = 3_000_000
