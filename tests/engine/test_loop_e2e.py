"""The loop end to end with EMT labels on real local Dask worker processes, and crash-safe resume."""

import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from drive import Journal, elt_command, journal_ends, process, tail, wait_for

from elt.cli.main import main
from elt.data.frames import read_frames
from elt.engine.dataset import labeled_rows
from elt.engine.state import open_readonly

TINY = {
    "name": "tiny",
    "seed": 11,
    "system": {"structures": [{"kind": "bulk", "element": "Cu", "a": 3.61, "supercell": [2, 2, 2]}],
               "n_initial": 4},
    "train": {"ensemble_size": 2, "epochs": 12, "warm_epochs": 4, "min_steps": 1, "warm_min_steps": 1, "batch_size": 2,
              "model": {"rcut": 4.0, "embedding": [8, 16], "axis_neuron": 4, "fitting": [16, 16]}},
    "explore": {"stages": [{"temperatures": [300, 700], "steps": 40, "record_every": 10, "max_iterations": 2}]},
    "select": {"trust_lo": 0.03, "trust_hi": 0.6, "max_candidates": 3},
    "converge": {"max_iterations": 2},
    "cluster": {"kind": "local", "n_workers": 2},
}


def write_wf(tmp_path: Path, data=TINY, name="wf.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def test_loop_end_to_end_and_resume_reuses_everything(tmp_path, capsys):
    wf = write_wf(tmp_path)
    assert main(["run", str(wf), "--json"]) == 0

    run_dir = tmp_path / "tiny"
    with open_readonly(run_dir) as st:
        recs = st.iterations()
        final = json.loads(st.get_meta("final"))
    assert [r["iteration"] for r in recs] == [0, 1]
    assert final["status"] in ("max_iterations", "stage_budget", "converged")
    # the records agree with what is stored on disk
    for r in recs:
        assert r["frames"] == r["accurate"] + r["candidate"] + r["failed"] > 0
        assert r["labels_ok"] == len(read_frames(Path(r["data_file"])))
        assert r["selected"] <= 3
        n_devi = 0
        for d in (run_dir / f"iter_{r['iteration']:03d}" / "explore").iterdir():
            table = np.loadtxt(d / "model_devi.out", ndmin=2)
            assert table.shape[1] == 8
            assert np.all(table[:, 4] >= table[:, 6]) and np.all(table[:, 6] >= table[:, 5])  # max ≥ avg ≥ min
            n_devi += len(table)
        assert n_devi == r["frames"]
    size = len(labeled_rows(run_dir))
    assert size == 4 + sum(r["labels_ok"] for r in recs)
    assert sorted(p.name for p in (run_dir / "model").iterdir()) == ["member_0.pt", "member_1.pt", "potential.json"]
    assert json.loads((run_dir / "model" / "potential.json").read_text()) == {
        "kind": "deepmd", "members": ["member_0.pt", "member_1.pt"]}
    ends = journal_ends(run_dir)
    assert all(n == 1 for n in ends.values())
    # a second run finds everything done and dispatches nothing
    before = sum(ends.values())
    assert main(["run", str(wf)]) == 0
    out = capsys.readouterr().out
    assert "resuming after iteration 1" in out
    assert sum(journal_ends(run_dir).values()) == before
    # status works from stored state
    assert main(["status", str(run_dir)]) == 0
    assert "iterations finished: 2" in capsys.readouterr().out


def test_changed_labeling_is_refused_and_allowed_changes_continue(tmp_path, capsys):
    data = {**TINY, "converge": {"max_iterations": 1}}
    wf = write_wf(tmp_path, data)
    assert main(["run", str(wf)]) == 0
    run_dir = tmp_path / "tiny"
    refused = {**data, "select": {**TINY["select"], "trust_hi": 0.5}}
    assert main(["run", str(write_wf(tmp_path, refused))]) == 6
    err = capsys.readouterr().err
    assert "select differ" in err and "--from-iteration" in err
    # raising max_iterations continues the same run
    more = {**data, "converge": {"max_iterations": 2}}
    assert main(["run", str(write_wf(tmp_path, more))]) == 0
    with open_readonly(run_dir) as st:
        assert len(st.iterations()) == 2
    # branching keeps the first iteration's data and accepts the new trust level
    branched = tmp_path / "branch"
    assert main(["run", str(write_wf(tmp_path, {**refused, "converge": {"max_iterations": 2}})),
                 "--workdir", str(branched), "--from-run", str(run_dir), "--from-iteration", "1"]) == 0
    with open_readonly(branched) as st:
        recs = st.iterations()
    assert len(recs) == 2 and recs[1]["trust_hi"] == 0.5
    assert labeled_rows(branched)[:4 + recs[0]["labels_ok"]] == labeled_rows(run_dir)[:4 + recs[0]["labels_ok"]]


def _kill_at_start(wf: Path, journal: Journal, wanted, log: Path) -> bool:
    """Start the driver; SIGKILL it and its workers (like a crashed node) the moment a task for
    which ``wanted(kind, id)`` is true starts. True when the kill landed, False when the run ended first."""
    with process(elt_command("run", wf), log) as p:
        deadline = time.time() + 300
        while p.poll() is None and time.time() < deadline:
            starts = [e["task"].split(":", 1) for e in journal.new() if e["event"] == "start"]
            if any([wanted(kind, tid) for kind, tid in starts]):  # every event seen
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                return True
            time.sleep(0.002)
        return False


def _recorded(run_dir: Path, kind: str, iteration: int) -> set[str]:
    with open_readonly(run_dir) as st:
        return {t["id"] for t in st.tasks(kind, iteration) if t["status"] == "done"}


def test_sigkill_anywhere_then_rerun_gives_the_same_data_and_labels_nothing_twice(tmp_path):
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    assert main(["run", str(write_wf(ref_dir))]) == 0
    reference = labeled_rows(ref_dir / "tiny")
    with open_readonly(ref_dir / "tiny") as st:
        ref_labels = {it: {t["id"] for t in st.tasks("label", it)} for it in (-1, 0, 1)}
    assert ref_labels[-1] and ref_labels[0]

    work = tmp_path / "killed"
    work.mkdir()
    wf = write_wf(work)
    run_dir = work / "tiny"
    journal = Journal(run_dir)
    log = work / "driver.log"
    seen: set[str] = set()  # every task id started by an earlier driver

    def first_new(want_kind, ids=None, nth=1):
        count = [0]

        def wanted(kind, tid):
            new = tid not in seen
            seen.add(tid)
            if kind == want_kind and new and (ids is None or tid in ids):
                count[0] += 1
            return count[0] >= nth
        return wanted

    # kill on events, not after sleeps: the moment a task of each phase starts (the initial labels,
    # the first training, exploration, labeling, the next iteration's training), then at a task
    # drawn at random from what the run still has to do (the last iteration's or final tasks)
    rng = random.Random(5)
    plan = [("initial labels", first_new("label", ref_labels[-1])), ("train", first_new("train")),
            ("explore", first_new("explore")), ("label", first_new("label", ref_labels[0])),
            ("train again", first_new("train")),
            ("random", first_new(rng.choice(["explore", "train"]), nth=rng.randint(1, 2)))]
    for name, wanted in plan:
        assert _kill_at_start(wf, journal, wanted, log), f"the run ended before the {name} kill"
        if name == "label":  # the kill interrupted the labeling phase
            assert _recorded(run_dir, "label", 0) < ref_labels[0]
    last = work / "last.log"  # the run that ends: its terminal output alone
    with process(elt_command("run", wf), last) as p:
        assert p.wait(timeout=600) == 0, tail(last)
    out = last.read_text()
    # Dask's shut-down noise stays out of the terminal (workers retire before the scheduler stops)
    assert not any(w in out for w in ("Traceback", "heartbeat", "CommClosedError")), out[-3000:]
    got = labeled_rows(run_dir)
    assert got == reference
    assert len({fid for _, fid, _, _ in got}) == len(got)  # every frame once in the data set
    ends = journal_ends(run_dir)
    labels = {t: n for t, n in ends.items() if t.startswith("label:")}
    assert set(labels) == {f"label:{t}" for ids in ref_labels.values() for t in ids}  # the same labels
    assert max(labels.values()) == 1, labels  # no frame labeled twice
    assert max(ends.values()) == 1  # no finished task ran again


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path, capsys):
    wf = write_wf(tmp_path)
    log = tmp_path / "driver.log"
    run_dir = tmp_path / "elsewhere"
    journal = Journal(run_dir)
    with process(elt_command("run", wf, "--workdir", run_dir), log) as p:
        wait_for(lambda: journal.started("train"), "journal event of the first training", proc=p, log=log, poll=0.01)
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to the foreground group
        rc = p.wait(timeout=120)
    out = log.read_text()
    assert rc == 130, out[-2000:]
    assert f"run directory: {run_dir}" in out and "Traceback" not in out
    # the hint is the exact command that resumes this run
    hint = f"run `elt run {wf} --workdir {run_dir}` to resume"
    assert hint in " ".join(out.split()), out[-1000:]
    # the lock is released and the run resumes to the end, saying what it reuses
    from elt.engine.state import holder

    assert holder(run_dir) is None
    assert main(["run", str(wf), "--workdir", str(run_dir)]) == 0
    assert "resuming: " in capsys.readouterr().out


def test_streamed_labels_start_while_walkers_still_run(tmp_path):
    from elt.config import parse_workflow
    from elt.engine.loop import Campaign

    data = {**TINY, "explore": {"stages": [{"temperatures": [300, 600, 900], "steps": 40, "record_every": 10,
                                            "max_iterations": 1}]},
            "select": {**TINY["select"], "stream": True, "max_candidates": 5},
            "converge": {"max_iterations": 1}}
    wf = parse_workflow(data, base_dir=tmp_path)
    camp = Campaign(wf, tmp_path / "run")
    camp.run()
    tl = camp.runner.timeline
    explore_done = max(done for kind, phase, sub, done, _ in tl if kind == "explore" and "explore" in phase)
    first_label = min(sub for kind, phase, sub, done, _ in tl if kind == "label" and "explore" in phase)
    assert first_label < explore_done  # a finished walker's labels did not wait for the last walker
    with open_readonly(tmp_path / "run") as st:
        [rec] = st.iterations()
    frames = read_frames(Path(rec["data_file"]))
    per_walker = Counter(a.info["elt_source"] for a in frames)
    assert max(per_walker.values()) <= 2  # ceil(5 / 3 walkers)
    assert rec["labels_ok"] == len(frames) > 0
    # the data file lists the frames in walker order, whatever order the walkers finished in
    order = [rec["explore_tasks"].index(next(t for t in rec["explore_tasks"] if t.startswith(a.info["elt_source"])))
             for a in frames]
    assert order == sorted(order)
    # resume: nothing is dispatched again
    again = Campaign(wf, tmp_path / "run")
    again.run()
    assert again.runner.dispatched == 0


def test_stream_refuses_global_selection_options():
    from elt.config import parse_workflow
    from elt.errors import ConfigError

    with pytest.raises(ConfigError, match="stream: true"):
        parse_workflow({**TINY, "select": {**TINY["select"], "stream": True, "strategy": "fps"}})


def test_each_frozen_change_is_refused_and_appended_stages_and_another_cluster_continue(tmp_path, capsys):
    data = {**TINY, "converge": {"max_iterations": 1}}
    assert main(["run", str(write_wf(tmp_path, data))]) == 0
    capsys.readouterr()
    refused = {
        "label": {**data, "label": {"kind": "emt", "retries": 5}},
        "system": {**data, "system": {**TINY["system"], "elements": ["Ag", "Cu"]}},
        "train": {**data, "train": {**TINY["train"], "epochs": 13}},
        "seed": {**data, "seed": 12},
        "explore.stages[0]": {**data, "explore": {"stages": [{**TINY["explore"]["stages"][0], "steps": 50}]}},
    }
    for section, changed in refused.items():
        assert main(["run", str(write_wf(tmp_path, changed))]) == 6, section
        err = capsys.readouterr().err
        assert f"{section} differ" in err, (section, err)
    with open_readonly(tmp_path / "tiny") as st:
        assert len(st.iterations()) == 1  # nothing ran
    # a stage appended after the used one, a different cluster profile and a larger budget continue
    stages = TINY["explore"]["stages"]
    more = {**data, "explore": {"stages": [stages[0], {**stages[0], "temperatures": [900]}]},
            "cluster": {"kind": "local", "n_workers": 1}, "converge": {"max_iterations": 3}}
    assert main(["run", str(write_wf(tmp_path, more))]) == 0
    with open_readonly(tmp_path / "tiny") as st:
        recs = st.iterations()
    assert [r["stage"] for r in recs] == [0, 0, 1] and recs[2]["temperatures"] == [900]


def test_batched_explorer_in_a_real_loop_groups_walkers_and_resumes(tmp_path, capsys):
    """explorer: batched: the iteration's walkers go into few tasks (one batched MD each), every
    walker keeps its own folder, record and candidates; a rerun reuses the batches."""
    stage = {**TINY["explore"]["stages"][0], "temperatures": [300, 500, 700, 900], "explorer": {"kind": "batched"},
             "max_iterations": 1}
    data = {**TINY, "explore": {"stages": [stage]}, "converge": {"max_iterations": 1}}
    wf = write_wf(tmp_path, data)
    assert main(["run", str(wf)]) == 0
    run = tmp_path / "tiny"
    with open_readonly(run) as st:
        [rec] = st.iterations()
        explore = st.tasks("explore", 0)
    assert len(explore) == 2  # 4 walkers over 2 workers
    assert rec["walkers"] == 4 and len(rec["explore_tasks"]) == 4
    for name in rec["explore_tasks"]:
        d = run / "iter_000" / "explore" / name
        assert name.startswith("batch") and (d / "model_devi.out").is_file()
    assert rec["frames"] == sum(len(np.loadtxt(run / "iter_000" / "explore" / n / "model_devi.out", ndmin=2))
                                for n in rec["explore_tasks"])
    before = sum(journal_ends(run).values())
    assert main(["run", str(wf)]) == 0
    assert sum(journal_ends(run).values()) == before
    capsys.readouterr()
    assert main(["report", str(run), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert sorted(w["walker"] for w in rep["iterations"][0]["walker_list"]) == sorted(
        f"s0-T{T}-w0" for T in (300, 500, 700, 900))
