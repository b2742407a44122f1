"""The electrode builder's relaxation cache: one JSON file per relaxation, ``<kind>/<key>.json``.

Read by the builder (what is left to relax), the assembly (the table) and the validation
(textbook electrodes); a record is a relaxation (``RelaxResult.as_dict``) or ``{"error": ...}``.
"""

from __future__ import annotations

import json
from pathlib import Path

from battgen.data.relax import RelaxResult

# Git-ignored and large; the assembled table goes elsewhere (assets/, committed).
DEFAULT_CACHE_DIR = Path("data") / "electrodes" / "cache"


def cache_file(cache_dir: Path, kind: str, key: str) -> Path:
    return Path(cache_dir) / kind / f"{key}.json"


def load_cached(cache_dir: Path, kind: str, key: str,
                settings: dict | None = None) -> RelaxResult | str | None:
    """The cached relaxation, the error text of a failed one, or None if not run yet.

    With ``settings`` (``BuildPlan.relax_settings``), a record run with other settings counts
    as not run yet.
    """
    path = cache_file(cache_dir, kind, key)
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if settings is not None and record.get("settings") != settings:
        return None
    if "error" in record:
        return record["error"]
    return RelaxResult.from_dict(record)
