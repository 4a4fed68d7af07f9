"""`elt status` and `elt report` on a run while it runs (a real `elt run` subprocess on local Dask
workers): both name the same current iteration and phase, and once the run ends both say it
finished."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import yaml
from drive import Journal, elt_command, process, tail, wait_for

from elt.cli.main import main
from elt.engine.plan import stop_text
from elt.engine.state import open_readonly

# the tiny EMT loop of test_loop_e2e with walkers long enough that exploring takes a few seconds
WORKFLOW = {
    "name": "live", "seed": 11,
    "system": {"structures": [{"kind": "bulk", "element": "Cu", "a": 3.61, "supercell": [2, 2, 2]}], "n_initial": 4},
    "train": {"ensemble_size": 2, "epochs": 12, "warm_epochs": 4, "min_steps": 1, "warm_min_steps": 1, "batch_size": 2,
              "model": {"rcut": 4.0, "embedding": [8, 16], "axis_neuron": 4, "fitting": [16, 16]}},
    "explore": {"stages": [{"temperatures": [300, 700], "steps": 1000, "record_every": 50, "max_iterations": 2}]},
    "select": {"trust_lo": 0.03, "trust_hi": 0.6, "max_candidates": 3},
    "converge": {"max_iterations": 2},
    "evaluate": {"frames": 3, "steps": 300},
    "cluster": {"kind": "local", "n_workers": 2},
}
STATUS = re.compile(r"^current: iteration (\d+), phase (\w+)", re.M)
FINAL_STATUS = re.compile(r"^current: (final training|final test) \(the loop has ended: ", re.M)
FINAL_REPORT = re.compile(r": running \((final training|final test); the loop has ended: ")
REPORT = re.compile(r"^│?\s*(\d+) \(in progress: (\w+)\)", re.M)  # the first cell of the iterations table


def _status(run_dir: Path, capsys) -> tuple[str, tuple[int, str] | None]:
    capsys.readouterr()
    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    m = STATUS.search(out)
    return out, (int(m.group(1)), m.group(2)) if m else None


def _report(run_dir: Path, capsys, *opts: str) -> tuple[str, tuple[int, str] | None]:
    capsys.readouterr()
    assert main(["report", str(run_dir), *opts]) == 0
    out = capsys.readouterr().out
    m = REPORT.search(out)
    return out, (int(m.group(1)), m.group(2)) if m else None


def _sandwich(run_dir: Path, capsys, *opts: str):
    """status, report, status again: when both statuses name the same iteration and phase, the
    report read in between saw the run there too (a run only moves forward)."""
    s1, before = _status(run_dir, capsys)
    r, in_report = _report(run_dir, capsys, *opts)
    _, after = _status(run_dir, capsys)
    return (before if before == after else None), in_report, s1, r


def test_status_and_report_agree_on_the_phase_of_a_live_run_and_then_say_finished(tmp_path, capsys):
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(WORKFLOW))
    run_dir, log = tmp_path / "run", tmp_path / "driver.log"
    journal = Journal(run_dir)
    with process(elt_command("run", wf, "--workdir", run_dir), log) as p:
        wait_for(lambda: journal.started("train"), "journal event of the first training", proc=p, log=log)
        # the whole report (text and plots) while the run trains; then the text alone, quick enough
        # to fit into the few seconds of an explore phase
        where, in_report, s, r = _sandwich(run_dir, capsys)
        assert "in progress: " in r and "current: " in s and "driver: pid" in s and "; driver pid" in r
        assert (run_dir / "report" / "ratios.png").is_file()
        if where is not None:
            assert in_report == where, f"elt status:\n{s}\nelt report:\n{r}"
        wait_for(lambda: journal.started("explore"), "journal event of the explore phase", proc=p, log=log)
        agreed, seen = [], []
        while p.poll() is None and not agreed:
            where, in_report, s, r = _sandwich(run_dir, capsys, "--no-plots")
            seen.append((where, in_report))
            if where is not None and where[1] in ("explore", "label") and where[0] in (0, 1):
                assert in_report == where, f"elt status:\n{s}\nelt report:\n{r}"
                agreed.append(where)
        assert agreed, f"the run ended before status and report were read in one explore or label phase: {seen}"
        # the loop has ended: the final training and test are named so, not as one more iteration
        finishing = []
        while p.poll() is None and not finishing:
            with open_readonly(run_dir) as st:
                ended = bool(st.get_meta("ending")) and not st.get_meta("final")
            if not ended:
                time.sleep(0.05)  # the run needs the cores more than this loop does
                continue
            s1, r = _status(run_dir, capsys)[0], _report(run_dir, capsys, "--no-plots")[0]
            s2 = _status(run_dir, capsys)[0]
            before, after = FINAL_STATUS.search(s1), FINAL_STATUS.search(s2)
            assert before and "phase" not in s1 and "iteration 2" not in s1, s1
            if after and before.group(1) == after.group(1):  # the report was read in that phase too
                m = FINAL_REPORT.search(r)
                assert m and m.group(1) == before.group(1) and "in progress" not in r, f"elt status:\n{s1}\nelt report:\n{r}"
                finishing.append(before.group(1))
        assert finishing, "the run ended before status and report were read in its final training or test"
        assert p.wait(timeout=600) == 0, tail(log)
    with open_readonly(run_dir) as st:
        reason = json.loads(st.get_meta("final"))["status"]
        n = len(st.iterations())
    out, where = _status(run_dir, capsys)
    assert where is None and "current:" not in out
    assert "driver: not running" in out and f"finished: {stop_text(reason)}" in out
    assert f"iterations finished: {n}" in out
    rep, in_report = _report(run_dir, capsys, "--no-plots")
    assert in_report is None and f"run {run_dir.resolve()}: finished ({reason})" in rep
