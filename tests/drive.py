"""Helpers of the tests that drive real runs from outside: `elt run` as a subprocess in its own
process group (killed whatever happens), the run's journal followed as the run writes it, and
waiting on events or states with a generous safety timeout that fails with a clear message
(never a wall-clock bound on how fast something must happen)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

SAFETY_S = 600.0  # a safety net only: the events waited on come in seconds to a minute


def elt_command(*args: str) -> list[str]:
    """`elt ARGS` with this interpreter (and so this checkout's elt)."""
    return [sys.executable, "-c", "from elt.cli.main import entry; entry()", *map(str, args)]


@contextlib.contextmanager
def process(cmd: list[str], log: Path, **kw):
    """A subprocess in its own session writing to ``log``; SIGKILLed with its whole process group
    (the driver's Dask workers, a scheduler's children) when the block ends, whatever happened."""
    with open(log, "ab") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1", **kw.pop("env", {})}, **kw)
    try:
        yield p
    finally:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        else:  # the leader ended: its group may still hold children
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)


def tail(log: Path, n: int = 3000) -> str:
    return log.read_text(errors="replace")[-n:] if log.exists() else "(no log)"


def wait_for(cond: Callable[[], object], what: str, timeout: float = SAFETY_S, poll: float = 0.05,
             proc: Optional[subprocess.Popen] = None, log: Optional[Path] = None):
    """``cond()``'s first truthy value. Fails with ``what`` when ``proc`` ends first or after the
    safety ``timeout`` (seconds; generous: a busy machine is slow, not wrong)."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            got = cond()  # what the process did just before it ended
            if got:
                return got
            pytest.fail(f"the process ended (exit {proc.returncode}) before {what}\n{tail(log) if log else ''}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within the {timeout:.0f} s safety timeout\n{tail(log) if log else ''}")
        time.sleep(poll)


class Journal:
    """Follows ``RUN_DIR/journal.log`` as the run writes it; :meth:`new` returns the events
    (dicts: t, event, task = 'kind:id', host, pid) written since the last call, whole lines only."""

    def __init__(self, run_dir: Path):
        self.path, self.offset, self.buf = Path(run_dir) / "journal.log", 0, b""
        self.seen: list[dict] = []

    def new(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        events = [json.loads(line) for line in lines if line.strip()]
        self.seen += events
        return events

    def started(self, kind: str) -> list[dict]:
        """Every start event of a task of ``kind`` read so far (after reading what is new)."""
        self.new()
        return [e for e in self.seen if e["event"] == "start" and e["task"].startswith(kind + ":")]


def journal_ends(run_dir: Path) -> dict[str, int]:
    """How many times each task ('kind:id') ended, from the whole journal."""
    out: dict[str, int] = {}
    p = Path(run_dir) / "journal.log"
    for line in p.read_text().splitlines() if p.exists() else []:
        ev = json.loads(line)
        if ev["event"] == "end":
            out[ev["task"]] = out.get(ev["task"], 0) + 1
    return out
