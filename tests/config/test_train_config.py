"""The train section through the registry: deepmd by default (ids of older runs unchanged), mace
by kind, unknown kinds and typos reported; validation needs no torch or mace-torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from elt.config import load_workflow, parse_workflow
from elt.config.train import DeepMDTrain, MaceTrain, TrainBase
from elt.engine.ids import content_id
from elt.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
MIN = {"system": {"structures": [{"kind": "bulk", "element": "Cu"}]}}


def _problems(train) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        parse_workflow({**MIN, "train": train}, "wf.yaml")
    return ei.value.problems


def test_default_kind_is_deepmd_with_the_ids_of_older_runs():
    wf = parse_workflow(MIN)
    assert type(wf.train) is DeepMDTrain and wf.train.kind == "deepmd" and isinstance(wf.train, TrainBase)
    # the id of the default train section before train.kind went through the registry (elt 8a6429b):
    # runs made then resume without training again
    assert content_id(wf.train) == content_id(DeepMDTrain()) == "7b7c7d7245d18c68"
    assert content_id(parse_workflow({**MIN, "train": {"kind": "deepmd", "ensemble_size": 4}}).train) == "7b7c7d7245d18c68"


def test_mace_kind_gets_its_own_model_and_shared_fields():
    wf = parse_workflow({**MIN, "train": {"kind": "mace", "ensemble_size": 3, "model": {"max_ell": 2}}})
    assert type(wf.train) is MaceTrain and wf.train.ensemble_size == 3 and wf.train.warm_start
    assert wf.train.model.hidden_irreps == "32x0e+32x1o" and wf.train.model.r_max == 5.0
    assert wf.train.model.num_interactions == 2 and wf.train.model.max_ell == 2
    assert type(parse_workflow({**MIN, "train": "mace"}).train) is MaceTrain  # a bare name is {kind: NAME}
    quick = load_workflow(ROOT / "workflows" / "quickstart-mace.yaml")
    assert quick.train.kind == "mace" and quick.label.kind == "emt"


@pytest.mark.parametrize("train,expect", [
    ({"kind": "nequip"}, "train.kind: unknown potential kind 'nequip'; use one of: deepmd, mace"),
    ({"kind": "mace", "epoch": 3}, "train.mace.epoch: unknown key"),
    ({"kind": "mace", "model": {"rcut": 4.0}}, "train.mace.model.rcut: unknown key"),  # deepmd's name
    ({"kind": "mace", "model": {"hidden_irreps": "32 scalars"}}, "expected irreps in e3nn notation"),
    ({"kind": "deepmd", "model": {"r_max": 4.0}}, "train.deepmd.model.r_max: unknown key"),  # mace's name
    ({"kind": "mace", "learning_rate": 1e-3, "learning_rate_end": 1e-2}, "must not exceed learning_rate"),
])
def test_unknown_kinds_and_typos_are_reported(train, expect):
    problems = _problems(train)
    assert any(expect in p for p in problems), problems


def test_validating_a_mace_workflow_imports_no_torch():
    code = ("import sys; from elt.config import load_workflow; "
            f"load_workflow({str(ROOT / 'workflows' / 'quickstart-mace.yaml')!r}); "
            "print(sorted(m for m in ('torch', 'mace', 'e3nn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_registered_potential_plugin_validates_and_is_listed():
    """A plugin's config model (a TrainBase subclass) registered for group potential is validated
    by its kind, and named in the unknown-kind message."""
    from typing import Literal

    from pydantic import Field

    from elt import registry

    class MineTrain(TrainBase):
        kind: Literal["mine"] = Field(description="A test plugin.")
        width: int = Field(8, ge=1, description="Model width.")

    registry.register_config("potential", "mine")(MineTrain)
    try:
        wf = parse_workflow({**MIN, "train": {"kind": "mine", "width": 3, "ensemble_size": 2}})
        assert type(wf.train) is MineTrain and wf.train.width == 3 and wf.train.seed == 0
        assert any("use one of: deepmd, mace, mine" in p for p in _problems({"kind": "other"}))
        assert any("train.mine.widht: unknown key" in p for p in _problems({"kind": "mine", "widht": 3}))
    finally:
        registry._CONFIGS["potential"].pop("mine")
