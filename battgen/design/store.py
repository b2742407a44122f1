"""Designs on disk: one SQLite file (``data/design/designs.sqlite``) that survives restarts.

Every write is one transaction, so a killed job leaves whole rows. Three tables: ``designs`` (the
request, status, live stage), ``funnels`` (counts per arm and stage) and ``candidates`` (every
relaxed proposal: verified with its properties, or failed with its reason).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from battgen import paths

DB_FILENAME = "designs.sqlite"
STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")

SCHEMA = """
CREATE TABLE IF NOT EXISTS designs (
    id TEXT PRIMARY KEY, created_utc TEXT NOT NULL, request TEXT NOT NULL,
    status TEXT NOT NULL, stage TEXT NOT NULL DEFAULT '', message TEXT NOT NULL DEFAULT '',
    cancel_requested INTEGER NOT NULL DEFAULT 0, finished_utc TEXT, seconds REAL,
    owner TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS funnels (
    design_id TEXT NOT NULL, arm TEXT NOT NULL, counts TEXT NOT NULL, rejections TEXT NOT NULL,
    seconds REAL, PRIMARY KEY (design_id, arm));
CREATE TABLE IF NOT EXISTS candidates (
    design_id TEXT NOT NULL, key TEXT NOT NULL, arm TEXT NOT NULL, rank INTEGER NOT NULL,
    status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', proposal TEXT NOT NULL, result TEXT,
    PRIMARY KEY (design_id, arm, key));
"""


def default_path() -> Path:
    return paths.data_dir(paths.DESIGN) / DB_FILENAME


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return host != socket.gethostname() and bool(host)  # another machine's job: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class DesignStore:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path or default_path())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.executescript(SCHEMA)
            columns = {r[1] for r in conn.execute("PRAGMA table_info(designs)")}
            if "owner" not in columns:  # a file written before designs had an owner
                conn.execute("ALTER TABLE designs ADD COLUMN owner TEXT NOT NULL DEFAULT ''")

    @contextmanager
    def _connect(self):
        # A fresh connection per operation: the page, the job thread and the CLI share the file.
        conn = sqlite3.connect(self.path, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            with conn:  # one transaction: committed whole or rolled back
                yield conn
        finally:
            conn.close()

    # designs
    def create(self, request: dict) -> str:
        design_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        with self._connect() as conn:
            conn.execute("INSERT INTO designs (id, created_utc, request, status, owner) VALUES (?, ?, ?, 'queued', ?)",
                         (design_id, _now(), json.dumps(request), _owner()))
        return design_id

    def set_status(self, design_id: str, status: str, *, stage: str | None = None, message: str | None = None,
                   seconds: float | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown design status {status!r}")
        finished = _now() if status not in ACTIVE else None
        with self._connect() as conn:
            conn.execute("UPDATE designs SET status = ?, stage = COALESCE(?, stage), message = COALESCE(?, message), "
                         "finished_utc = COALESCE(?, finished_utc), seconds = COALESCE(?, seconds) WHERE id = ?",
                         (status, stage, message, finished, seconds, design_id))

    def set_stage(self, design_id: str, stage: str) -> None:
        with self._connect() as conn:
            conn.execute("UPDATE designs SET stage = ? WHERE id = ?", (stage, design_id))

    def request_cancel(self, design_id: str) -> None:
        with self._connect() as conn:
            conn.execute("UPDATE designs SET cancel_requested = 1 WHERE id = ?", (design_id,))

    def cancel_requested(self, design_id: str) -> bool:
        with self._connect() as conn:
            row = conn.execute("SELECT cancel_requested FROM designs WHERE id = ?", (design_id,)).fetchone()
        return bool(row and row[0])

    def mark_interrupted(self) -> int:
        """Designs left queued/running by a process of this machine that is gone (an app restart)
        → interrupted. Designs of live processes (a CLI run beside the app) and of other machines
        are left alone."""
        with self._connect() as conn:
            rows = conn.execute("SELECT id, owner FROM designs WHERE status IN ('queued', 'running')").fetchall()
            stale = [r[0] for r in rows if not _owner_alive(r[1])]
            conn.executemany("UPDATE designs SET status = 'interrupted', finished_utc = ?, "
                             "message = 'the process running it stopped' WHERE id = ?",
                             [(_now(), r) for r in stale])
        return len(stale)

    def design(self, design_id: str) -> dict:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM designs WHERE id = ?", (design_id,)).fetchone()
        if row is None:
            raise ValueError(f"no design {design_id!r} in {paths.for_display(self.path)}")
        out = dict(row)
        out["request"] = json.loads(out["request"])
        return out

    def list_designs(self, limit: int = 200) -> list[dict]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT d.*, (SELECT COUNT(*) FROM candidates c WHERE c.design_id = d.id AND c.status = 'verified') "
                "AS verified FROM designs d ORDER BY created_utc DESC, id DESC LIMIT ?", (limit,)).fetchall()
        out = []
        for row in rows:
            d = dict(row)
            d["request"] = json.loads(d["request"])
            out.append(d)
        return out

    # funnel and candidates
    def record_funnel(self, design_id: str, arm: str, counts: dict, rejections: dict, seconds: float) -> None:
        with self._connect() as conn:
            conn.execute("INSERT OR REPLACE INTO funnels VALUES (?, ?, ?, ?, ?)",
                         (design_id, arm, json.dumps(counts), json.dumps(rejections), seconds))

    def update_counts(self, design_id: str, arm: str, **counts: int) -> None:
        with self._connect() as conn:
            row = conn.execute("SELECT counts FROM funnels WHERE design_id = ? AND arm = ?", (design_id, arm)).fetchone()
            merged = {**json.loads(row[0]), **counts} if row else counts
            conn.execute("UPDATE funnels SET counts = ? WHERE design_id = ? AND arm = ?",
                         (json.dumps(merged), design_id, arm))

    def funnels(self, design_id: str) -> dict[str, dict]:
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM funnels WHERE design_id = ?", (design_id,)).fetchall()
        return {r["arm"]: {"counts": json.loads(r["counts"]), "rejections": json.loads(r["rejections"]),
                           "seconds": r["seconds"]} for r in rows}

    def add_candidate(self, design_id: str, arm: str, rank: int, proposal: dict, status: str = "running") -> None:
        with self._connect() as conn:
            conn.execute("INSERT OR REPLACE INTO candidates (design_id, key, arm, rank, status, proposal) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (design_id, proposal["key"], arm, rank, status, json.dumps(proposal)))

    def finish_candidate(self, design_id: str, arm: str, result: dict) -> None:
        with self._connect() as conn:
            conn.execute("UPDATE candidates SET status = ?, reason = ?, result = ? WHERE design_id = ? AND arm = ? AND key = ?",
                         (result["status"], result.get("reason", ""), json.dumps(result), design_id, arm, result["key"]))

    def candidates(self, design_id: str, arm: str | None = None, status: str | None = None) -> list[dict]:
        query, args = "SELECT * FROM candidates WHERE design_id = ?", [design_id]
        if arm:
            query, args = query + " AND arm = ?", args + [arm]
        if status:
            query, args = query + " AND status = ?", args + [status]
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY arm, rank", args).fetchall()
        out = []
        for row in rows:
            d = dict(row)
            d["proposal"] = json.loads(d["proposal"])
            d["result"] = json.loads(d["result"]) if d["result"] else None
            out.append(d)
        return out
