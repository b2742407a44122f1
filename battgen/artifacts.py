"""Provenance for every artifact BattGen produces: dataset directories and checkpoint directories.

Each artifact directory carries a ``metadata.json`` (how it was made: command, config, seed,
package versions, a hash of its inputs, when, how long) and usually a ``metrics.json``
(how good it is). The home page lists them, so a scientist can tell which shipped model was
trained on which data, with which code, and what it scored, without reading any code.

Only the standard library is imported here: writing metadata must not drag torch into a
process that never used it, and the home page scan must stay cheap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import math
import operator
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from battgen import paths

METADATA_FILENAME = "metadata.json"
METRICS_FILENAME = "metrics.json"
# Bumped when the meaning of a metadata field changes, so old artifacts can still be read.
METADATA_SCHEMA_VERSION = 1

# Distribution names as pip knows them; whichever are installed get recorded.
RECORDED_PACKAGES = (
    "battgen",
    "torch",
    "numpy",
    "numba",
    "scipy",
    "scikit-learn",
    "diffusers",
    "streamlit",
    "pandas",
)

CHECKPOINTS_DIRNAME = paths.CHECKPOINTS
# Shipped datasets live under assets/ (committed); generated ones under data/ (git-ignored).
DATASET_DIRNAMES = (paths.ASSETS, paths.DATA)
# Dataset directories sit a level or two below a datasets root (assets/sei/, data/sei/run1/);
# a bound keeps the home-page scan from walking a large generated tree file by file.
MAX_DATASET_SEARCH_DEPTH = 3
# Folders under a datasets root that never hold datasets.
IGNORED_DIRNAMES = {"vendor", "__pycache__", "node_modules"}

_HASH_CHUNK_BYTES = 1 << 20


# --------------------------------------------------------------------------- hashing


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks so large files need no large memory."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"cannot hash {path}: not a file")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _expand_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files named by ``inputs``, directories replaced by their files in sorted order."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"input {path} does not exist (needed to hash the artifact's inputs)")
    return files


def hash_inputs(inputs: Iterable[str | os.PathLike[str]]) -> tuple[str, list[dict[str, Any]]]:
    """Combined SHA-256 over the inputs' bytes, plus a per-file record.

    Each file's bytes are preceded by its length so that moving bytes from the end of one
    file to the start of the next changes the hash; file order is the order given (with
    directories expanded in sorted order), since callers pass inputs in a meaningful order.
    """
    combined = hashlib.sha256()
    records = []
    for path in _expand_inputs(inputs):
        size = path.stat().st_size
        file_digest = hashlib.sha256()
        combined.update(size.to_bytes(8, "little"))
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(_HASH_CHUNK_BYTES), b""):
                combined.update(chunk)
                file_digest.update(chunk)
        records.append({"path": str(path), "size_bytes": size, "sha256": file_digest.hexdigest()})
    return combined.hexdigest(), records


# --------------------------------------------------------------------------- JSON


def to_json_safe(value: Any, *, where: str = "value") -> Any:
    """Convert ``value`` to plain JSON types: NaN/inf become None, numpy/torch become lists.

    ``where`` names the position in the structure, so an unserialisable entry is reported
    as e.g. ``config['optimizer']`` rather than somewhere in a 200-line traceback.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {str(key): to_json_safe(item, where=f"{where}[{key!r}]") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(item, where=f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted((to_json_safe(item, where=f"{where}{{}}") for item in value), key=repr)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json_safe(dataclasses.asdict(value), where=where)
    # numpy scalars and arrays, torch tensors: duck-typed so this module imports neither.
    if hasattr(value, "tolist") and callable(value.tolist):
        return to_json_safe(value.tolist(), where=where)
    raise ValueError(f"{where} has type {type(value).__name__}, which cannot be stored as JSON")


def _write_json_atomically(path: Path, payload: Any) -> None:
    # The app may be reading the directory while a run finishes, and must never see half a file.
    from battgen import atomic

    atomic.write_text(path, json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n")


def _read_json_object(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ValueError(f"{path} should hold a JSON object, found {type(payload).__name__}")
    return payload


# --------------------------------------------------------------------------- environment


def package_versions() -> dict[str, str]:
    """Python and installed package versions, without importing the packages."""
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if name == "battgen":
                # The app runs from a checkout that is not pip-installed.
                from battgen import __version__

                versions[name] = __version__
    return versions


def machine_facts() -> dict[str, Any]:
    """What the machine could do, without the host name (metadata gets committed)."""
    facts: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.system(),
        "architecture": platform.machine(),
    }
    # Only asks torch when the run already imported it: importing torch just to write a
    # dataset's metadata would cost seconds and memory for nothing.
    torch = sys.modules.get("torch")
    if torch is not None:
        facts["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            facts["cuda_device_name"] = torch.cuda.get_device_name(0)
            facts["cuda_device_count"] = torch.cuda.device_count()
    return facts


def git_revision(repo_dir: Path | None = None) -> dict[str, Any] | None:
    """Commit and dirty state of the checkout the code ran from, or None outside git."""
    repo_dir = repo_dir or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo_dir,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


# --------------------------------------------------------------------------- read / write


def write_metadata(
    directory: str | os.PathLike[str],
    *,
    command: str,
    config: dict,
    seed: int | None,
    inputs: list[Path] | None = None,
    wall_time_s: float,
    extra: dict | None = None,
) -> dict:
    """Write ``directory/metadata.json`` describing how the artifact was made; return it."""
    directory = Path(directory)
    if not command or not command.strip():
        raise ValueError("command must name what produced the artifact")
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    if seed is not None:
        # __index__ admits numpy integers; a float seed (e.g. 1e3) is a caller mistake.
        if isinstance(seed, bool) or not hasattr(seed, "__index__"):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        seed = operator.index(seed)
    wall_time_s = float(wall_time_s)
    if not math.isfinite(wall_time_s) or wall_time_s < 0:
        raise ValueError(f"wall_time_s must be a finite, non-negative number of seconds, got {wall_time_s}")

    if inputs:
        input_sha256, input_files = hash_inputs(inputs)
    else:
        input_sha256, input_files = None, []

    metadata = {
        "schema_version": METADATA_SCHEMA_VERSION,
        "command": command,
        "config": to_json_safe(config, where="config"),
        "seed": seed,
        "input_sha256": input_sha256,
        "inputs": input_files,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(wall_time_s, 3),
        "versions": package_versions(),
        "machine": machine_facts(),
        "git": git_revision(),
    }
    if extra:
        clashes = sorted(set(extra) & set(metadata))
        if clashes:
            raise ValueError(f"extra metadata may not overwrite standard fields: {', '.join(clashes)}")
        metadata.update(to_json_safe(extra, where="extra"))

    directory.mkdir(parents=True, exist_ok=True)
    _write_json_atomically(directory / METADATA_FILENAME, metadata)
    return metadata


def read_metadata(directory: str | os.PathLike[str]) -> dict | None:
    """The artifact's metadata, or None when it has none. Raises ValueError if corrupt."""
    return _read_json_object(Path(directory) / METADATA_FILENAME)


def write_metrics(directory: str | os.PathLike[str], metrics: dict) -> None:
    """Write ``directory/metrics.json`` (sorted keys, NaN stored as null)."""
    if not isinstance(metrics, dict):
        raise ValueError(f"metrics must be a dict, got {type(metrics).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _write_json_atomically(directory / METRICS_FILENAME, to_json_safe(metrics, where="metrics"))


def read_metrics(directory: str | os.PathLike[str]) -> dict | None:
    """The artifact's metrics, or None when it has none. Raises ValueError if corrupt."""
    return _read_json_object(Path(directory) / METRICS_FILENAME)


def check_inputs(metadata: dict) -> list[str]:
    """Re-hash the input files an artifact's metadata lists; return what no longer matches.

    An empty list means every recorded input is still on disk with the same bytes, i.e. the
    artifact could be reproduced from what is here now.
    """
    problems = []
    for record in metadata.get("inputs") or []:
        path = Path(record["path"])
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif sha256_file(path) != record["sha256"]:
            problems.append(f"{path}: changed since the artifact was made")
    return problems


# --------------------------------------------------------------------------- listing


@dataclass
class ArtifactInfo:
    name: str
    path: Path
    kind: str  # "checkpoint" or "dataset"
    metadata: dict | None
    metrics: dict | None
    size_bytes: int
    # Why the artifact cannot be fully trusted (missing or corrupt provenance); shown, not raised,
    # so one bad directory does not hide all the others on the home page.
    problems: list[str] = field(default_factory=list)

    @property
    def provenance(self) -> dict[str, Any]:
        """The metadata fields a reader checks first, flat, for a compact table."""
        metadata = self.metadata or {}
        git = metadata.get("git") or {}
        commit = git.get("commit")
        return {
            "command": metadata.get("command"),
            "created": format_created(metadata.get("created_utc")),
            "wall time": format_duration(metadata.get("wall_time_s")),
            "seed": metadata.get("seed"),
            # Shortened like a git hash; the full digest is in metadata.json.
            "input sha256": (metadata["input_sha256"][:16] + "…") if metadata.get("input_sha256") else None,
            "git commit": (commit[:12] + (" (dirty)" if git.get("dirty") else "")) if commit else None,
            "versions": ", ".join(f"{k} {v}" for k, v in sorted((metadata.get("versions") or {}).items())),
        }


def directory_size_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file() and not p.is_symlink())


def _load_artifact(path: Path, name: str, kind: str) -> ArtifactInfo:
    problems = []
    try:
        metadata = read_metadata(path)
        if metadata is None:
            problems.append(f"no {METADATA_FILENAME}: provenance unknown")
    except ValueError as exc:
        metadata = None
        problems.append(str(exc))
    try:
        metrics = read_metrics(path)
    except ValueError as exc:
        metrics = None
        problems.append(str(exc))
    return ArtifactInfo(
        name=name,
        path=path,
        kind=kind,
        metadata=metadata,
        metrics=metrics,
        size_bytes=directory_size_bytes(path),
        problems=problems,
    )


def _is_artifact_dir(directory: Path) -> bool:
    return (directory / METADATA_FILENAME).is_file() or (directory / METRICS_FILENAME).is_file()


def _find_dataset_dirs(root: Path, depth: int = 0) -> Iterator[Path]:
    if depth >= MAX_DATASET_SEARCH_DEPTH:
        return
    for child in sorted(root.iterdir()):
        if not child.is_dir() or child.name.startswith(".") or child.name in IGNORED_DIRNAMES:
            continue
        if _is_artifact_dir(child):
            # An artifact's own subfolders (shards, splits) are part of it, not separate artifacts.
            yield child
        else:
            yield from _find_dataset_dirs(child, depth + 1)


def list_artifacts(
    root: str | os.PathLike[str],
    *,
    checkpoints_dirname: str = CHECKPOINTS_DIRNAME,
    dataset_dirnames: Iterable[str] = DATASET_DIRNAMES,
) -> list[ArtifactInfo]:
    """All checkpoints (``root/checkpoints/*/``) and datasets (directories with a
    metadata.json or metrics.json under ``root/assets`` or ``root/data``), checkpoints first.

    Every checkpoint directory is listed, with a problem noted when it lacks metadata,
    because a model nobody can trace back is exactly what this listing should expose.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"artifact root {root} is not a directory")
    artifacts: list[ArtifactInfo] = []

    checkpoints_root = root / checkpoints_dirname
    if checkpoints_root.is_dir():
        for child in sorted(checkpoints_root.iterdir()):
            if child.is_dir() and not child.name.startswith(".") and child.name not in IGNORED_DIRNAMES:
                artifacts.append(_load_artifact(child, child.name, "checkpoint"))

    for dirname in dataset_dirnames:
        datasets_root = root / dirname
        if not datasets_root.is_dir():
            continue
        for dataset_dir in _find_dataset_dirs(datasets_root):
            name = dataset_dir.relative_to(root).as_posix()
            artifacts.append(_load_artifact(dataset_dir, name, "dataset"))
    return artifacts


# --------------------------------------------------------------------------- formatting


def format_size(size_bytes: int) -> str:
    if size_bytes < 1000:
        return f"{size_bytes} B"
    size = float(size_bytes)
    for unit in ("kB", "MB", "GB", "TB"):
        size /= 1000
        if size < 1000 or unit == "TB":
            break
    return f"{size:.1f} {unit}"


def format_created(created_utc: str | None) -> str | None:
    """``2026-11-22T04:25:38+00:00`` as ``2026-11-22 04:25 UTC``; unparsable text is shown as is."""
    if not created_utc:
        return None
    try:
        moment = datetime.fromisoformat(created_utc)
    except ValueError:
        return created_utc
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def format_duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def flatten_metrics(metrics: dict | None, prefix: str = "") -> dict[str, Any]:
    """Nested metrics as one level of dotted keys (``test.mae``), for a two-column table.

    Lists are kept whole as a short string: a per-epoch loss curve belongs in a plot, and a
    table cell only needs to show that it is there.
    """
    flat: dict[str, Any] = {}
    for key, value in (metrics or {}).items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, prefix=f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def format_metric_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return f"[{len(value)} values]" if len(value) > 6 else json.dumps(value)
    return str(value)
