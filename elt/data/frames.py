"""Frames are ASE ``Atoms``. A labeled frame carries its labels in a SinglePointCalculator
(energy eV, forces eV/Å, stress eV/Å³ in ASE's Voigt order and sign) and its provenance in
``atoms.info`` under the keys below. Files are extxyz, written atomically.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

# provenance keys in atoms.info
FRAME_ID = "elt_frame_id"      # content hash of the frame (numbers, positions, cell, pbc)
ITERATION = "elt_iteration"    # iteration that produced the frame
SOURCE = "elt_source"          # 'initial', 'init-perturbed', or the walker id
STEP = "elt_step"              # MD step within the walker
MAX_DEVI_F = "elt_max_devi_f"  # ensemble deviation when selected (eV/Å)
PICK = "elt_pick"              # why a frame was labeled: 'calibration' (random explored frame); absent: a candidate
PRED_ENERGY = "elt_pred_energy"  # ensemble mean energy when selected, before retraining (eV)
PRED_FORCES = "elt_pred_forces"  # atoms.arrays: ensemble mean forces when selected (eV/Å)


def frame_hash(atoms: Atoms, decimals: int = 6) -> str:
    """Content id of a frame: same atoms, positions (to 1e-6 Å), cell and pbc give the same id."""
    h = hashlib.sha256()
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(np.round(np.asarray(atoms.positions, dtype=np.float64), decimals).tobytes())
    h.update(np.round(np.asarray(atoms.cell.array, dtype=np.float64), decimals).tobytes())
    h.update(np.asarray(atoms.pbc, dtype=bool).tobytes())
    return h.hexdigest()[:20]


def fully_periodic(atoms: Atoms) -> bool:
    """What "periodic" means in elt: periodic in all three directions with a full-rank cell (the
    only frames with a stress, a barostat, a periodic DFT cell). Neighbour lists follow
    ``atoms.pbc`` direction by direction."""
    return bool(np.asarray(atoms.pbc).all()) and atoms.cell.rank == 3


def voigt(stress: np.ndarray) -> np.ndarray:
    """A 3x3 stress in ASE's Voigt order (xx, yy, zz, yz, xz, xy), symmetrised (ASE's helper)."""
    from ase.stress import full_3x3_to_voigt_6_stress

    return full_3x3_to_voigt_6_stress(np.asarray(stress, dtype=np.float64))


def attach_labels(atoms: Atoms, energy: float, forces: np.ndarray, stress: Optional[np.ndarray] = None) -> Atoms:
    """A copy of ``atoms`` carrying the labels (eV, eV/Å, eV/Å³ Voigt or 3x3)."""
    out = atoms.copy()
    out.calc = None
    kwargs = {"energy": float(energy), "forces": np.asarray(forces, dtype=np.float64).reshape(len(out), 3)}
    if stress is not None:
        s = np.asarray(stress, dtype=np.float64)
        if s.shape == (3, 3):
            s = voigt(s)
        kwargs["stress"] = s
    out.calc = SinglePointCalculator(out, **kwargs)
    return out


def has_labels(atoms: Atoms) -> bool:
    calc = atoms.calc
    return calc is not None and "energy" in calc.results and "forces" in calc.results


def labels_of(atoms: Atoms) -> tuple[float, np.ndarray, Optional[np.ndarray]]:
    r = atoms.calc.results
    return float(r["energy"]), np.asarray(r["forces"]), (np.asarray(r["stress"]) if "stress" in r else None)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; files follow the umask (shared group projects)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def frames_to_extxyz(frames: Sequence[Atoms]) -> str:
    buf = io.StringIO()
    if frames:
        write(buf, list(frames), format="extxyz")
    return buf.getvalue()


def write_frames(path: Path, frames: Sequence[Atoms]) -> None:
    """Atomically write frames (with labels and info) as extxyz."""
    atomic_write_text(path, frames_to_extxyz(frames))


def read_frames(path: Path, index: str = ":") -> list[Atoms]:
    path = Path(path)
    if path.stat().st_size == 0:
        return []
    out = read(str(path), index=index, format="extxyz")
    return out if isinstance(out, list) else [out]


def chemical_elements(frames: Iterable[Atoms]) -> list[str]:
    seen = set()
    for a in frames:
        seen.update(a.get_chemical_symbols())
    return sorted(seen)
