"""Run a small active-learning campaign from Python: copper with ASE's EMT as the reference.

    python examples/run_campaign.py [RUN_DIR]

No `if __name__ == "__main__":` guard is needed around elt.run(). Run it again to resume: every
finished task is reused.
"""

import sys

import elt

workflow = {
    "name": "cu-from-python",
    "seed": 1,
    "system": {"structures": [{"kind": "bulk", "element": "Cu", "a": 3.61, "supercell": [2, 2, 2]}],
               "n_initial": 6},
    "train": {"ensemble_size": 2, "max_steps": 300, "warm_max_steps": 100,
              "model": {"rcut": 4.0, "embedding": [8, 16], "fitting": [16, 16]}},
    "explore": {"stages": [{"temperatures": [300, 600], "steps": 60, "record_every": 10, "max_iterations": 2}]},
    "select": {"trust_lo": 0.05, "trust_hi": 0.6, "max_candidates": 4},
    "label": {"kind": "emt"},
    "converge": {"max_iterations": 2},
    "cluster": {"kind": "local", "n_workers": 2},
}

summary = elt.run(workflow, workdir=sys.argv[1] if len(sys.argv) > 1 else "cu-from-python")
print(f"{summary.status} after {summary.iterations} iterations, {summary.dataset_size} labeled frames")
print(f"model: {summary.run_dir}/model")
