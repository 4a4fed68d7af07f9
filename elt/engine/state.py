"""Run state: one SQLite database (WAL mode) in the run directory, written by the driver only.

Tables
- ``meta``: key/value facts of the run (format version, the fingerprint of the workflow sections
  that finished work depends on).
- ``tasks``: every finished task by its content-derived id: kind, iteration, status (done or
  failed), JSON result, attempts. A task is recorded only after its outputs are durably written.
- ``iterations``: the summary record of each finished iteration.

A commit of SQLite in WAL mode survives a kill at any instant; a torn or foreign file is reported
with its path and never overwritten.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any, Optional

from elt.data.layout import RunLayout
from elt.errors import StateError

FORMAT_VERSION = 1
STATE_FILE = RunLayout(Path(".")).state_db.name
LOCK_FILE = RunLayout(Path(".")).lock.name


class RunState:
    def __init__(self, run_dir: Path, readonly: bool = False):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / STATE_FILE
        existed = self.path.exists()
        if existed and self.path.stat().st_size == 0:
            raise StateError(f"the run state {self.path} is empty (0 bytes): it holds no record of the run",
                             hint="nothing was changed; if the run never got past its start, delete the file to "
                                  "start afresh; else restore it from a backup (the labeled frames stay in data/)")
        try:
            if readonly:
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30, isolation_level=None)
                self._check()
                return
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not existed:  # made aside and moved in: a crash never leaves a 0-byte state behind
                tmp = self.path.with_name(self.path.name + ".new")
                tmp.unlink(missing_ok=True)
                db = sqlite3.connect(str(tmp), isolation_level=None)
                self.db = db
                self._create()
                db.close()
                os.replace(tmp, self.path)
            self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            if existed:
                self._check()
            self._create()
        except sqlite3.DatabaseError as e:
            raise StateError(f"the run state {self.path} is corrupted or not an elt state file ({e})",
                             hint="nothing was changed; restore it from a backup, or start a fresh run "
                                  "with another --workdir (the labeled frames stay in this run's data/ folder as extxyz)") from None

    def _check(self) -> None:
        self.db.execute("PRAGMA quick_check").fetchall()
        row = self.db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if row is None:
            raise sqlite3.DatabaseError("no meta table")
        v = self.get_meta("format_version")
        if v is not None and int(v) > FORMAT_VERSION:
            raise StateError(f"{self.path} was written by a newer elt (state format {v})",
                             hint="upgrade elt to resume this run")

    def _create(self) -> None:
        with self.db:
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.db.execute("""CREATE TABLE IF NOT EXISTS tasks (
                id TEXT PRIMARY KEY, kind TEXT, iteration INTEGER, status TEXT, result TEXT,
                attempts INTEGER DEFAULT 1, seconds REAL, finished REAL)""")
            self.db.execute("CREATE TABLE IF NOT EXISTS iterations (iteration INTEGER PRIMARY KEY, record TEXT)")
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('format_version', ?)", (str(FORMAT_VERSION),))
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (str(time.time()),))

    def close(self) -> None:
        try:
            self.db.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---------------------------------------------------------------- meta
    def get_meta(self, key: str) -> Optional[str]:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def drop_meta(self, *keys: str) -> None:
        with self.db:
            self.db.executemany("DELETE FROM meta WHERE key=?", [(k,) for k in keys])

    # ---------------------------------------------------------------- tasks
    def task(self, task_id: str) -> Optional[dict]:
        row = self.db.execute("SELECT status, result FROM tasks WHERE id=?", (task_id,)).fetchone()
        if row is None:
            return None
        return {"status": row[0], "result": json.loads(row[1]) if row[1] else None}

    def record_task(self, task_id: str, kind: str, iteration: int, status: str, result: Any,
                    seconds: float = 0.0, attempts: int = 1) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO tasks VALUES (?,?,?,?,?,?,?,?)",
                            (task_id, kind, iteration, status, json.dumps(result), attempts, seconds, time.time()))

    def tasks(self, kind: Optional[str] = None, iteration: Optional[int] = None) -> list[dict]:
        q, args = "SELECT id, kind, iteration, status, result, attempts, seconds, finished FROM tasks WHERE 1=1", []
        if kind is not None:
            q += " AND kind=?"
            args.append(kind)
        if iteration is not None:
            q += " AND iteration=?"
            args.append(iteration)
        out = []
        for r in self.db.execute(q + " ORDER BY finished", args):
            out.append({"id": r[0], "kind": r[1], "iteration": r[2], "status": r[3],
                        "result": json.loads(r[4]) if r[4] else None, "attempts": r[5],
                        "seconds": r[6], "finished": r[7]})
        return out

    def count_tasks(self, status: Optional[str] = None) -> dict[str, int]:
        """Recorded tasks per kind (only those of ``status`` when given)."""
        if status is None:
            return {k: n for k, n in self.db.execute("SELECT kind, COUNT(*) FROM tasks GROUP BY kind")}
        return {k: n for k, n in self.db.execute("SELECT kind, COUNT(*) FROM tasks WHERE status=? GROUP BY kind", (status,))}

    # ---------------------------------------------------------------- iterations
    def record_iteration(self, iteration: int, record: dict) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO iterations VALUES (?, ?)", (iteration, json.dumps(record)))

    def iterations(self) -> list[dict]:
        return [json.loads(r[0]) for r in self.db.execute("SELECT record FROM iterations ORDER BY iteration")]

    def delete_iterations_from(self, iteration: int) -> None:
        with self.db:
            self.db.execute("DELETE FROM iterations WHERE iteration>=?", (iteration,))


def open_readonly(run_dir: Path) -> RunState:
    """Open the state of a run for reading (reports, status); works while the driver runs."""
    path = Path(run_dir) / STATE_FILE
    if not path.exists():
        raise StateError(f"{run_dir} holds no elt run (no {STATE_FILE})",
                         hint="give the run directory that `elt run` created (the workflow's workdir)")
    return RunState(Path(run_dir), readonly=True)


class RunLock:
    """One driver per run directory: an exclusive ``flock`` on ``driver.lock`` holding pid and host.

    The kernel drops the lock when its process dies, so a lock left by a killed driver is stale by
    construction and taken over silently.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateError(f"another elt driver is running on {self.path.parent} ({holder})",
                             hint="wait for it to finish or stop it (Ctrl-C or kill PID); "
                                  "`elt status RUN_DIR` shows where it stands") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            import fcntl

            try:
                os.ftruncate(self.fd, 0)
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def holder(run_dir: Path) -> Optional[str]:
    """Who holds the driver lock now (text), or None."""
    import fcntl

    path = Path(run_dir) / LOCK_FILE
    if not path.exists():
        return None
    fd = os.open(str(path), os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return os.read(fd, 200).decode(errors="replace").strip() or "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)

