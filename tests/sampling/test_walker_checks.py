"""Trajectory checks that stop a walker and say why: nan, too_close, energy_spike, above_trust_hi."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from elt.sampling.bias import WrappedCalculator
from elt.sampling.md import run_walker


class Scripted(Calculator):
    """EMT physics plus scripted trouble after ``after`` evaluations: NaN forces, a jump of the
    energy by ``jump`` eV, or a growing model deviation."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, after=10**9, nan=False, jump=0.0, devi_rate=0.0, members=False):
        super().__init__()
        self.n, self.after, self.nan, self.jump, self.devi_rate, self.members = 0, after, nan, jump, devi_rate, members
        self.emt = EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.n += 1
        a = self.atoms.copy()
        a.calc = self.emt
        e, f = a.get_potential_energy(), a.get_forces()
        late = self.n > self.after
        if late and self.nan:
            f = f * np.nan
        if late:
            e += self.jump
        self.results = {"energy": e, "free_energy": e, "forces": f, "max_devi_f": self.devi_rate * self.n}
        if self.members:
            self.results["energies_members"] = np.array([e - 0.01, e + 0.01])
            self.results["forces_members"] = np.stack([f, f])


def _cu():
    return bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 1)


def test_completed_walker_records_every_frame():
    rec = run_walker(_cu(), Scripted(), temperature=300, steps=40, record_every=10, seed=0, max_energy_jump=0.5)
    assert rec.stop_reason == "completed" and rec.steps == [0, 10, 20, 30, 40]
    assert not rec.stopped_on_bad_frame


def test_nan_forces_stop_the_walker():
    rec = run_walker(_cu(), Scripted(after=15, nan=True), temperature=300, steps=100, record_every=10, seed=0)
    assert rec.stop_reason.startswith("nan") and rec.steps_done < 100
    assert rec.stopped_on_bad_frame


def test_energy_spike_stops_the_walker_and_is_optional():
    spike = Scripted(after=25, jump=16 * 2.0)  # +2 eV/atom at once
    rec = run_walker(_cu(), spike, temperature=300, steps=100, record_every=10, seed=0, max_energy_jump=1.0)
    assert rec.stop_reason == "energy_spike" and 20 <= rec.steps[-1] <= 30  # the first record after the jump
    assert rec.stopped_on_bad_frame
    rec = run_walker(_cu(), Scripted(after=25, jump=16 * 2.0), temperature=300, steps=100, record_every=10, seed=0)
    assert rec.stop_reason == "completed"


def test_energy_spike_ignores_the_bias_energy():
    class Jumpy(WrappedCalculator):
        """A bias that jumps by 100 eV: the walker follows it, but the check sees the unbiased energy."""

        def bias(self, atoms, results):
            return (100.0 if self.inner.n > 25 else 0.0), np.zeros((len(atoms), 3))

    rec = run_walker(_cu(), Jumpy(Scripted(members=True)), temperature=300, steps=60, record_every=10, seed=0,
                     max_energy_jump=1.0)
    assert rec.stop_reason == "completed"


def test_too_close_and_above_trust_hi():
    a = Atoms("Cu2", positions=[[0, 0, 0], [0.7, 0, 0]])
    rec = run_walker(a, Scripted(), temperature=300, steps=100, record_every=10, seed=0, min_distance=1.0)
    assert rec.stop_reason == "too_close" and rec.steps == [0] and rec.stopped_on_bad_frame
    rec = run_walker(_cu(), Scripted(devi_rate=0.01), temperature=300, steps=200, record_every=10, seed=0, stop_at=0.3)
    assert rec.stop_reason == "above_trust_hi" and rec.devi_array()[-1, 3] >= 0.3
    assert rec.devi_array()[-2, 3] < 0.3 and not rec.stopped_on_bad_frame


@pytest.mark.parametrize("every", [1, 7])
def test_on_step_is_called_once_per_md_step(every):
    seen = []
    rec = run_walker(_cu(), Scripted(), temperature=300, steps=21, record_every=every, seed=0,
                     on_step=lambda step, atoms: seen.append(step))
    assert seen == list(range(0, rec.steps_done + 1))
