"""Collective variables with analytic gradients (numpy): distance, angle, dihedral, coordination.

Each CV is called on an ASE ``Atoms`` and returns ``(value, gradient)`` with the gradient of shape
(N, 3) (d value / d positions). Distances use the minimum image when the cell is periodic.
Units: Å for distance, radians for angle (in [0, π]) and dihedral (in (−π, π], periodic),
a dimensionless count for the coordination number.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from ase.geometry import find_mic

TWO_PI = 2.0 * math.pi


def _vec(atoms, i: int, j: int) -> np.ndarray:
    """r_j − r_i, minimum image where periodic."""
    d = atoms.positions[j] - atoms.positions[i]
    if atoms.pbc.any():
        d = find_mic(d[None], atoms.cell, atoms.pbc)[0][0]
    return d


class CV:
    """Base: ``name``, ``periodic`` (period 2π when true) and the atom indices it uses."""

    name = "cv"
    periodic = False

    def __init__(self, atoms: Sequence[int]):
        self.atoms = [int(i) for i in atoms]

    def check(self, n_atoms: int) -> Optional[str]:
        bad = [i for i in self.atoms if not 0 <= i < n_atoms]
        if bad:
            return f"{self.name} CV uses atom index(es) {bad}, but the structure has {n_atoms} atoms (indices 0..{n_atoms - 1})"
        return None

    def __call__(self, atoms) -> tuple[float, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError


class Distance(CV):
    name = "distance"

    def __call__(self, atoms):
        i, j = self.atoms
        d = _vec(atoms, i, j)
        r = float(np.linalg.norm(d))
        g = np.zeros((len(atoms), 3))
        u = d / max(r, 1e-12)
        g[j] += u
        g[i] -= u
        return r, g


class Angle(CV):
    """Angle i–j–k at the vertex j."""

    name = "angle"

    def __call__(self, atoms):
        i, j, k = self.atoms
        v1, v2 = _vec(atoms, j, i), _vec(atoms, j, k)
        n1, n2 = np.linalg.norm(v1), np.linalg.norm(v2)
        u1, u2 = v1 / n1, v2 / n2
        cos = float(np.clip(u1 @ u2, -1.0, 1.0))
        theta = math.atan2(float(np.linalg.norm(np.cross(u1, u2))), cos)
        sin = max(math.sin(theta), 1e-8)
        g1 = (cos * u1 - u2) / (n1 * sin)
        g2 = (cos * u2 - u1) / (n2 * sin)
        g = np.zeros((len(atoms), 3))
        g[i] += g1
        g[k] += g2
        g[j] -= g1 + g2
        return theta, g


class Dihedral(CV):
    """Dihedral i–j–k–l (IUPAC sign), in (−π, π]."""

    name = "dihedral"
    periodic = True

    def __call__(self, atoms):
        i, j, k, l = self.atoms
        b1, b2, b3 = _vec(atoms, i, j), _vec(atoms, j, k), _vec(atoms, k, l)
        n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
        nb2 = float(np.linalg.norm(b2))
        phi = math.atan2(nb2 * float(b1 @ n2), float(n1 @ n2))
        n1sq, n2sq = max(float(n1 @ n1), 1e-16), max(float(n2 @ n2), 1e-16)
        gi = -nb2 / n1sq * n1
        gl = nb2 / n2sq * n2
        p = float(b1 @ b2) / nb2 ** 2
        q = float(b3 @ b2) / nb2 ** 2
        gj = -(1.0 + p) * gi + q * gl
        gk = p * gi - (1.0 + q) * gl
        g = np.zeros((len(atoms), 3))
        g[i] += gi
        g[j] += gj
        g[k] += gk
        g[l] += gl
        return phi, g


class Coordination(CV):
    """s = Σ_pairs (1 − (r/r0)^n) / (1 − (r/r0)^m) over pairs i ∈ A, j ∈ B, i ≠ j, each unordered
    pair once (PLUMED's COORDINATION switching function)."""

    name = "coordination"

    def __init__(self, group_a: Sequence[int], group_b: Optional[Sequence[int]] = None, r0: float = 2.5,
                 n: int = 6, m: int = 12):
        a = [int(i) for i in group_a]
        b = a if group_b is None else [int(i) for i in group_b]
        super().__init__(sorted(set(a) | set(b)))
        pairs = {(min(i, j), max(i, j)) for i in a for j in b if i != j}
        self.pairs = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
        self.r0, self.n, self.m = float(r0), int(n), int(m)
        if self.m <= self.n:
            raise ValueError(f"coordination needs m > n, got n={n}, m={m}")

    def switch(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """f(r) and df/dr; at r = r0 (0/0) the value and slope are taken just beside it."""
        x = np.asarray(r, dtype=np.float64) / self.r0
        x = np.where(np.abs(x - 1.0) < 1e-6, 1.0 + 1e-6, x)
        xn, xm = x ** self.n, x ** self.m
        f = (1.0 - xn) / (1.0 - xm)
        df = (-self.n * xn / x * (1.0 - xm) + self.m * xm / x * (1.0 - xn)) / (1.0 - xm) ** 2
        return f, df / self.r0

    def __call__(self, atoms):
        g = np.zeros((len(atoms), 3))
        if len(self.pairs) == 0:
            return 0.0, g
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        pos = atoms.positions
        if atoms.pbc.any():
            d = find_mic(pos[j] - pos[i], atoms.cell, atoms.pbc)[0]
        else:
            d = pos[j] - pos[i]
        r = np.linalg.norm(d, axis=1)
        f, df = self.switch(r)
        gv = (df / np.maximum(r, 1e-12))[:, None] * d  # d f / d (r_j − r_i)
        np.add.at(g, j, gv)
        np.add.at(g, i, -gv)
        return float(f.sum()), g


def from_config(spec) -> CV:
    """A CV from its config section (kind distance | angle | dihedral | coordination)."""
    if spec.kind == "distance":
        return Distance(spec.atoms)
    if spec.kind == "angle":
        return Angle(spec.atoms)
    if spec.kind == "dihedral":
        return Dihedral(spec.atoms)
    if spec.kind == "coordination":
        return Coordination(spec.group_a, spec.group_b, spec.r0, spec.n, spec.m)
    raise ValueError(f"unknown collective variable kind {spec.kind!r}")

