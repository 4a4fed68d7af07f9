"""Import of labeled data (extxyz with configurable keys, deepmd/npy) and export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms

from elt.data.frames import attach_labels
from elt.errors import SetupError


def read_labeled_extxyz(path: Path, energy_key="energy", forces_key="forces", stress_key="stress") -> list[Atoms]:
    from ase.io import read

    try:
        frames = read(str(path), index=":", format="extxyz")
    except Exception as e:
        raise SetupError(f"cannot read labeled data {path}: {e}", hint="the file must be extxyz") from None
    out = []
    for i, a in enumerate(frames):
        calc_res = a.calc.results if a.calc is not None else {}
        e = a.info.get(energy_key, calc_res.get(energy_key if energy_key != "energy" else "energy"))
        f = a.arrays.get(forces_key, calc_res.get("forces") if forces_key == "forces" else None)
        s = a.info.get(stress_key, calc_res.get("stress") if stress_key == "stress" else None)
        if e is None or f is None:
            raise SetupError(f"{path}: frame {i} has no energy ({energy_key!r}) or forces ({forces_key!r})",
                             hint="set initial_data[].energy_key / forces_key to the names your file uses")
        b = Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc)
        out.append(attach_labels(b, float(e), np.asarray(f), None if s is None else np.asarray(s)))
    return out


def deepmd_systems(path: Path) -> list[Path]:
    """System folders (those holding type.raw) at or below ``path``, sorted."""
    path = Path(path)
    if (path / "type.raw").is_file():
        return [path]
    return sorted(p.parent for p in path.rglob("type.raw"))


def read_deepmd_npy(path: Path) -> list[Atoms]:
    """deepmd/npy data: one system folder (type.raw, type_map.raw, set.*/{coord,box,energy,force[,virial]}.npy,
    optional ``nopbc``), or a folder of such systems (as dpdata's MultiSystems and ``elt export`` write)."""
    path = Path(path)
    systems = deepmd_systems(path) if path.is_dir() else []
    if not systems:
        raise SetupError(f"{path} is not a deepmd/npy system folder, nor a folder of them (no type.raw found)",
                         hint="a system folder holds type.raw, type_map.raw and set.*/ folders")
    out: list[Atoms] = []
    for s in systems:
        out.extend(_read_deepmd_system(s))
    return out


def _read_deepmd_system(path: Path) -> list[Atoms]:
    try:
        types = np.loadtxt(path / "type.raw", dtype=int, ndmin=1)
        type_map = (path / "type_map.raw").read_text().split()
    except OSError as e:
        raise SetupError(f"{path} is not a complete deepmd/npy system folder ({e})",
                         hint="it needs type.raw, type_map.raw (the element of each type) and set.*/ folders") from None
    if len(types) and types.max() >= len(type_map):
        raise SetupError(f"{path}/type.raw uses type {types.max()} but type_map.raw lists {len(type_map)} elements")
    symbols = [type_map[t] for t in types]
    nopbc = (path / "nopbc").exists()
    out = []
    for s in sorted(path.glob("set.*")):
        try:
            coord = np.load(s / "coord.npy").reshape(-1, len(types), 3)
            energy = np.load(s / "energy.npy").reshape(-1)
            force = np.load(s / "force.npy").reshape(-1, len(types), 3)
            box = np.load(s / "box.npy").reshape(-1, 3, 3) if (s / "box.npy").exists() else None
            virial = np.load(s / "virial.npy").reshape(-1, 3, 3) if (s / "virial.npy").exists() else None
        except (OSError, ValueError) as e:
            raise SetupError(f"cannot read deepmd/npy set {s}: {e}",
                             hint="a set holds coord.npy, energy.npy, force.npy (and box.npy, virial.npy)") from None
        for i in range(len(energy)):
            periodic = not nopbc and box is not None
            a = Atoms(symbols, coord[i], cell=box[i] if periodic else None, pbc=periodic)
            stress = None
            if virial is not None and periodic:
                stress = -virial[i] / a.get_volume()
            out.append(attach_labels(a, energy[i], force[i], stress))
    return out


def read_initial_data(spec, base_dir: Path, elements=None) -> list[Atoms]:
    """Labeled frames of one ``system.initial_data`` entry. With ``elements`` (the workflow's
    ``system.elements``), frames holding other elements are an error that names them."""
    from elt.data.checks import check_elements

    path = Path(spec.path) if Path(spec.path).is_absolute() else base_dir / spec.path
    if not path.exists():
        raise SetupError(f"initial data {path} not found", hint="paths are relative to the workflow file's folder")
    fmt = spec.format
    if fmt == "auto":
        fmt = "deepmd-npy" if path.is_dir() else "extxyz"
    if fmt == "deepmd-npy":
        frames = read_deepmd_npy(path)
    else:
        frames = read_labeled_extxyz(path, spec.energy_key, spec.forces_key, spec.stress_key)
    check_elements(frames, elements, [f"{path} frame {i}" for i in range(len(frames))], f"initial data {path}")
    return frames
