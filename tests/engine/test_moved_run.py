"""A run directory that was copied or moved resumes where it stood: nothing finished is redone,
no file is read from where the run was made, and the result is the one it would have had."""

import json
import shutil

from test_loop_e2e import TINY

from elt.config import parse_workflow
from elt.engine.dataset import labeled_rows
from elt.engine.loop import Campaign
from elt.engine.state import open_readonly

SMALL = {**TINY, "name": "moved",
         "explore": {"stages": [{"temperatures": [500], "walkers_per_structure": 2, "steps": 30,
                                 "record_every": 10, "max_iterations": 3}]},
         "evaluate": {"frames": 2, "steps": 20}}


def _run(tmp_path, run_dir, iterations: int) -> dict:
    wf = parse_workflow({**SMALL, "converge": {"max_iterations": iterations}}, base_dir=tmp_path)
    return Campaign(wf, run_dir).run().as_dict()


def _starts(run_dir) -> list[str]:
    lines = (run_dir / "journal.log").read_text().splitlines()
    return [json.loads(x)["task"] for x in lines if json.loads(x)["event"] == "start"]


def test_a_copied_run_resumes_without_redoing_work_or_reading_the_original(tmp_path):
    first = tmp_path / "first"
    _run(tmp_path, first, 1)
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(first, copy)
    before = _starts(copy)
    # the original goes on in place: the reference
    ref = _run(tmp_path, first, 2)
    ref_data = labeled_rows(first)
    with open_readonly(first) as st:
        ref_recs = st.iterations()
    shutil.rmtree(first)  # nothing of the copy may come from here
    got = _run(tmp_path, copy, 2)
    assert got["dispatched"] == ref["dispatched"] > 0
    new = _starts(copy)[len(before):]
    assert not any(t.endswith(tid) for t in new for tid in before)  # no task started twice
    assert labeled_rows(copy) == ref_data
    with open_readonly(copy) as st:
        recs = st.iterations()
    assert [r["members"] for r in recs] == [r["members"] for r in ref_recs]  # recorded as where it was made
    assert got["final_members"][0].startswith(str(copy / "model"))
    assert got["test"]["rmse_f"] == ref["test"]["rmse_f"]
