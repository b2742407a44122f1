"""Activation barriers of the 19 SEI events (eV): defaults, sampling ranges, validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

N_EVENTS = 19
N_FREE = 15  # events 1-15 are sampled; 16-19 (leaving through the absorbing top) are fixed

EVENT_DESCRIPTIONS = (
    "E + S → E + P: first reduction next to the electrode",
    "F + S → F + P: first reduction next to SEI (S within 5 rows)",
    "P + E → F + E: second reduction next to the electrode",
    "P + P → O + S: two radicals form Li2EDC",
    "O + O → OO",
    "O + OO → C",
    "P + F → F + F: second reduction next to SEI (within 4 rows)",
    "O + C → C",
    "OO + C → C",
    "OO + OO → C",
    "C + C → C",
    "OO diffuses",
    "O diffuses",
    "P diffuses",
    "free C diffuses",
    "P leaves (absorbing top)",
    "O leaves",
    "OO leaves",
    "C leaves",
)
BARRIER_NAMES = tuple(f"e{i}" for i in range(1, N_FREE + 1))

DEFAULT_BARRIERS = np.array(
    [0.50, 0.27, 0.32, 0.41, 0.63, 0.71, 0.53, 0.47, 0.46, 0.51, 0.48, 0.41, 0.36, 0.35, 0.38]
    + [0.01] * 4
)

# Latin-hypercube ranges of the free barriers, from the model authors' active-learning study.
BARRIER_RANGES = np.array(
    [
        [0.14, 0.58],
        [0.13, 0.56],
        [0.19, 0.57],
        [0.10, 0.55],
        [0.52, 0.97],
        [0.39, 0.83],
        [0.40, 0.88],
        [0.38, 0.81],
        [0.35, 0.81],
        [0.33, 0.81],
        [0.30, 0.82],
        [0.32, 0.70],
        [0.18, 0.66],
        [0.21, 0.63],
        [0.26, 0.69],
    ]
)

MAX_BARRIER_EV = 5.0  # beyond this an event never happens on any time scale of interest


def resolve_barriers(
    barriers: Sequence[float] | Mapping[str, float] | np.ndarray | None = None,
) -> np.ndarray:
    """Return the full 19-vector of barriers (eV) from defaults and the caller's values.

    Accepts None (defaults), 15 values (events 1-15; 16-19 keep 0.01 eV), 19 values, or a mapping
    such as ``{"e1": 0.45, "e7": 0.6}`` overriding defaults. Raises ``ValueError`` for anything
    that is not a finite, non-negative barrier.
    """
    full = DEFAULT_BARRIERS.copy()
    if barriers is None:
        return full
    if isinstance(barriers, Mapping):
        for key, value in barriers.items():
            name = str(key).strip().lower()
            if not name.startswith("e") or not name[1:].isdigit():
                raise ValueError(f"unknown barrier {key!r}: use e1 ... e{N_EVENTS}")
            index = int(name[1:]) - 1
            if not 0 <= index < N_EVENTS:
                raise ValueError(f"unknown barrier {key!r}: use e1 ... e{N_EVENTS}")
            full[index] = _as_barrier(value, name)
        return full
    try:
        values = np.asarray(barriers, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"barriers must be numbers: {exc}") from None
    if values.ndim != 1 or values.size not in (N_FREE, N_EVENTS):
        raise ValueError(
            f"barriers must be a vector of {N_FREE} (events 1-15) or {N_EVENTS} values, "
            f"got shape {values.shape}"
        )
    for i, value in enumerate(values):
        full[i] = _as_barrier(value, f"e{i + 1}")
    return full


def _as_barrier(value, name: str) -> float:
    try:
        barrier = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"barrier {name} must be a number, got {value!r}") from None
    if not np.isfinite(barrier):
        raise ValueError(f"barrier {name} must be finite, got {barrier}")
    if barrier < 0:
        raise ValueError(f"barrier {name} must be non-negative, got {barrier} eV")
    if barrier > MAX_BARRIER_EV:
        raise ValueError(f"barrier {name} = {barrier} eV exceeds {MAX_BARRIER_EV} eV")
    return barrier


def parse_barrier_string(text: str) -> dict[str, float]:
    """Parse ``"e1=0.5,e7=0.6"`` (the CLI form) into a mapping."""
    result: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ValueError(f"barrier {part!r} must look like e1=0.5")
        key, value = part.split("=", 1)
        try:
            result[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"barrier {key.strip()} must be a number, got {value!r}") from None
    return result


def scale_barriers(free_barriers: np.ndarray) -> np.ndarray:
    """Map the 15 free barriers to [0, 1] with the sampling ranges (model input)."""
    low, high = BARRIER_RANGES[:, 0], BARRIER_RANGES[:, 1]
    return (np.asarray(free_barriers, dtype=float)[..., :N_FREE] - low) / (high - low)
