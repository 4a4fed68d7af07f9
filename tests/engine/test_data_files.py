"""Damaged data files: a deleted or truncated data/*.extxyz is rebuilt from the per-label results
by `elt run` (nothing labeled again) and refused by `elt export` with a message naming the file;
a record without the per-label list is refused, never an internal error."""

import json
import sqlite3
from pathlib import Path

from drive import journal_ends
from test_loop_e2e import TINY, write_wf

from elt.cli.main import main
from elt.engine.dataset import labeled_rows
from elt.engine.state import open_readonly


def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def test_damaged_data_files_are_rebuilt_by_run_and_refused_by_export(tmp_path, capsys):
    wf = write_wf(tmp_path)
    assert main(["run", str(wf)]) == 0
    run = tmp_path / "tiny"
    reference = labeled_rows(run)
    labels_before = sum(n for t, n in journal_ends(run).items() if t.startswith("label:"))
    it0, init = run / "data" / "iter_000.extxyz", run / "data" / "init.extxyz"
    capsys.readouterr()

    _truncate(it0)
    assert main(["export", str(run), "--format", "extxyz", "-o", str(tmp_path / "x.extxyz")]) == 3
    err = capsys.readouterr().err
    assert str(it0) in err and "elt run" in err and "internal error" not in err

    it0.unlink()
    _truncate(init)
    assert main(["run", str(wf)]) == 0
    out = capsys.readouterr().out
    assert "rebuilt iter_000.extxyz" in out and "init.extxyz differs" in out
    assert labeled_rows(run) == reference
    assert sum(n for t, n in journal_ends(run).items() if t.startswith("label:")) == labels_before  # nothing relabeled
    assert main(["export", str(run), "--format", "extxyz", "-o", str(tmp_path / "x.extxyz")]) == 0


def test_a_record_without_per_label_results_is_refused_with_the_file_named(tmp_path, capsys):
    data = {**TINY, "converge": {"max_iterations": 1}}
    wf = write_wf(tmp_path, data)
    assert main(["run", str(wf)]) == 0
    run = tmp_path / "tiny"
    with open_readonly(run) as st:
        [rec] = st.iterations()
    # a record as runs before this check wrote it: no per-label list, no hash
    rec = {k: v for k, v in rec.items() if k not in ("label_tasks", "data_sha256")}
    db = sqlite3.connect(str(run / "state.db"))
    with db:
        db.execute("UPDATE iterations SET record=? WHERE iteration=0", (json.dumps(rec),))
    db.close()
    (run / "data" / "iter_000.extxyz").unlink()
    capsys.readouterr()
    assert main(["run", str(wf)]) == 3
    err = capsys.readouterr().err
    assert "iter_000.extxyz, is missing" in " ".join(err.split()) or "iter_000.extxyz" in err
    assert "internal error" not in err
