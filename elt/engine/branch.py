"""Branch a run: start a new run directory from the labeled data of another run's first N
iterations (for a workflow change that would invalidate later work)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Optional

from elt.data.layout import INITIAL_FILES, RunLayout
from elt.engine.state import STATE_FILE, RunState, open_readonly
from elt.errors import ConfigError, StateError


def branch_run(wf, from_run: Optional[Path], from_iteration: Optional[int], run_dir: Path) -> None:
    if from_run is None or from_iteration is None:
        raise ConfigError("branching needs both --from-run OLD_RUN_DIR and --from-iteration N")
    from_run = Path(from_run).resolve()
    run_dir = Path(run_dir).resolve()
    if from_run == run_dir:
        raise ConfigError("--from-run must differ from the new run directory", hint="give --workdir NEW")
    if (run_dir / STATE_FILE).exists():
        raise StateError(f"{run_dir} already holds a run", hint="branch into a new, empty --workdir")
    with open_readonly(from_run) as old:
        recs = old.iterations()
        if from_iteration < 0 or from_iteration > len(recs):
            raise ConfigError(f"--from-iteration {from_iteration} is out of range: {from_run} has {len(recs)} finished iterations",
                              hint=f"use 0..{len(recs)}")
        run_dir.mkdir(parents=True, exist_ok=True)
        dst = sqlite3.connect(str(run_dir / STATE_FILE))
        old.db.backup(dst)
        dst.close()
    layout, old_layout = RunLayout(run_dir), RunLayout(from_run)
    layout.data_dir.mkdir(exist_ok=True)
    for name in INITIAL_FILES:
        src = old_layout.data_dir / name
        if src.exists():
            shutil.copy2(src, layout.data_dir / name)
    with RunState(run_dir) as new:
        new.delete_iterations_from(from_iteration)
        for r in recs[:from_iteration]:
            dst_file = layout.data_dir / Path(r["data_file"]).name
            shutil.copy2(r["data_file"], dst_file)
            r["data_file"] = str(dst_file)
            new.record_iteration(r["iteration"], r)
        from elt.engine.loop import fingerprint

        new.set_meta("fingerprint", json.dumps(fingerprint(wf)))
        new.set_meta("branched_from", json.dumps({"run": str(from_run), "iteration": from_iteration}))
