"""Dataset plans: the settings a builder's output depends on, saved next to that output.

A plan is a dataclass with :class:`Plan` mixed in (JSON-ready ``as_dict`` and ``from_dict``).
A resumable builder calls :func:`check_saved_plan` before it runs anything, so finished items
made with other settings are never mixed with new ones.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from battgen import atomic

PLAN_FILE = "plan.json"


class Plan:
    """Mixin for dataclass plans: ``as_dict`` (JSON-ready) and ``from_dict`` (its inverse)."""

    def as_dict(self) -> dict[str, Any]:
        # JSON has no tuples: a tuple field is stored as a list and made a tuple again on reading.
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """The plan of ``data`` (what ``as_dict`` wrote). Keys that are not fields, such as
        settings derived from the fields, are ignored; missing fields take their defaults."""
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})


def plan_differences(saved: Mapping[str, Any], current: Mapping[str, Any], *,
                     ignore: Iterable[str] = (), prefix: str = "") -> list[str]:
    """``"key: saved → current"`` for each setting that differs; nested settings as ``a.b``."""
    ignore = set(ignore)
    changes = []
    for key in sorted(set(saved) | set(current)):
        name = f"{prefix}{key}"
        if name in ignore:
            continue
        old, new = saved.get(key), current.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            changes += plan_differences(old, new, ignore=ignore, prefix=f"{name}.")
        elif old != new:
            changes.append(f"{name}: {json.dumps(old)} → {json.dumps(new)}")
    return changes


def check_saved_plan(directory: str | Path, plan: Plan, *, may_change: Iterable[str] = ()) -> Path:
    """Compare ``plan`` with the one saved in ``directory/plan.json`` and save it there.

    Raises ValueError naming every setting that differs, except those in ``may_change``
    (settings a build may grow, such as a run count). Returns the plan file's path.
    """
    path = Path(directory) / PLAN_FILE
    current = plan.as_dict()
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not a readable plan ({err}); remove it or build elsewhere") from None
        changes = plan_differences(saved, current, ignore=may_change)
        if changes:
            raise ValueError(f"{directory} holds results made with other settings ({'; '.join(changes)}); "
                             "build into another directory or use the same settings")
    atomic.write_text(path, json.dumps(current, indent=2) + "\n")
    return path
