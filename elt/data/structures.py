"""Start structures and initial labeled data, from the ``system`` section of the workflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms

from elt.data.frames import fully_periodic
from elt.errors import ConfigError, SetupError


def build_structure(spec, base_dir: Path) -> list[Atoms]:
    kind = spec.kind
    if kind == "bulk":
        from ase.build import bulk

        try:
            a = bulk(spec.element, crystalstructure=spec.crystal, a=spec.a, cubic=spec.cubic)
        except Exception as e:
            raise ConfigError(f"system.structures: cannot build bulk {spec.element!r} "
                              f"(crystal {spec.crystal!r}, a {spec.a!r}): {e}",
                              hint="give crystal (fcc, bcc, hcp, diamond, ...) and a lattice constant a in Å") from None
        return [a.repeat(tuple(spec.supercell))]
    if kind == "molecule":
        from ase.build import molecule

        try:
            m = molecule(spec.name)
        except KeyError:
            raise ConfigError(f"system.structures: unknown molecule {spec.name!r}",
                              hint="use a name from ase.collections.g2 (H2O, CH4, NH3, C6H6, ...) or a file") from None
        if spec.vacuum is not None:
            m.center(vacuum=spec.vacuum)
            m.pbc = False
        return [m]
    if kind == "file":
        return read_structure_file(Path(spec.path) if Path(spec.path).is_absolute() else base_dir / spec.path,
                                   spec.index, spec.format)
    raise ConfigError(f"unknown structure kind {kind!r}")


def read_structure_file(path: Path, index: str = ":", fmt: str | None = None) -> list[Atoms]:
    from ase.io import read

    if not path.exists():
        raise SetupError(f"structure file {path} not found",
                         hint="paths in the workflow are relative to the workflow file's folder")
    try:
        out = read(str(path), index=index, format=fmt)
    except Exception as e:
        complaint = _complaint(e)
        # pymatgen (a dependency of elt) reads some CIF/POSCAR files that ASE's readers reject
        try:
            out = _read_pymatgen(path)
        except Exception as e2:
            raise SetupError(f"cannot read structure file {path}: {complaint} (pymatgen: {_complaint(e2)})",
                             hint="check the file, or give `format:` (e.g. vasp, cif, extxyz, db)") from None
    frames = out if isinstance(out, list) else [out]
    if not frames:
        raise SetupError(f"structure file {path} holds no frames at index {index!r}")
    for a in frames:
        a.calc = None
    return frames


def _complaint(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text if len(text) < 400 else text[:400] + " ..."


def _read_pymatgen(path: Path) -> Atoms:
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_atoms(Structure.from_file(str(path)))


def _origin(spec, base_dir: Path, i: int, n: int) -> str:
    if spec.kind == "file":
        p = Path(spec.path) if Path(spec.path).is_absolute() else base_dir / spec.path
        return f"{p} frame {i}" if n > 1 else str(p)
    if spec.kind == "bulk":
        return f"bulk {spec.element}"
    return f"molecule {spec.name}"


def start_structures(system, base_dir: Path) -> list[Atoms]:
    """The start structures of ``system``; when ``system.elements`` is given, structures holding
    other elements are an error that names them."""
    from elt.data.checks import check_elements

    out: list[Atoms] = []
    origins: list[str] = []
    for k, spec in enumerate(system.structures):
        frames = build_structure(spec, base_dir)
        out.extend(frames)
        origins.extend(f"system.structures[{k}] ({_origin(spec, base_dir, i, len(frames))})" for i in range(len(frames)))
    check_elements(out, system.elements, origins, "the start structures")
    return out


def perturbed_copies(structures: list[Atoms], n: int, sigma: float, strain: float, seed: int) -> list[Atoms]:
    """``n`` copies of the structures (round robin) with Gaussian position noise (Å) and, for
    periodic cells, a random symmetric strain of at most ``strain``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = structures[i % len(structures)].copy()
        if fully_periodic(a) and strain > 0:
            e = rng.uniform(-strain, strain, (3, 3))
            e = 0.5 * (e + e.T)
            a.set_cell(a.cell.array @ (np.eye(3) + e), scale_atoms=True)
        a.positions = a.positions + rng.normal(0.0, sigma, a.positions.shape)
        out.append(a)
    return out
