"""One small real run per test session, shared by tests/data and tests/reporting: the bulk-metal
template of `elt init`, shrunk (tiny model, short MD, two iterations), run with EMT labels on a
local Dask cluster through the CLI. Loaded by both conftests from this file, so it runs once."""

from __future__ import annotations

from pathlib import Path

import yaml

# sizes only: the science of the template (Cu, EMT, trust levels' role, stages) stays as written
SMALL = {
    "system": {"n_initial": 4},
    "train": {"ensemble_size": 2, "epochs": 12, "warm_epochs": 4, "min_steps": 1, "warm_min_steps": 1, "batch_size": 2,
              "model": {"rcut": 4.0, "embedding": [8, 16], "axis_neuron": 4, "fitting": [16, 16]}},
    "explore": {"stages": [{"name": "warm", "temperatures": [300, 700], "steps": 40, "record_every": 10,
                            "max_iterations": 2}]},
    "select": {"trust_lo": 0.03, "trust_hi": 0.6, "max_candidates": 3},
    "converge": {"max_iterations": 2},
    "evaluate": {"frames": 0},
    "cluster": {"kind": "local", "n_workers": 2},
}
TRUST = (0.03, 0.6)
RECORD_EVERY = 10

_cache: dict = {}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def shrink(workflow: Path, out: Path) -> Path:
    data = yaml.safe_load(workflow.read_text())
    out.write_text(yaml.safe_dump(_merge(data, SMALL)))
    return out


def shared_run(tmp_path_factory) -> Path:
    """RUN_DIR of the session's small run (made on first use)."""
    if "run" not in _cache:
        from elt.cli.main import main

        base = tmp_path_factory.mktemp("shared-run")
        assert main(["init", "bulk-metal", str(base / "init")]) == 0
        wf = shrink(base / "init" / "workflow.yaml", base / "init" / "small.yaml")
        run_dir = base / "run"
        assert main(["run", str(wf), "--workdir", str(run_dir)]) == 0
        _cache["run"] = run_dir
    return _cache["run"]
