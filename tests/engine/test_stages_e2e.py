"""A real two-stage loop on Dask workers with EMT labels: the stage escalates when its accurate
ratio passes, the run ends with the exact stop reason, the final test uses frames that are not in
the data set, and RUN_DIR/model is the final training's ensemble."""

import json
from pathlib import Path

import yaml
from ase.build import bulk
from ase.calculators.emt import EMT

from elt.cli.main import main
from elt.data.frames import FRAME_ID, attach_labels, read_frames, write_frames
from elt.engine.state import open_readonly

TRAIN = {"ensemble_size": 2, "epochs": 12, "warm_epochs": 4, "min_steps": 1, "warm_min_steps": 1, "batch_size": 2,
         "model": {"rcut": 4.0, "embedding": [8, 16], "axis_neuron": 4, "fitting": [16, 16]}}


def test_two_stages_escalate_and_end_on_the_stage_budget_with_a_fresh_final_test(tmp_path, capsys):
    # the unperturbed start structure is in the initial data: the test walker's step-0 frame is it
    start = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    s = start.copy()
    s.calc = EMT()
    write_frames(tmp_path / "start.extxyz", [attach_labels(start, s.get_potential_energy(), s.get_forces(), s.get_stress())])
    data = {
        "name": "stages", "seed": 5,
        "system": {"structures": [{"kind": "bulk", "element": "Cu", "a": 3.61, "supercell": [2, 2, 2]}],
                   "n_initial": 4, "initial_data": [{"path": "start.extxyz"}]},
        "train": TRAIN,
        # stage "easy": every frame below its lower level -> accurate -> the next stage;
        # stage "hard": every frame a candidate -> never accurate -> its budget of 1 iteration ends the run
        "explore": {"stages": [
            {"name": "easy", "temperatures": [300], "steps": 40, "record_every": 10, "max_iterations": 3,
             "trust_lo": 5.0, "trust_hi": 10.0},
            {"name": "hard", "temperatures": [900], "steps": 40, "record_every": 10, "max_iterations": 1,
             "trust_lo": 1e-6, "trust_hi": 10.0}]},
        "select": {"trust_lo": 0.03, "trust_hi": 0.6, "max_candidates": 2},
        "converge": {"accurate_ratio": 0.9, "patience": 1, "max_iterations": 5},
        "evaluate": {"frames": 3, "steps": 30},
        "cluster": {"kind": "local", "n_workers": 2},
    }
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(data))
    assert main(["run", str(wf)]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "stages"
    with open_readonly(run) as st:
        recs = st.iterations()
        final = json.loads(st.get_meta("final"))
        test = json.loads(st.get_meta("test"))
        final_train = sorted((t for t in st.tasks("train", len(recs))), key=lambda t: t["result"]["member"])
        test_labels = st.tasks("label", len(recs))
    assert [(r["stage"], r["stage_name"]) for r in recs] == [(0, "easy"), (1, "hard")]
    assert recs[0]["accurate_ratio"] == 1.0 and recs[1]["accurate_ratio"] < 0.9
    assert final["status"] == "stage_budget"
    assert "last stage used its max_iterations" in out
    # the final test: 3 fresh frames, none of them in the data set
    known = {a.info[FRAME_ID] for f in sorted((run / "data").glob("*.extxyz")) for a in read_frames(f)}
    tested = {read_frames(Path(t["result"]["file"]))[0].info[FRAME_ID] for t in test_labels}
    assert test["frames"] == 3 == len(tested) and not tested & known
    assert 0 < test["rmse_f"] < 5.0
    # RUN_DIR/model holds the final training's members, byte for byte
    assert [Path(m).read_bytes() for m in final["members"]] == \
        [Path(t["result"]["checkpoint"]).read_bytes() for t in final_train]
    assert [Path(m).name for m in final["members"]] == ["member_0.pt", "member_1.pt"]


def test_a_walker_that_fails_is_named_in_the_summary_and_the_report(tmp_path, capsys):
    # two start structures under npt: the Cu cell runs, the molecule (no cell) fails in its task
    data = {"name": "one-fails", "seed": 2,
            "system": {"structures": [{"kind": "bulk", "element": "Cu", "a": 3.61, "supercell": [2, 2, 2]},
                                      {"kind": "molecule", "name": "CO"}], "n_initial": 4},
            "train": TRAIN,
            "explore": {"stages": [{"temperatures": [300], "pressures": [0.0], "ensemble": "npt", "steps": 20,
                                    "record_every": 10, "max_iterations": 1}]},
            "select": {"trust_lo": 0.03, "trust_hi": 5.0, "max_candidates": 2},
            "converge": {"max_iterations": 1}, "cluster": {"kind": "local", "n_workers": 2}}
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(data))
    assert main(["run", str(wf)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "walker s1-T300-P0-w0 failed" in out and "periodic" in out
    assert main(["report", str(tmp_path / "one-fails"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert [f["walker"] for f in rep["iterations"][0]["walker_failures"]] == ["s1-T300-P0-w0"]
