"""Conformance of a labeler plugin (:class:`elt.labeling.base.Labeler`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
from ase import Atoms

from elt.testing._checks import (Report, coincident, fd_force, fd_stress, fully_periodic, plugin_class, probe_atoms,
                                 require, require_close, round_trip, section, work_dir)


def check_labeler(config: Any, frames: Sequence[Atoms], *, bad_frame: Union[str, Atoms, None] = "coincident",
                  exec_settings=None, workdir: Optional[Path] = None, finite_differences: bool = True,
                  fd_step: float = 0.005, fd_atoms: int = 1, stress_components: Union[str, Sequence[int]] = "auto",
                  force_tol: tuple[float, float] = (0.02, 0.05), stress_tol: tuple[float, float] = (2e-4, 0.05),
                  newton_tol: float = 0.02, energy_range: Optional[tuple[float, float]] = None,
                  expect_physics: Optional[bool] = None) -> Report:
    """Check a labeler on ``frames`` (each computed once, plus finite differences); raise
    AssertionError naming the plugin, the check and what was wrong.

    config: the label section (a config model, a mapping with ``kind``, or a kind name), validated
    as the workflow validates it. Checked: the registry gives a :class:`Labeler` and the config
    model subclasses :class:`elt.config.label.LabelBase`; config and labeler pickle (Dask);
    ``check()`` has no complaint about the frames' elements; each frame gives the
    :class:`Labels` contract (energy a finite float in eV, forces (N, 3) float64 eV/Å, stress (6,)
    eV/Å³ only for frames periodic in all three directions, the frame handed in unchanged) and
    Newton's third law (|ΣF| ≤ ``newton_tol`` eV/Å); the energy lies in ``energy_range`` (eV) when
    given (catches a Hartree or Rydberg slip); with ``finite_differences``, the force on the
    ``fd_atoms`` atoms with the largest forces equals -dE/dR by central differences (step
    ``fd_step`` Å, tolerance ``force_tol`` = (eV/Å, relative)) and, for periodic frames with a
    stress, the stress equals (1/V) dE/dε (``stress_components``: Voigt indices, "auto" for the
    largest diagonal and the largest shear component, "all"; tolerance ``stress_tol`` = (eV/Å³,
    relative)); the engine's label task (:func:`elt.engine.tasks.label_task`) labels the first
    frame in its folder with the same energy; and ``bad_frame`` ("coincident": the first frame
    with atom 1 on atom 0; an Atoms; None to skip) is recorded as a failure with a reason, not
    raised (``expect_physics``: True or False to require that class). Returns a :class:`Report`
    (``data["labels"]``: the Labels of each frame)."""
    from elt.config.label import LabelBase
    from elt.labeling.base import ExecSettings, Labeler

    cfg = section("label", config)
    name = f"labeler {cfg.kind!r}"
    report = Report(name)
    cls = plugin_class("labeler", cfg, Labeler, LabelBase, name,
                       " (the engine reads its retries and max_failed_fraction)")
    exec_settings = exec_settings or ExecSettings(threads=1)
    labeler = cls(cfg, exec_settings)
    require(round_trip(labeler, name, "the labeler").config == cfg, name, "pickling", "the labeler's config changes through pickle")
    report.ok("registry, config model, pickling")
    _check_ready(labeler, frames, name)
    report.ok("check()")
    workdir = work_dir(workdir, "labeler")
    labels = [_computed(labeler, a, workdir / f"frame_{i}", name, newton_tol, energy_range) for i, a in enumerate(frames)]
    report.data["labels"] = labels
    report.ok("labels contract, Newton's third law" + (", energy range" if energy_range else ""))
    if finite_differences:
        for i, (a, lab) in enumerate(zip(frames, labels)):
            _fd_checks(labeler, a, lab, workdir / f"fd_{i}", name, report, fd_step, fd_atoms, stress_components,
                       force_tol, stress_tol)
    _engine_task(cfg, frames[0], labels[0], exec_settings, workdir / "task_ok", name)
    report.ok("label task")
    if bad_frame is not None:
        bad = coincident(frames[0]) if bad_frame == "coincident" else bad_frame
        if not isinstance(bad, Atoms):
            raise TypeError(f"bad_frame must be 'coincident', an ase.Atoms or None, got {bad_frame!r}")
        _failure_recorded(cfg, bad, exec_settings, workdir / "task_bad", name, expect_physics)
        report.ok("failure recorded")
    return report


def _check_ready(labeler, frames: Sequence[Atoms], name: str) -> None:
    elements = sorted({s for a in frames for s in a.get_chemical_symbols()})
    kinds = {fully_periodic(a) for a in frames}
    problems = labeler.check(elements, kinds.pop() if len(kinds) == 1 else None)
    require(isinstance(problems, list) and all(isinstance(p, str) for p in problems), name, "check()",
            f"check() must return a list of sentences, returned {problems!r}")
    require(not problems, name, "check()", f"check({elements}) complains about the test frames: {problems}")


def _computed(labeler, atoms: Atoms, workdir: Path, name: str, newton_tol: float, energy_range):
    """One frame's labels, checked against the Labels contract."""
    from elt.labeling.base import Labels

    before = atoms.copy()
    calc = atoms.calc
    workdir.mkdir(parents=True, exist_ok=True)
    lab = labeler.compute(atoms, workdir)
    n = len(atoms)
    require(isinstance(lab, Labels), name, "labels contract", f"compute() returned {type(lab).__name__}, not Labels")
    require(isinstance(lab.energy, float) and np.isfinite(lab.energy), name, "labels contract",
            f"energy must be a finite Python float (eV), got {lab.energy!r}")
    f = lab.forces
    require(isinstance(f, np.ndarray) and f.shape == (n, 3) and f.dtype == np.float64 and np.all(np.isfinite(f)),
            name, "labels contract", f"forces must be a finite float64 array of shape ({n}, 3) in eV/Å, got "
            f"{type(f).__name__} {getattr(f, 'shape', '')} {getattr(f, 'dtype', '')}")
    if fully_periodic(atoms):
        require(lab.stress is None or (np.shape(lab.stress) == (6,) and np.all(np.isfinite(lab.stress))), name,
                "labels contract", f"stress must be None or 6 finite Voigt components (eV/Å³), got {lab.stress!r}")
    else:
        require(lab.stress is None, name, "labels contract",
                f"a frame not periodic in all three directions has no stress, got {lab.stress!r}")
    require(np.array_equal(atoms.positions, before.positions) and np.array_equal(atoms.numbers, before.numbers)
            and np.array_equal(atoms.cell.array, before.cell.array) and atoms.calc is calc, name, "labels contract",
            "compute() changed the frame handed in (work on a copy)")
    net = np.abs(f.sum(axis=0)).max()
    require(net <= newton_tol, name, "Newton's third law", f"the forces sum to {net:.4g} eV/Å (at most {newton_tol})")
    if energy_range is not None:
        lo, hi = energy_range
        require(lo < lab.energy < hi, name, "energy range",
                f"energy {lab.energy:.6g} eV outside ({lo}, {hi}): a unit slip (Hartree, Rydberg)?")
    return lab


def _fd_checks(labeler, atoms: Atoms, lab, workdir: Path, name: str, report: Report, h: float, n_atoms: int,
               components, force_tol, stress_tol) -> None:
    count = [0]

    def energy(a: Atoms) -> float:
        count[0] += 1
        d = workdir / f"e{count[0]}"
        d.mkdir(parents=True, exist_ok=True)
        return labeler.compute(a, d).energy

    for atom, u in probe_atoms(lab.forces, n_atoms):
        require_close(fd_force(energy, atoms, atom, u, h), lab.forces[atom] @ u, name, "forces = -dE/dR",
                      *force_tol, what=f"-dE/dR of atom {atom} along its force (eV/Å):")
    report.ok("forces = -dE/dR")
    if lab.stress is None:
        return
    s = np.asarray(lab.stress, dtype=np.float64)
    if components == "auto":
        components = sorted({int(np.argmax(np.abs(s[:3]))), 3 + int(np.argmax(np.abs(s[3:])))})
    elif components == "all":
        components = range(6)
    h_strain = h / max(np.cbrt(atoms.get_volume()), 1.0)  # a strain that moves atoms about h Å
    for c in components:
        require_close(fd_stress(energy, atoms, c, h_strain), s[c], name, "stress = (1/V) dE/dε", *stress_tol,
                      what=f"(1/V) dE/dε of Voigt component {c} (eV/Å³):")
    report.ok("stress = (1/V) dE/dε")


def _engine_task(cfg, atoms: Atoms, lab, exec_settings, task_dir: Path, name: str) -> None:
    from elt.data.frames import labels_of, read_frames
    from elt.engine.tasks import LabelJob, label_task

    res = label_task(task_dir, LabelJob(atoms, cfg, exec_settings, retries=0))
    require(res.get("status") == "ok", name, "label task", f"the engine's label task failed: {res.get('reason')}: "
                                                           f"{res.get('message')}")
    e, f, _ = labels_of(read_frames(Path(res["file"]))[0])
    require_close(e, lab.energy, name, "label task", 1e-6 * len(atoms), 1e-9,
                  what="labeling the frame again in the engine's task gave the energy (eV)")
    require_close(f, lab.forces, name, "label task", 1e-4, 1e-6, what="labeling the frame again gave forces (eV/Å)")


def _failure_recorded(cfg, bad: Atoms, exec_settings, task_dir: Path, name: str, expect_physics) -> None:
    from elt.engine.tasks import LabelJob, label_task
    from elt.records import LabelResult

    try:
        res = label_task(task_dir, LabelJob(bad, cfg, exec_settings, retries=0))
    except Exception as e:
        raise AssertionError(f"{name}: failure recorded: a frame that must fail raised {type(e).__name__}: {e} "
                             "instead of being recorded as a failure") from e
    rec = LabelResult.model_validate(res)
    require(rec.status == "failed", name, "failure recorded",
            f"a frame that must fail (two atoms on one spot) was labeled: energy {rec.energy}")
    require(bool(rec.reason) and bool(rec.message), name, "failure recorded",
            f"a failure needs a reason and a message, got reason={rec.reason!r} message={rec.message!r}")
    if expect_physics is not None:
        require(rec.physics == expect_physics, name, "failure recorded",
                f"the failure ({rec.reason}: {rec.message}) was classified physics={rec.physics}, "
                f"expected physics={expect_physics}")
