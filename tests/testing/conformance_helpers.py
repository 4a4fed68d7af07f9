"""Frames and configs shared by the conformance tests: EMT-labeled Cu frames (periodic cells and one
cluster) and tiny train sections of the built-in Deep Potential and of MACE."""

from __future__ import annotations

import numpy as np
from ase.build import bulk
from ase.cluster import Icosahedron

from elt.data.frames import attach_labels

TINY_DEEPMD = {"model": {"rcut": 4.0, "rcut_smth": 2.0, "embedding": [8, 16], "axis_neuron": 4, "fitting": [16, 16]},
               "epochs": 3, "warm_epochs": 2, "min_steps": 1, "warm_min_steps": 1, "batch_size": 2, "threads": 1}
# 8 channels, max_L 1, two interactions: about 40 CPU-s for check_potential (15 model builds, most of it)
TINY_MACE = {"model": {"r_max": 4.0, "hidden_irreps": "8x0e+8x1o", "num_interactions": 2, "max_ell": 1,
                       "correlation": 2, "num_bessel": 4, "radial_mlp": [8], "mlp_irreps": "4x0e"},
             "epochs": 3, "warm_epochs": 2, "min_steps": 1, "warm_min_steps": 1, "batch_size": 2, "threads": 1}


def emt_labeled(atoms):
    from ase.calculators.emt import EMT

    a = atoms.copy()
    a.calc = EMT()
    stress = a.get_stress() if a.pbc.all() else None
    return attach_labels(a, a.get_potential_energy(), a.get_forces(), stress)


def cu_frames(n_cells: int = 5, seed: int = 0) -> list:
    """``n_cells`` rattled 32-atom fcc Cu cells (one slightly sheared) and a rattled 13-atom cluster."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_cells):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        if i == 0:
            a.set_cell(a.cell.array @ [[1.0, 0.02, 0.0], [0.0, 1.0, 0.01], [0.0, 0.0, 0.99]], scale_atoms=True)
        a.positions += rng.normal(0.0, 0.08, a.positions.shape)
        out.append(emt_labeled(a))
    cluster = Icosahedron("Cu", 2)
    cluster.positions += rng.normal(0.0, 0.05, cluster.positions.shape)
    out.append(emt_labeled(cluster))
    return out
