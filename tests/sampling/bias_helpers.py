"""Helpers shared by the bias and metadynamics tests."""

import numpy as np
import pytest


def fd_check(calc, atoms, n=8, h=1e-4, seed=0):
    """Forces of ``calc`` at ``atoms`` equal central finite differences of its energy on ``n``
    random components (tolerance relative to the largest force)."""
    a = atoms.copy()
    a.calc = calc
    forces = a.get_forces().copy()
    rng = np.random.default_rng(seed)
    scale = np.abs(forces).max()
    for _ in range(n):
        i, c = int(rng.integers(len(a))), int(rng.integers(3))
        a.positions[i, c] += h
        ep = a.get_potential_energy()
        a.positions[i, c] -= 2 * h
        em = a.get_potential_energy()
        a.positions[i, c] += h
        assert -(ep - em) / (2 * h) == pytest.approx(forces[i, c], abs=1e-5 * scale + 1e-6)
