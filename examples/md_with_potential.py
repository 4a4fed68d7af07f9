"""Load a run's final ensemble as an ASE calculator and run molecular dynamics with it.

    python examples/md_with_potential.py RUN_DIR

Prints the energy drift of a short NVE run and the largest model deviation met on the way (a
frame above the run's trust_hi is outside what the model knows).
"""

import sys

import numpy as np
from ase.build import bulk
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from ase import units

import elt

run_dir = sys.argv[1]
atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
atoms.calc = elt.load_potential(f"{run_dir}/model", precision="float64")  # float64 for a clean NVE drift
MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
md = VelocityVerlet(atoms, timestep=1.0 * units.fs)
energies, devi = [], []


def record():
    energies.append(atoms.get_total_energy())
    devi.append(atoms.calc.results["max_devi_f"])


md.attach(record, interval=10)
md.run(200)
drift = (energies[-1] - energies[0]) / len(atoms) / 0.2  # eV/atom/ps over 0.2 ps
print(f"NVE drift {1000 * drift:.3f} meV/atom/ps; max force deviation {max(devi):.3f} eV/Å")
