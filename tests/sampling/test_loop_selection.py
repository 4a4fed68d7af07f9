"""One real iteration of the loop (local Dask workers, EMT labels) with the adaptive lower trust
level, diversity selection and a biased stage: the driver re-classifies the walkers' frames."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from elt.cli.main import main
from elt.data.frames import MAX_DEVI_F, read_frames
from elt.engine.state import open_readonly

WF = {
    "name": "adaptive",
    "seed": 3,
    "system": {"structures": [{"kind": "bulk", "element": "Cu", "a": 3.61, "supercell": [2, 2, 2]}],
               "n_initial": 4},
    "train": {"ensemble_size": 2, "epochs": 6, "warm_epochs": 2, "min_steps": 1, "warm_min_steps": 1, "batch_size": 2,
              "model": {"rcut": 4.0, "embedding": [8, 16], "axis_neuron": 4, "fitting": [16, 16]}},
    "explore": {"stages": [{"temperatures": [300, 600], "steps": 30, "record_every": 5, "stop_at_failed": False,
                            "bias": {"kind": "udd", "strength": 1.0, "width": 0.05}}]},
    "select": {"trust_lo": 0.01, "trust_hi": 50.0, "max_candidates": 3, "strategy": "fps",
               "adaptive_lo": {"candidates": 5}},
    "converge": {"max_iterations": 1},
    "cluster": {"kind": "local", "n_workers": 2},
}


def test_adaptive_lo_and_fps_in_the_loop(tmp_path):
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(WF))
    assert main(["run", str(wf), "--json"]) == 0
    run_dir = tmp_path / "adaptive"
    with open_readonly(run_dir) as st:
        [rec] = st.iterations()
    devi = []
    for d in sorted((run_dir / "iter_000" / "explore").iterdir()):
        devi.extend(np.loadtxt(d / "model_devi.out", ndmin=2)[:, 4].tolist())
        assert (d / "candidates_desc.npy").exists()
    devi = np.array(devi)
    below = devi[devi < 50.0]
    # lo in force: the 5th highest deviation below hi; exactly 5 candidates, the rest accurate
    assert rec["trust_lo"] == pytest.approx(np.sort(below)[-5], rel=1e-5)  # model_devi.out: 7 digits
    assert rec["candidate"] == 5 and rec["candidates"] == 5
    assert rec["accurate"] == len(below) - 5 and rec["failed"] == len(devi) - len(below)
    assert rec["frames"] == len(devi)
    assert rec["selected"] == 3 and rec["labels_ok"] == 3
    labeled = read_frames(Path(rec["data_file"]))
    assert all(a.info[MAX_DEVI_F] >= rec["trust_lo"] for a in labeled)
