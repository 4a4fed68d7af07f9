"""Labeled frames to other codes' formats: extxyz (ASE, MACE, NequIP) or DeePMD's deepmd/npy
(dpdata, DeePMD-kit). A whole run's data set: :mod:`elt.engine.dataset`. Units: eV, Å, eV/Å;
deepmd/npy virials in eV (``virial = -stress * volume``, ASE's stress sign).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import voigt_6_to_full_3x3_stress

from elt.data.frames import atomic_write_text, chemical_elements, frames_to_extxyz, has_labels, labels_of
from elt.errors import ConfigError, SetupError

# ------------------------------------------------------------------ extxyz
def relabel_keys(frames: Sequence[Atoms], energy_key: str = "energy", forces_key: str = "forces",
                 stress_key: str = "stress") -> list[Atoms]:
    """Copies whose labels sit under the given keys. The default keys keep them in ASE's
    calculator fields (what ``ase.io.read`` gives back as ``atoms.get_forces()``); other keys (e.g.
    MACE's REF_energy, REF_forces, REF_stress) put them in ``info``/``arrays``."""
    out = []
    plain = (energy_key, forces_key, stress_key) == ("energy", "forces", "stress")
    for a in frames:
        e, f, s = labels_of(a)
        b = a.copy()
        b.calc = None
        if plain:
            kw = {"energy": e, "forces": f}
            if s is not None:
                kw["stress"] = s
            b.calc = SinglePointCalculator(b, **kw)
        else:
            b.info[energy_key] = e
            b.arrays[forces_key] = np.asarray(f, dtype=np.float64)
            if s is not None:
                b.info[stress_key] = voigt_6_to_full_3x3_stress(s) if np.shape(s) == (6,) else np.asarray(s)
        out.append(b)
    return out


def write_extxyz(frames: Sequence[Atoms], out: Path, **keys) -> Path:
    out = Path(out)
    atomic_write_text(out, frames_to_extxyz(relabel_keys(frames, **keys)))
    return out


# ------------------------------------------------------------------ deepmd/npy
def _system_name(symbols: tuple[str, ...], taken: set[str]) -> str:
    name = Atoms(list(symbols)).get_chemical_formula(mode="hill")
    k, cand = 0, name
    while cand in taken:
        k += 1
        cand = f"{name}-{k}"
    taken.add(cand)
    return cand


def write_deepmd_npy(frames: Sequence[Atoms], out: Path, type_map: Optional[Sequence[str]] = None,
                     set_size: int = 5000) -> list[Path]:
    """One deepmd/npy system folder per atom sequence under ``out`` (``out/<formula>[-k]/``), all
    with the same ``type_map.raw`` (sorted elements, or ``type_map``). Returns the folders."""
    out = Path(out)
    type_map = list(type_map) if type_map is not None else chemical_elements(frames)
    index = {el: i for i, el in enumerate(type_map)}
    groups: "OrderedDict[tuple, list[Atoms]]" = OrderedDict()
    for a in frames:
        if not has_labels(a):
            raise SetupError(f"frame {a.info.get('elt_frame_id', '?')} has no energy/forces to export")
        key = (tuple(a.get_chemical_symbols()), bool(a.pbc.all()))
        groups.setdefault(key, []).append(a)
    missing = sorted({s for (syms, _) in groups for s in syms} - set(type_map))
    if missing:
        raise ConfigError(f"the type map {type_map} lacks elements of the data: {missing}",
                          hint="leave the type map out to take the elements from the data")
    dirs, taken = [], set()
    for (symbols, periodic), fr in groups.items():
        d = out / _system_name(symbols, taken)
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("set.*"):
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
        np.savetxt(d / "type.raw", [index[s] for s in symbols], fmt="%d")
        (d / "type_map.raw").write_text("\n".join(type_map) + "\n")
        (d / "nopbc").unlink(missing_ok=True)
        if not periodic:
            (d / "nopbc").write_text("")
        n = len(symbols)
        coord = np.array([a.positions.reshape(3 * n) for a in fr])
        box = np.array([a.cell.array.reshape(9) for a in fr])
        lab = [labels_of(a) for a in fr]
        energy = np.array([e for e, _, _ in lab])
        force = np.array([np.asarray(f).reshape(3 * n) for _, f, _ in lab])
        virial = None
        if periodic and all(s is not None for _, _, s in lab):
            virial = np.array([(-voigt_6_to_full_3x3_stress(s) * a.get_volume()).reshape(9) if np.shape(s) == (6,)
                               else (-np.asarray(s) * a.get_volume()).reshape(9) for a, (_, _, s) in zip(fr, lab)])
        for k, start in enumerate(range(0, len(fr), set_size)):
            sd = d / f"set.{k:03d}"
            sd.mkdir()
            sl = slice(start, start + set_size)
            np.save(sd / "coord.npy", coord[sl])
            np.save(sd / "box.npy", box[sl])
            np.save(sd / "energy.npy", energy[sl])
            np.save(sd / "force.npy", force[sl])
            if virial is not None:
                np.save(sd / "virial.npy", virial[sl])
        dirs.append(d)
    return dirs
