"""The conformance checks fail where a plugin is wrong: each faulty plugin below is a built-in with
one mistake (a sign, a unit, an ignored seed or init_path ...), and the check that must catch it
says so by name."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest
from ase.build import bulk

from elt import registry
from elt.config.base import PluginConfig
from elt.config.label import LabelBase
from elt.labeling.base import Labels
from elt.labeling.emt import EMTLabeler
from elt.potentials.base import EnsemblePotential, EnsemblePrediction
from elt.sampling.ase_explorer import AseMDExplorer
from elt.testing import check_explorer, check_labeler, check_potential


# ------------------------------------------------------------------ labelers
@registry.register_config("labeler", "faulty")
class FaultyLabel(LabelBase):
    kind: Literal["faulty"] = "faulty"
    fault: Literal["forces", "stress", "hartree", "mutates", "float32", "never_fails", "stress_on_molecule"]


@registry.register("labeler", "faulty")
class FaultyLabeler(EMTLabeler):
    def compute(self, atoms, workdir):
        fault = self.config.fault
        if fault == "mutates":
            atoms.positions[0] += 0.1
        if fault == "never_fails":
            atoms = atoms.copy()
            atoms.positions[1] += 1.0  # moves the atoms apart instead of failing
        lab = super().compute(atoms, workdir)
        e, f, s = lab.energy, lab.forces, lab.stress
        if fault == "forces":
            f = 1.1 * f
        if fault == "stress" and s is not None:
            s = -s
        if fault == "hartree":
            e = e / 27.211386
        if fault == "float32":
            f = f.astype(np.float32)
        if fault == "stress_on_molecule" and s is None:
            s = np.zeros(6)
        return Labels(e, f, s)


def cu_cell():
    a = bulk("Cu", "fcc", a=3.61, cubic=True)
    a.rattle(0.05, seed=3)
    a.set_cell(a.cell.array @ [[1.0, 0.02, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.99]], scale_atoms=True)
    return a


def cu_dimer():
    from ase import Atoms

    return Atoms("Cu2", positions=[[0, 0, 0], [1.3, 1.2, 1.1]])


@pytest.mark.parametrize("fault,frame,check", [
    ("forces", cu_dimer, "forces = -dE/dR"),
    ("stress", cu_cell, "stress = (1/V) dE/dε"),
    ("hartree", cu_dimer, "forces = -dE/dR"),
    ("mutates", cu_dimer, "labels contract"),
    ("float32", cu_dimer, "labels contract"),
    ("stress_on_molecule", cu_dimer, "labels contract"),
    ("never_fails", cu_dimer, "failure recorded"),
])
def test_a_faulty_labeler_fails_the_check_that_concerns_it(fault, frame, check, tmp_path):
    with pytest.raises(AssertionError) as e:
        check_labeler({"kind": "faulty", "fault": fault}, [frame()], workdir=tmp_path, stress_components="all")
    assert str(e.value).startswith(f"labeler 'faulty': {check}:"), str(e.value)


def test_the_unfaulty_labeler_passes(tmp_path):
    # the faulty labeler's base, so that the failures above are the faults' alone
    check_labeler("emt", [cu_dimer(), cu_cell()], workdir=tmp_path, stress_components="all")


def test_an_energy_range_catches_a_unit_slip(tmp_path):
    # EMT puts the stretched Cu dimer at +3.25 eV; in Hartree that is 0.12
    check_labeler("emt", [cu_dimer()], workdir=tmp_path / "eV", energy_range=(2.0, 5.0), finite_differences=False)
    with pytest.raises(AssertionError, match="labeler 'faulty': energy range: energy 0.119"):
        check_labeler({"kind": "faulty", "fault": "hartree"}, [cu_dimer()], workdir=tmp_path / "Ha",
                      energy_range=(2.0, 5.0), finite_differences=False)


# ------------------------------------------------------------------ potentials
class FaultyEnsemble(EnsemblePotential):
    def __init__(self, inner, fault):
        self.inner, self.fault = inner, fault
        self.elements, self.size, self.rcut = inner.elements, inner.size, inner.rcut

    def predict(self, atoms, *, stress=False):
        p = self.inner.predict(atoms, stress=stress)
        if self.fault == "stress_sign" and p.stress is not None:
            return EnsemblePrediction(p.energies, p.forces, -p.stress)
        if self.fault == "forces":
            return EnsemblePrediction(p.energies, 1.05 * p.forces, p.stress)
        return p


class FaultyPotential:
    """The built-in Deep Potential with one fault (picklable by reference: a module-level class)."""

    def __init__(self, fault):
        self.fault = fault

    def train_member(self, frames, config, elements, member, seed, out_path, init_path=None):
        from elt.potentials import deepmd

        if self.fault == "ignores_init":
            init_path = None
        if self.fault == "ignores_seed":
            seed = int(np.random.default_rng().integers(1 << 30))
        return deepmd.train_member(frames, config, elements, member, seed, out_path, init_path)

    def load_ensemble(self, paths, precision=None):
        from elt.potentials import deepmd

        return FaultyEnsemble(deepmd.load_ensemble(paths, precision=precision), self.fault)


for _fault in ("stress_sign", "forces", "ignores_init", "ignores_seed"):
    registry.register("potential", f"faulty-{_fault}")(FaultyPotential(_fault))


@pytest.mark.parametrize("fault,check", [
    ("stress_sign", "stress = (1/V) dE/dε"),
    ("forces", "forces = -dE/dR"),
    ("ignores_init", "warm start"),
    ("ignores_seed", "determinism for a seed"),
])
def test_a_faulty_potential_fails_the_check_that_concerns_it(fault, check, frames, deepmd_report, tmp_path):
    with pytest.raises(AssertionError) as e:
        check_potential(f"faulty-{fault}", frames, deepmd_report.data["config"], workdir=tmp_path)
    assert str(e.value).startswith(f"potential 'faulty-{fault}': {check}:"), str(e.value)


# ------------------------------------------------------------------ explorers
@registry.register_config("explorer", "faulty")
class FaultyExplorerConfig(PluginConfig):
    kind: Literal["faulty"] = "faulty"
    fault: Literal["devi", "no_step0", "ignores_seed", "shared_seed", "modifies_start"]


@registry.register("explorer", "faulty")
class FaultyExplorer(AseMDExplorer):
    def run(self, walkers, starts, potential, stage, levels, out_dirs):
        fault = self.config.fault
        if fault == "ignores_seed":
            walkers = [w.model_copy(update={"seed": int(np.random.default_rng().integers(1 << 30))}) for w in walkers]
        if fault == "shared_seed":  # a walker's trajectory depends on who else is in the task
            walkers = [w.model_copy(update={"seed": sum(v.seed for v in walkers)}) for w in walkers]
        if fault == "modifies_start":
            starts[0].positions += 0.01
        recs = super().run(walkers, starts, potential, stage, levels, out_dirs)
        for r in recs:
            if fault == "devi":
                r.devi = [[2 * x for x in row] for row in r.devi]
            if fault == "no_step0":
                r.steps, r.devi, r.frames = r.steps[1:], r.devi[1:], r.frames[1:]
        return recs


@pytest.mark.parametrize("fault,check", [
    ("devi", "deviations"),
    ("no_step0", "records"),
    ("ignores_seed", "same seed, same result"),
    ("shared_seed", "a walker's record depends on its own seed only"),
    ("modifies_start", "start frames"),
])
def test_a_faulty_explorer_fails_the_check_that_concerns_it(fault, check, deepmd_report, frames, tmp_path):
    with pytest.raises(AssertionError) as e:
        check_explorer({"kind": "faulty", "fault": fault}, deepmd_report.data["ensemble"], frames[:2], workdir=tmp_path)
    assert str(e.value).startswith(f"explorer 'faulty': {check}:"), str(e.value)
