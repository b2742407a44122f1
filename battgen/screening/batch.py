"""Many screening requests at once, from a CSV file: one row per request.

Columns: ``working_ion`` and the six properties under the table's column names
(``average_voltage, capacity_grav, capacity_vol, energy_grav, energy_vol, max_delta_volume``).
Every row is checked before any model runs, so a bad file costs nothing and the message names the
row (1 = the first data row) and what is wrong with it.
"""

from __future__ import annotations

import io
import os

import pandas as pd

from battgen.data.properties import PROPERTY_NAMES, PropertyScaler
from battgen.screening.request import ScreeningRequest

REQUIRED_COLUMNS = ("working_ion", *PROPERTY_NAMES)
# A request file is a short list typed or exported by a person, not a dataset.
MAX_REQUESTS = 10_000
MAX_BYTES = 10 * 1024 * 1024


def read_requests(source: str | os.PathLike[str] | bytes, table: pd.DataFrame,
                  scaler: PropertyScaler) -> list[ScreeningRequest]:
    """Parse and validate a request CSV (a path or its bytes); ValueError naming the first bad row."""
    if isinstance(source, bytes):
        data = source
    else:
        try:
            with open(source, "rb") as handle:
                data = handle.read(MAX_BYTES + 1)  # never more than the limit, however large the file
        except OSError as exc:
            raise ValueError(f"cannot read the request file {source}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise ValueError(f"the request file is too large: at most {MAX_BYTES // 2**20} MB is read")
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype={"working_ion": str}, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"the request file is not a readable CSV: {str(exc).splitlines()[0]}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"the request file lacks the column(s) {', '.join(missing)}; "
                         f"it needs {', '.join(REQUIRED_COLUMNS)}")
    if frame.empty:
        raise ValueError("the request file has a header but no requests")
    if len(frame) > MAX_REQUESTS:
        raise ValueError(f"the request file has {len(frame):,} rows; at most {MAX_REQUESTS:,} are answered at once")
    requests = []
    for number, row in enumerate(frame.itertuples(index=False), start=1):
        record = row._asdict()
        ion = str(record["working_ion"]).strip() if pd.notna(record["working_ion"]) else ""
        given = {}
        for name in PROPERTY_NAMES:
            value = pd.to_numeric(pd.Series([record[name]]), errors="coerce").iat[0]
            if pd.isna(value):
                raise ValueError(f"row {number}: {name} is missing or not a number ({record[name]!r})")
            given[name] = float(value)
        try:
            requests.append(ScreeningRequest.build(table, scaler, ion, given))
        except ValueError as exc:
            raise ValueError(f"row {number}: {exc}") from None
    return requests
