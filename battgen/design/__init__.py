"""Design: from a property request to new electrode structures, filtered and verified with CHGNet.

proposals (substitution into our frameworks and pymatgen's AFLOW prototypes) → funnel (distance,
charge neutrality, uniqueness, novelty) → pre-rank (surrogate + exact capacity) → CHGNet
verification (relaxed pair, InsertionElectrode, offline hull) → SQLite store; run as a Dask job.
"""
