"""Conformance of a potential plugin (:mod:`elt.potentials.base`): train members, load the ensemble."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from ase import Atoms

from elt.testing._checks import (VOIGT, Report, fd_force, fd_stress, fully_periodic, probe_atoms, require, require_close,
                                 round_trip, section, work_dir)


def check_potential(kind: str, frames: Sequence[Atoms], config: Any = None, *, elements: Optional[Sequence[str]] = None,
                    workdir: Optional[Path] = None, size: int = 2, seed: int = 0, fd_step: float = 2e-3,
                    fd_atoms: int = 2, force_tol: tuple[float, float] = (5e-3, 1e-2),
                    stress_tol: tuple[float, float] = (5e-5, 1e-2), stress: bool = True, warm_tol: float = 0.5) -> Report:
    """Train ``size`` members of potential ``kind`` on the labeled ``frames`` and check the plugin;
    raise AssertionError naming the check and what was wrong.

    config: the workflow's ``train`` section for this kind without ``kind`` (a mapping, validated as
    the workflow validates it) or the section's model; keep it small: members are trained ``size`` + 2
    times. Checked: ``train_member`` writes its checkpoint and returns JSON-able metrics with
    ``train.rmse_f`` (eV/Å, what the automatic trust levels read); config, plugin functions and
    ensemble pickle (Dask); ``load_ensemble`` gives an :class:`EnsemblePotential` of ``size``
    members covering the elements, with shapes energies (k,) eV, forces (k, N, 3) eV/Å, stress
    (k, 3, 3) eV/Å³ for frames periodic in all three directions (``stress``: False for a plugin
    without stress) and None otherwise; ``predict_many`` agrees with ``predict``; members trained
    with different seeds differ; the ASE calculator gives the members' mean and the deviation;
    forces = -dE/dR by central differences (step ``fd_step`` Å, on the ``fd_atoms`` atoms with the
    largest force, ``force_tol`` = (eV/Å, relative)) and stress = (1/V) dE/dε (ASE's sign: positive
    under tension, all six components, ``stress_tol`` = (eV/Å³, relative)) on an ensemble loaded
    with ``precision="float64"``; the same seed trains the same member; a warm start
    (``init_path``) stays nearer its start than a member trained from scratch and its force error
    on ``frames`` is at most (1 + ``warm_tol``) × that of its start (+ 0.01 eV/Å). Returns a
    :class:`Report` (``data``: ``paths`` of the members, ``ensemble``, ``config``)."""
    from elt import registry

    cfg = config if _is_model(config) else section("train", {"kind": kind, **(config or {})})
    name = f"potential {kind!r}"
    report = Report(name, data={"config": cfg})
    plugin = registry.get("potential", kind)
    for fn in ("train_member", "load_ensemble"):
        require(callable(getattr(plugin, fn, None)), name, "plugin", f"the registered plugin has no function {fn}")
        round_trip(getattr(plugin, fn), name, f"{fn} (a module-level function)")
    require(round_trip(cfg, name, "the train config") == cfg, name, "pickling", "the config changes through pickle")
    elements = sorted(elements or {s for a in frames for s in a.get_chemical_symbols()})
    workdir = work_dir(workdir, "potential")

    def train(member: int, member_seed: int, out: Path, init: Optional[Path] = None) -> Path:
        metrics = plugin.train_member(list(frames), cfg, list(elements), member, member_seed, out, init)
        _check_metrics(metrics, out, name)
        return out

    paths = [train(m, seed + m, workdir / _checkpoint_name(plugin, m)) for m in range(size)]
    report.ok("train_member")
    pot = plugin.load_ensemble(paths)
    _check_ensemble(pot, frames, size, elements, stress, name)
    report.ok("ensemble shapes, predict_many, members differ, calculator")
    again = round_trip(pot, name, "the ensemble")
    require_close(again.predict(frames[0]).forces, pot.predict(frames[0]).forces, name, "pickling", 1e-6, 1e-6,
                  what="the ensemble's forces after pickling (eV/Å):")
    report.ok("pickling")
    pot64 = plugin.load_ensemble(paths, precision="float64")
    _check_derivatives(pot64, frames, stress, fd_step, fd_atoms, force_tol, stress_tol, name, report)
    same = train(0, seed, workdir / "repeat" / _checkpoint_name(plugin, 0))
    require_close(plugin.load_ensemble([same, paths[1]]).predict(frames[0]).forces[0], pot.predict(frames[0]).forces[0],
                  name, "determinism for a seed", 1e-5, 1e-5, what="member 0 trained again with its seed: forces (eV/Å)")
    report.ok("determinism for a seed")
    warm = train(1, seed + 1, workdir / "warm" / _checkpoint_name(plugin, 1), init=paths[0])
    _check_warm_start(plugin.load_ensemble([paths[0], paths[1], warm]), frames, warm_tol, name)
    report.ok("warm start")
    report.data.update(paths=paths, ensemble=pot)
    return report


def _checkpoint_name(plugin, member: int) -> str:
    """The file name the engine gives member ``member``'s checkpoint (the plugin's own, where it names them)."""
    name = getattr(plugin, "checkpoint_name", None)
    return name(member) if callable(name) else f"member_{member}.pt"


def _is_model(value: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(value, BaseModel)


def _check_metrics(metrics: Any, out: Path, name: str) -> None:
    require(Path(out).is_file(), name, "train_member", f"no checkpoint was written to {out}")
    try:
        json.dumps(metrics)
    except (TypeError, ValueError) as e:
        raise AssertionError(f"{name}: train_member: the metrics must be JSON-able (they are stored): {e}") from None
    rmse = ((metrics or {}).get("train") or {}).get("rmse_f") if isinstance(metrics, dict) else None
    require(isinstance(rmse, (int, float)) and np.isfinite(rmse) and rmse >= 0, name, "train_member",
            f"metrics['train']['rmse_f'] (eV/Å) must be a finite number, got {rmse!r}")


def _check_ensemble(pot, frames: Sequence[Atoms], size: int, elements, stress: bool, name: str) -> None:
    from elt.potentials.base import EnsemblePotential

    require(isinstance(pot, EnsemblePotential), name, "load_ensemble",
            f"load_ensemble returned {type(pot).__name__}, not an elt.potentials.base.EnsemblePotential")
    require(pot.size == size, name, "load_ensemble", f"size is {pot.size} for {size} members")
    require(set(elements) <= set(pot.elements), name, "load_ensemble", f"elements {pot.elements} miss some of {elements}")
    require(float(pot.rcut) > 0, name, "load_ensemble", f"rcut must be a cutoff in Å, got {pot.rcut!r}")
    preds = [pot.predict(a, stress=True) for a in frames]
    for a, p in zip(frames, preds):
        n = len(a)
        require(np.shape(p.energies) == (size,) and np.shape(p.forces) == (size, n, 3), name, "shapes",
                f"energies {np.shape(p.energies)} and forces {np.shape(p.forces)}, expected ({size},) and ({size}, {n}, 3)")
        require(np.all(np.isfinite(p.energies)) and np.all(np.isfinite(p.forces)), name, "shapes", "non-finite prediction")
        if fully_periodic(a) and stress:
            require(p.stress is not None and np.shape(p.stress) == (size, 3, 3), name, "shapes",
                    f"stress of a periodic frame must have shape ({size}, 3, 3), got {None if p.stress is None else np.shape(p.stress)}")
        elif not fully_periodic(a):
            require(p.stress is None, name, "shapes", "a frame not periodic in all three directions has no stress")
        require(pot.predict(a, stress=False).stress is None, name, "shapes", "predict(stress=False) must give no stress")
    for p, q in zip(preds, pot.predict_many(frames, stress=True)):
        require_close(q.forces, p.forces, name, "predict_many", 1e-5, 1e-4, what="predict_many's forces (eV/Å):")
        require_close(q.energies, p.energies, name, "predict_many", 1e-5, 1e-6, what="predict_many's energies (eV):")
    spread = max(float(np.abs(p.forces - p.forces.mean(axis=0)).max()) for p in preds)
    require(spread > 1e-6, name, "members differ", "members trained with different seeds predict the same forces")
    a = frames[0].copy()
    a.calc = pot.calculator()
    require_close(a.get_forces(), preds[0].forces.mean(axis=0), name, "calculator", 1e-5, 1e-4,
                  what="the calculator's forces vs the members' mean (eV/Å):")
    require(a.calc.results.get("max_devi_f", -1.0) >= 0, name, "calculator", "the calculator gives no max_devi_f")


def _check_derivatives(pot64, frames: Sequence[Atoms], stress: bool, h: float, n_atoms: int, force_tol, stress_tol,
                       name: str, report: Report) -> None:
    def energies(a: Atoms) -> np.ndarray:
        return pot64.predict(a).energies

    a = frames[0]
    pred = pot64.predict(a, stress=True)
    for atom, u in probe_atoms(pred.forces.mean(axis=0), n_atoms):
        require_close(fd_force(energies, a, atom, u, h), pred.forces[:, atom] @ u, name, "forces = -dE/dR",
                      *force_tol, what=f"-dE/dR of atom {atom} along its force, per member (eV/Å):")
    report.ok("forces = -dE/dR")
    periodic = [f for f in frames if fully_periodic(f)]
    if not stress or not periodic:
        return
    a = periodic[0]
    s = pot64.predict(a, stress=True).stress
    h_strain = h / np.cbrt(a.get_volume())
    for c, (i, j) in enumerate(VOIGT):
        require_close(fd_stress(energies, a, c, h_strain), s[:, i, j], name, "stress = (1/V) dE/dε", *stress_tol,
                      what=f"(1/V) dE/dε of Voigt component {c}, per member (eV/Å³; ASE's sign):")
    report.ok("stress = (1/V) dE/dε")


def _check_warm_start(pot3, frames: Sequence[Atoms], warm_tol: float, name: str) -> None:
    """Members: 0 the start, 1 from scratch (seed s), 2 warm-started from 0 (seed s): the warm start
    is not the member from scratch (init_path is used) and keeps (about) its start's fit."""
    from elt.data.frames import labels_of

    f = np.concatenate([p.forces for p in pot3.predict_many(frames)], axis=1)  # (3, sum N, 3)
    ref = np.concatenate([labels_of(a)[1] for a in frames])

    def rms(x) -> float:
        return float(np.sqrt(np.mean(np.square(x))))

    apart = rms(f[2] - f[1])
    start, after = rms(f[0] - ref), rms(f[2] - ref)
    require(apart > 1e-4, name, "warm start", f"the warm-started member equals the member trained from scratch with "
                                              f"its seed (RMS force difference {apart:.2g} eV/Å): init_path is not used")
    require(after <= (1 + warm_tol) * start + 0.01, name, "warm start",
            f"the warm start lost its start's fit: force RMSE {after:.4g} eV/Å after, {start:.4g} before")
