"""Materials Project insertion electrodes → the electrode table (``source="mp"``).

The published screening model was trained on MP's battery explorer; fetching it gives BattGen the
same reference data in the same table format as the CHGNet builder, so both sources can be
compared, merged and trained on alike. The network call (``search_insertion_electrodes``) is kept
apart from the pure conversion (``mp_doc_to_row``, ``docs_to_table``) so the conversion is tested
offline on real emmet-core documents. The API key comes from ``MP_API_KEY`` only and never
reaches a message, a log or a file.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from battgen import atomic
from battgen.data.electrode import RejectedElectrode
from battgen.data.properties import PROPERTY_NAMES, WORKING_IONS
from battgen.data.splits import grouped_split
from battgen.data.table import electrode_row, save_table

KEY_ENV = "MP_API_KEY"
# What a rejected key's message tells the user to check: the variable (command line) by default.
ENV_KEY_HINT = f"check {KEY_ENV}"
COMMAND = "python -m battgen data fetch-mp"
REJECTED_FILENAME = "rejected.csv"
# ``battery_id`` is a computed property in emmet-core 0.87 (minimum of ``material_ids`` + ion),
# not a stored field: without ``material_ids`` the returned documents cannot name themselves.
MP_FIELDS: tuple[str, ...] = (
    "battery_id", "material_ids", "working_ion", *PROPERTY_NAMES, "framework_formula",
    "host_structure", "stability_charge", "stability_discharge", "electrode_object",
)
ATTEMPTS = 5
BASE_DELAY_S = 2.0
MAX_DELAY_S = 60.0

Searcher = Callable[[str], Sequence[Any]]


def api_key_from_env() -> str:
    key = os.environ.get(KEY_ENV, "").strip()
    if not key:
        raise ValueError(f"no Materials Project API key: set the {KEY_ENV} environment variable "
                         f"(export {KEY_ENV}=...; get a key at "
                         "https://next-gen.materialsproject.org/api)")
    return key


def search_insertion_electrodes(rester: Any, ion: str) -> list:
    """The network call: every MP insertion electrode of one working ion."""
    return list(rester.materials.insertion_electrodes.search(working_ion=ion,
                                                             fields=list(MP_FIELDS)))


def mp_searcher(api_key: str) -> Searcher:
    """``ion -> documents`` over one MPRester, built on first use so that its own network
    call (a heartbeat on construction) goes through the same retries and error messages."""
    rester = None

    def search(ion: str) -> list:
        nonlocal rester
        if rester is None:
            from mp_api.client import MPRester

            rester = MPRester(api_key, mute_progress_bars=True)
        return search_insertion_electrodes(rester, ion)

    return search


def _status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    if getattr(response, "status_code", None):
        return int(response.status_code)
    # mp-api folds HTTP failures into MPRestError text ("... error status code 429 ...") and
    # urllib3's exhausted retries into "too many 429 error responses".
    match = re.search(r"status code (\d{3})|too many (\d{3}) error", str(err))
    return int(match.group(1) or match.group(2)) if match else None


def local_table_dir() -> Path:
    """Where fetched MP electrodes go beside BattGen's own table (git-ignored ``data/``)."""
    from battgen import paths

    return paths.data_dir(paths.ELECTRODES) / "mp"


def call_with_retries(call: Callable[[], Any], *, api_key: str, attempts: int = ATTEMPTS,
                      base_delay: float = BASE_DELAY_S,
                      sleep: Callable[[float], None] = time.sleep, key_hint: str = ENV_KEY_HINT) -> Any:
    """``call()``, retried with exponential back-off on rate limits and transient failures;
    any failure becomes a ``ValueError`` whose message never contains ``api_key``.

    The ``ValueError`` is raised outside the ``except`` block, so it carries no ``__context__``:
    mp-api's exception (whose text or request can hold the key) is not chained to it for a
    traceback printer, logger or error reporter to find.
    """
    import requests
    from mp_api.client.core.exceptions import MPRestError

    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except (MPRestError, requests.RequestException) as err:
            problem = _failure(err, api_key, attempt, attempts, key_hint)
        if problem is not None:
            raise problem
        sleep(min(base_delay * 2 ** (attempt - 1), MAX_DELAY_S))


def _failure(err: BaseException, api_key: str, attempt: int, attempts: int,
             key_hint: str = ENV_KEY_HINT) -> ValueError | None:
    """The error to report for ``err``, or None when the call should be retried."""
    import requests

    message, status = str(err), _status(err)
    # First line only: mp-api appends the server's full reply, which can be long.
    text = (message.strip().splitlines() or [type(err).__name__])[0]
    if api_key:
        text = text.replace(api_key, "***")
    if status in (401, 403) or "API key" in message:
        detail = f"HTTP {status}" if status else text  # mp-api's own check: no status
        return ValueError(f"Materials Project rejected the API key ({detail}); {key_hint}")
    transient = (status in (429, 500, 502, 503, 504)
                 or isinstance(err, (requests.ConnectionError, requests.Timeout))
                 or re.search(r"timed out|Max retries|onnection", message) is not None)
    if not transient:
        return ValueError(f"Materials Project query failed: {text}")
    if attempt < attempts:
        return None
    if status == 429:
        return ValueError("Materials Project kept rate-limiting the requests (HTTP 429) "
                          f"after {attempts} attempts; try again later")
    return ValueError(f"cannot reach Materials Project after {attempts} attempts: {text}")


def _get(doc: Any, name: str) -> Any:
    # mp-api returns a model holding only the requested fields; absent ones raise on access.
    try:
        return doc[name] if isinstance(doc, Mapping) else getattr(doc, name)
    except (AttributeError, KeyError, ValueError):
        return None


def _readable_id(identifier: Any) -> str:
    # emmet-core 0.87 rewrites mp-22526 as mp-aaaabhik; the website still shows the former.
    from emmet.core.mpid import AlphaID

    base, sep, suffix = str(identifier).rpartition("_")
    try:
        return AlphaID(base if sep else suffix).string + (sep + suffix if sep else "")
    except Exception:  # an id emmet cannot parse is kept as MP sent it
        return str(identifier)


def mp_doc_to_row(doc: Any) -> dict:
    """Table row from one ``InsertionElectrodeDoc``; ``RejectedElectrode`` says why not."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    raw_id = _get(doc, "battery_id")
    if not raw_id:
        raise RejectedElectrode("document has no battery_id")
    electrode = _get(doc, "electrode_object")
    if electrode is None:
        raise RejectedElectrode("document has no electrode_object")
    ion = electrode.working_ion.symbol
    if ion not in WORKING_IONS or ion != str(_get(doc, "working_ion") or ion):
        raise RejectedElectrode(f"working ion {ion} is not one of BattGen's or differs from "
                                "the document's")
    discharged = getattr(electrode.fully_discharged_entry, "structure", None)
    charged = getattr(electrode.fully_charged_entry, "structure", None)
    if discharged is None or charged is None:
        raise RejectedElectrode("electrode entries carry no structures")
    props = {k: _get(doc, k) for k in PROPERTY_NAMES}
    bad = [k for k, v in props.items() if v is None or not math.isfinite(float(v))]
    if bad:
        raise RejectedElectrode(f"document lacks {', '.join(bad)}")
    host = _get(doc, "host_structure")
    try:
        structure_type = SpacegroupAnalyzer(host, symprec=0.1).get_space_group_symbol()
    except Exception:  # no host structure, or spglib gave up; the electrode is still usable
        structure_type = ""
    stability = {k: math.nan if (v := _get(doc, k)) is None else float(v)
                 for k in ("stability_discharge", "stability_charge")}
    row = electrode_row(
        id=_readable_id(raw_id), source="mp", electrode=electrode, discharged=discharged,
        charged=charged, structure_type=structure_type,
        ion_energy_per_atom=electrode.working_ion_entry.energy_per_atom, properties=props,
        provenance={"method": "Materials Project battery explorer (DFT, MP's own numbers)",
                    "battery_id": str(raw_id),
                    "material_id_discharge": _readable_id(
                        electrode.fully_discharged_entry.data.get("material_id", "")),
                    "material_id_charge": _readable_id(
                        electrode.fully_charged_entry.data.get("material_id", ""))},
        **stability)
    row["framework_formula"] = _get(doc, "framework_formula") or row["framework_formula"]
    return row


def docs_to_table(docs: Iterable[Any], seed: int = 0) -> tuple[pd.DataFrame, list[dict]]:
    """Rows (split assigned) and rejected documents with reasons."""
    rows, rejected, seen = [], [], set()
    for doc in docs:
        try:
            row = mp_doc_to_row(doc)
            if row["id"] in seen:  # pages of a search can overlap; an id must stay unique
                raise RejectedElectrode("duplicate of an earlier document")
            seen.add(row["id"])
            rows.append(row)
        except (RejectedElectrode, ValueError, KeyError, IndexError, TypeError,
                AttributeError) as err:
            # One malformed document must not cost the other thousands; it is recorded instead.
            rejected.append({"id": _readable_id(_get(doc, "battery_id") or ""),
                             "working_ion": str(_get(doc, "working_ion") or ""),
                             "reason": str(err) if isinstance(err, RejectedElectrode)
                             else f"conversion failed: {type(err).__name__}: {err}"})
    df = pd.DataFrame(rows)
    if len(df):
        df["split"] = grouped_split(df["formula_discharge"], df["working_ion"], seed=seed,
                                    strict=False)
    return df, rejected


def fetch_mp(out_dir: str | Path, ions: Sequence[str] = WORKING_IONS, *, progress: bool = True,
             search: Searcher | None = None, sleep: Callable[[float], None] = time.sleep,
             attempts: int = ATTEMPTS, seed: int = 0, api_key: str | None = None,
             key_hint: str = ENV_KEY_HINT) -> Path:
    """Download, convert and write MP insertion electrodes of ``ions`` into ``out_dir``.

    The key is ``api_key`` when given (the app passes the one pasted into the session),
    otherwise ``$MP_API_KEY``; ``key_hint`` ends the message of a rejected key.
    """
    from tqdm.auto import tqdm

    from battgen.artifacts import write_metadata, write_metrics
    from battgen.data.summary import table_summary

    started = time.perf_counter()
    if api_key is None:
        key = api_key_from_env()
    elif not (key := api_key.strip()):
        raise ValueError("no Materials Project API key given")
    search = search or mp_searcher(key)
    docs, fetched = [], {}
    for ion in tqdm(list(ions), desc="fetching MP", unit="ion", disable=not progress):
        found = call_with_retries(partial(search, ion), api_key=key, attempts=attempts,
                                  sleep=sleep, key_hint=key_hint)
        fetched[ion] = len(found)
        docs.extend(found)
    df, rejected = docs_to_table(docs, seed=seed)
    if not len(df):
        # Nothing gets written, rejected.csv included, so the message carries the main reason.
        common = Counter(r["reason"] for r in rejected).most_common(1)
        raise ValueError(f"none of the {len(docs)} Materials Project documents could be used"
                         + (f" (most often: {common[0][0]})" if common else "")
                         + "; nothing to write")
    out = Path(out_dir)
    path = save_table(df, out)
    atomic.write_bytes(out / REJECTED_FILENAME, pd.DataFrame(
        rejected, columns=["id", "working_ion", "reason"]).to_csv(index=False).encode())
    summary = table_summary(df)
    summary["documents"] = {"fetched": len(docs), "fetched_per_ion": fetched,
                            "rejected": len(rejected), "kept": len(df)}
    write_metrics(out, summary)
    import importlib.metadata

    write_metadata(out, command=COMMAND, seed=seed, inputs=None,
                   config={"ions": list(ions), "fields": list(MP_FIELDS), "attempts": attempts},
                   wall_time_s=time.perf_counter() - started,
                   extra={"mp_api_version": importlib.metadata.version("mp-api"),
                          "emmet_core_version": importlib.metadata.version("emmet-core")})
    return path
