"""The ``morse`` labeler: energy (eV), forces (eV/Å) and stress (eV/Å³, ASE's sign) of a Morse
pair potential, from ASE's neighbour list; a frame with atoms closer than ``min_distance`` is a
physics failure (recorded by elt, never retried)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

from elt.errors import CalculationError
from elt.labeling.base import Labeler, Labels
from elt.registry import register


def smoothstep(r, r_on, r_off):
    """1 below r_on, 0 beyond r_off, a C² quintic between; and its derivative."""
    s = np.clip((r_off - r) / (r_off - r_on), 0.0, 1.0)
    f = s**3 * (10 - 15 * s + 6 * s**2)
    df = -30 * s**2 * (1 - s) ** 2 / (r_off - r_on)
    return f, df


@register("labeler", "morse")
class MorseLabeler(Labeler):
    def compute(self, atoms: Atoms, workdir: Path) -> Labels:
        c = self.config
        i, j, d, vec = neighbor_list("ijdD", atoms, c.cutoff)
        if len(d) and d.min() < c.min_distance:
            k = int(np.argmin(d))
            raise CalculationError(f"atoms {i[k]} and {j[k]} are {d[k]:.3f} Å apart (below {c.min_distance} Å)",
                                   reason="bad_geometry", physics=True)
        x = np.exp(-c.alpha * (d - c.r0))
        v = c.depth * (x * x - 2 * x)                      # eV, per ordered pair (each pair twice)
        dv = -2 * c.alpha * c.depth * (x * x - x)          # dV/dr, eV/Å
        fc, dfc = smoothstep(d, c.cutoff_on, c.cutoff)
        de = dv * fc + v * dfc                             # d(V·fc)/dr
        energy = 0.5 * float(np.sum(v * fc))
        pair = (0.5 * de / np.where(d > 0, d, 1.0))[:, None] * vec   # dE/d(vec) of each ordered pair
        forces = np.zeros((len(atoms), 3))
        np.add.at(forces, i, pair)
        np.add.at(forces, j, -pair)
        stress = None
        if atoms.pbc.all() and atoms.cell.rank == 3:       # (1/V) dE/dε
            s = pair.T @ vec / atoms.get_volume()
            stress = s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        return Labels(energy, forces, stress, info={"pairs": int(len(d) // 2)})

    def check(self, elements, periodic=None):
        return []  # one set of parameters for every pair of elements
