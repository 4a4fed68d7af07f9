"""A run's labeled data set, as recorded in its state: ``data/imported.extxyz``,
``data/init.extxyz`` and one ``data/iter_NNN.extxyz`` per finished iteration (see
:class:`elt.data.layout.RunLayout`); and its export to other codes (:mod:`elt.data.export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ase import Atoms

from elt.data.export import write_deepmd_npy, write_extxyz
from elt.data.frames import chemical_elements, read_frames
from elt.data.layout import RunLayout
from elt.engine.state import open_readonly
from elt.errors import ConfigError, SetupError


def run_data_files(run_dir: Path, iteration: Optional[int] = None) -> list[Path]:
    """The labeled data files of a run in order; with ``iteration``, those of the initial data and
    of iterations 0..iteration (inclusive)."""
    run_dir = Path(run_dir)
    with open_readonly(run_dir) as st:
        records = st.iterations()
    if iteration is not None and not (0 <= iteration < len(records)):
        raise ConfigError(f"--iteration {iteration} is out of range: {run_dir} has {len(records)} finished iteration(s)",
                          hint=f"use 0..{len(records) - 1}, or leave it out to export everything" if records
                          else "no iteration has finished yet; leave --iteration out to export the initial data")
    layout = RunLayout(run_dir)
    files = layout.initial_files()
    for r in records:
        if iteration is not None and r["iteration"] > iteration:
            break
        files.append(layout.data_file(r["data_file"]))
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
