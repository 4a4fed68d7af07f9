"""A run's labeled data set, as recorded in its state: ``data/imported.extxyz``,
``data/init.extxyz`` and one ``data/iter_NNN.extxyz`` per finished iteration (see
:class:`elt.data.layout.RunLayout`); and its export to other codes (:mod:`elt.data.export`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
from ase import Atoms

from elt.data.export import write_deepmd_npy, write_extxyz
from elt.data.frames import FRAME_ID, chemical_elements, read_frames
from elt.data.layout import RunLayout
from elt.engine.state import open_readonly
from elt.errors import ConfigError, SetupError
from elt.sampling.levels import held_out_pairs


def labeled_rows(run_dir: Path) -> list[tuple[str, str, float, bytes]]:
    """What a run's ``data/*.extxyz`` files hold, to compare two runs (tests, bench/fault_matrix.py):
    per frame in file order (file name, frame id, energy in eV to 1e-8, forces in eV/Å to 1e-6 as bytes)."""
    from elt.data.frames import labels_of

    out = []
    for f in sorted((Path(run_dir) / "data").glob("*.extxyz")):
        for a in read_frames(f):
            e, frc, _ = labels_of(a)
            out.append((f.name, a.info[FRAME_ID], round(e, 8), np.round(frc, 6).tobytes()))
    return out


def run_data_files(run_dir: Path, iteration: Optional[int] = None) -> list[Path]:
    """The labeled data files of a run in order; with ``iteration``, those of the initial data and
    of iterations 0..iteration (inclusive)."""
    run_dir = Path(run_dir)
    with open_readonly(run_dir) as st:
        records = st.iterations()
        initial = json.loads(st.get_meta("initial_files") or "{}")
    if iteration is not None and not (0 <= iteration < len(records)):
        raise ConfigError(f"--iteration {iteration} is out of range: {run_dir} has {len(records)} finished iteration(s)",
                          hint=f"use 0..{len(records) - 1}, or leave it out to export everything" if records
                          else "no iteration has finished yet; leave --iteration out to export the initial data")
    layout = RunLayout(run_dir)
    files = layout.initial_files()
    for f in files:
        if f.name in initial and file_digest(f) != initial[f.name]:
            raise SetupError(f"the initial data {f} differs from what the run wrote (damaged or edited)",
                             hint=f"run `elt run WORKFLOW --workdir {run_dir}` once: it rebuilds the file "
                                  "(finished labels are reused)")
    used = [r for r in records if iteration is None or r["iteration"] <= iteration]
    check_recorded_files(run_dir, used)
    files += [layout.data_file(r["data_file"]) for r in used]
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        raise SetupError(f"labeled data files of {run_dir} are missing: {', '.join(missing)}")
    return files


def load_run_frames(run_dir: Path, iteration: Optional[int] = None) -> list[Atoms]:
    frames: list[Atoms] = []
    for f in run_data_files(run_dir, iteration):
        frames.extend(read_frames(f))
    return frames


# ------------------------------------------------------------------ a run
FORMATS = ("extxyz", "deepmd-npy")


def export_run(run_dir: Path, fmt: str, out: Path, iteration: Optional[int] = None,
               energy_key: str = "energy", forces_key: str = "forces", stress_key: str = "stress") -> dict:
    """Export a run's labeled data (up to ``iteration`` inclusive). Returns a summary dict."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    files = run_data_files(run_dir, iteration)
    frames = [a for f in files for a in read_frames(f)]
    if not frames:
        raise SetupError(f"{run_dir} has no labeled frames to export yet")
    all_elements = chemical_elements(load_run_frames(run_dir))  # one type map for every export of the run
    if fmt == "extxyz":
        if Path(out).is_dir():
            raise ConfigError(f"{out} is a folder", hint="give a file name, e.g. -o data.extxyz")
        paths = [write_extxyz(frames, out, energy_key=energy_key, forces_key=forces_key, stress_key=stress_key)]
    else:
        paths = write_deepmd_npy(frames, out, type_map=all_elements)
    return {"format": fmt, "frames": len(frames), "files": [str(f) for f in files],
            "written": [str(p) for p in paths], "elements": all_elements}


# ------------------------------------------------------------------ integrity
def file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def data_file_problem(path: Path, frames: Optional[int], sha256: Optional[str] = None) -> Optional[str]:
    """What is wrong with a data file against what the run state recorded of it (``frames``, and
    its ``sha256`` for records that carry it), or None when it is whole."""
    path = Path(path)
    if not path.exists():
        return "is missing"
    if sha256 is not None:
        return None if file_digest(path) == sha256 else "differs from what the run wrote (damaged or edited)"
    try:
        n = len(read_frames(path))
    except Exception as e:  # a truncated extxyz fails in ASE's reader in many ways
        return f"cannot be read ({type(e).__name__}: {e})"
    if frames is not None and n != frames:
        return f"holds {n} frames, the run state says {frames}"
    return None


def check_recorded_files(run_dir: Path, records: list[dict]) -> None:
    """Refuse, naming the file and what to do, when a recorded iteration's data file is not whole."""
    layout = RunLayout(run_dir)
    for r in records:
        p = layout.data_file(r["data_file"])
        problem = data_file_problem(p, r.get("labels_ok"), r.get("data_sha256"))
        if problem:
            raise SetupError(f"the labeled data of iteration {r['iteration']}, {p}, {problem}",
                             hint="run `elt run WORKFLOW --workdir " + str(run_dir) + "` once: it rebuilds the file "
                                  "from the per-label results in label/ (nothing is labeled again)")


# ------------------------------------------------------------------ the driver's view
class DataSet:
    """The labeled data set as the driver grows it: its files in order (what training reads),
    the frame ids in it (a frame is never added or labeled twice), its size, and the (max force
    deviation, true max force error) pairs of the labeled frames the exploring ensemble had not
    seen (the calibration of auto levels, :func:`elt.sampling.levels.held_out_pairs`)."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.known: set = set()
        self.size = 0
        self.held_out = (np.zeros(0), np.zeros(0))

    def add(self, path: Path, frames: list) -> None:
        """``frames`` (the content of ``path``) join the data set."""
        self.files.append(str(path))
        self.known.update(a.info.get(FRAME_ID) for a in frames)
        self.size += len(frames)
        d, e = held_out_pairs(frames)
        self.held_out = (np.concatenate([self.held_out[0], d]), np.concatenate([self.held_out[1], e]))

    def fresh(self, frames: list, seen: Optional[set] = None) -> list:
        """The frames neither in the data set nor in ``seen`` (updated), duplicates dropped:
        walkers of one start structure share their step-0 frame, and a frame can come back in a
        later iteration."""
        seen = set() if seen is None else seen
        out = []
        for a in frames:
            fid = a.info.get(FRAME_ID)
            if fid in self.known or fid in seen:
                continue
            seen.add(fid)
            out.append(a)
        return out
