"""The built-in explorers pass :func:`elt.testing.check_explorer` with the built-in ensemble."""

from __future__ import annotations

import pytest

from elt.testing import check_explorer

ALL_CHECKS = ["registry, config model, pickling", "records, deviations", "candidates", "determinism for a seed"]


NPT = {"ensemble": "npt", "pressures": [0.0]}
CELLS_AND_CLUSTER = [1, -1, 2]  # two cells and the cluster (a molecule): a batch mixes them


@pytest.mark.parametrize("config,stage,starts", [
    pytest.param("ase", None, CELLS_AND_CLUSTER, id="ase-nvt"),
    pytest.param("ase", NPT, [1, 2], id="ase-npt"),
    pytest.param("batched", None, CELLS_AND_CLUSTER, id="batched"),
    pytest.param("batched", NPT, [1, 2], id="batched-npt"),
    pytest.param({"kind": "batched", "propagate": "member0"}, {"bias": {"kind": "hal"}}, CELLS_AND_CLUSTER,
                 id="batched-member0-hal"),
])
def test_builtin_explorer_passes_the_conformance_suite(config, stage, starts, deepmd_report, frames, tmp_path):
    report = check_explorer(config, deepmd_report.data["ensemble"], [frames[i] for i in starts],
                            stage=stage, walkers=3, workdir=tmp_path)
    assert report.passed == ALL_CHECKS
    assert all(len(r.steps) == 7 for r in report.data["records"])
