"""Every built-in potential passes :func:`elt.testing.check_potential`: a potential plugin is one
more entry of CASES (its kind, its train section without kind, and frames it can fit)."""

from __future__ import annotations

import importlib.util

import pytest
from conformance_helpers import TINY_DEEPMD, TINY_MACE

from elt.testing import check_potential

ALL_CHECKS = ["train_member", "ensemble shapes, predict_many, members differ, calculator", "pickling",
              "forces = -dE/dR", "stress = (1/V) dE/dε", "determinism for a seed", "warm start"]

NO_MACE = pytest.mark.skipif(importlib.util.find_spec("mace") is None,
                             reason="mace-torch (the optional extra elt[mace]) is not installed")
# the frames mix periodic cells with a cluster (no cell, no stress) in the training set
CASES = [pytest.param("deepmd", TINY_DEEPMD, id="deepmd"),
         pytest.param("mace", TINY_MACE, id="mace", marks=NO_MACE)]


@pytest.mark.parametrize("kind,config", CASES)
def test_builtin_potential_passes_the_conformance_suite(kind, config, frames, request, tmp_path):
    # deepmd's report is the session's (the other conformance tests use its ensemble); not trained for the others
    report = (request.getfixturevalue("deepmd_report") if kind == "deepmd"
              else check_potential(kind, frames, config, workdir=tmp_path))
    assert report.passed == ALL_CHECKS
    ens = report.data["ensemble"]
    assert ens.size == 2 and len(report.data["paths"]) == 2


def test_a_train_section_error_reads_as_in_the_workflow(frames):
    from elt.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        check_potential("deepmd", frames, {"epochs": 0})
    # the path reads as every plugin section's does: the section, the kind that validated it, the field
    assert any(p.startswith("train.deepmd.epochs:") for p in e.value.problems), e.value.problems
