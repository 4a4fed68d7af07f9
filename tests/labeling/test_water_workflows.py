"""The ready water workflows validate, their labelers find nothing wrong here, and the CP2K one
keeps the start structure's box for every frame (a constant grid)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lab_helpers import CP2K_BINARY, NO_CP2K

from elt import registry
from elt.config import load_workflow
from elt.data.structures import start_structures
from elt.labeling import cp2k_input

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name,kind", [("water-pyscf", "pyscf"), ("water-cp2k", "cp2k")])
def test_water_workflow_validates(name, kind):
    wf = load_workflow(ROOT / "workflows" / f"{name}.yaml")
    assert wf.label.kind == kind
    structures = start_structures(wf.system, wf.base_dir)
    assert [a.get_chemical_formula() for a in structures] == ["H2O"]
    if kind == "cp2k" and CP2K_BINARY is None:
        pytest.skip(NO_CP2K)
    labeler = registry.get("labeler", kind)(wf.label)
    assert labeler.check(["H", "O"], periodic=False) == []


def test_water_cp2k_keeps_the_start_box():
    wf = load_workflow(ROOT / "workflows" / "water-cp2k.yaml")
    start = start_structures(wf.system, wf.base_dir)[0]
    labeler = registry.get("labeler", "cp2k")(wf.label)
    moved = start.copy()
    moved.positions += [0.7, -0.4, 0.2]  # a frame after some MD drift
    moved.positions[1] += [0.05, 0.05, 0.0]
    for frame in (start, moved):
        root = cp2k_input.parse(labeler.input_text(frame))
        cell = root.find("FORCE_EVAL/SUBSYS/CELL")
        lengths = [float(cell.keyword(k).split()[i]) for i, k in enumerate("ABC")]
        assert np.allclose(lengths, start.cell.lengths())
        assert cell.keyword("PERIODIC") == "XYZ"
        assert root.find("FORCE_EVAL").keyword("STRESS_TENSOR") is None  # a molecule
