"""Conformance of an explorer plugin (:class:`elt.sampling.explorer.Explorer`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from ase import Atoms

from elt.testing._checks import Report, fully_periodic, plugin_class, require, require_close, round_trip, section, work_dir


def check_explorer(config: Any, potential, starts: Sequence[Atoms], *, stage: Any = None, levels=None,
                   workdir: Optional[Path] = None, walkers: int = 2, seed: int = 0,
                   devi_tol: tuple[float, float] = (1e-5, 1e-3), position_tol: float = 1e-5) -> Report:
    """Run ``walkers`` walkers of explorer ``config`` with ``potential`` (an EnsemblePotential of
    k ≥ 2 members) from ``starts`` (cycled) three times; raise AssertionError naming the check and
    what was wrong.

    config: the stage's explorer section (a config model, a mapping with ``kind`` or a kind name),
    validated as the workflow validates it. stage: a :class:`elt.config.workflow.StageConfig` or a
    mapping of its fields (default: 300 K, nvt, 30 steps of 2 fs, a frame every 5); levels: an
    :class:`elt.records.SelectionLevels` (default lo 1e-4, hi 1e3 eV/Å: every recorded frame a
    candidate, no stop). Checked: the registry gives an :class:`Explorer`; config and explorer
    pickle (Dask); one :class:`WalkerRecord` per walker with step 0 first, increasing steps up to
    ``stage.steps``, one deviation row (:data:`elt.data.modeldevi.DEVI_KEYS`) and one frame (same
    atoms, no calculator) per step, a known stop reason; the recorded deviations are the
    ensemble's own at the recorded frames (``devi_tol`` = (absolute, relative)); the start frames
    are not changed; the engine turns each record into its files and candidates
    (:func:`elt.sampling.walker_output.finish_walker`); the same seeds give the same records
    (positions within ``position_tol`` Å), and a walker run alone gives the record it gets among
    the others. Returns a :class:`Report` (``data["records"]``)."""
    from elt.config.base import PluginConfig
    from elt.sampling.explorer import Explorer

    cfg = section("explorer", config)
    name = f"explorer {cfg.kind!r}"
    report = Report(name)
    cls = plugin_class("explorer", cfg, Explorer, PluginConfig, name)
    round_trip(cls(cfg), name, "the explorer")
    report.ok("registry, config model, pickling")
    stage, levels = _stage(stage, cfg), _levels(levels)
    specs = _walkers(walkers, stage, seed)
    starts = [starts[i % len(starts)] for i in range(walkers)]
    before = [a.copy() for a in starts]
    workdir = work_dir(workdir, "explorer")

    def run(ws, st, tag):
        dirs = [workdir / tag / w.id for w in ws]
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
        recs = cls(cfg).run(ws, st, potential, stage, levels, dirs)
        require(isinstance(recs, list) and len(recs) == len(ws), name, "records",
                f"run() must return a list of one WalkerRecord per walker ({len(ws)}), got {type(recs).__name__} "
                f"of {len(recs) if hasattr(recs, '__len__') else '?'}")
        return recs, dirs

    recs, dirs = run(specs, starts, "run")
    for rec, start in zip(recs, starts):
        _check_record(rec, start, stage, name)
        _check_deviations(rec, potential, devi_tol, name)
    report.ok("records, deviations")
    for a, b in zip(starts, before):
        require(np.array_equal(a.positions, b.positions) and np.array_equal(a.cell.array, b.cell.array), name,
                "start frames", "run() changed a start frame (work on copies)")
    _check_candidates(specs, recs, dirs, potential, levels, name)
    report.ok("candidates")
    again, _ = run(specs, starts, "again")
    for w, r1, r2 in zip(specs, recs, again):
        _same(r1, r2, name, "same seed, same result", w.id, devi_tol, position_tol)
    alone, _ = run(specs[-1:], starts[-1:], "alone")
    _same(recs[-1], alone[0], name, "a walker's record depends on its own seed only", specs[-1].id, devi_tol, position_tol)
    report.ok("determinism for a seed")
    report.data["records"] = recs
    return report


def _stage(stage: Any, cfg):
    from elt.config.workflow import StageConfig

    if isinstance(stage, StageConfig):
        return stage
    return StageConfig.model_validate({"temperatures": [300.0], "steps": 30, "record_every": 5, **(stage or {}),
                                       "explorer": cfg})


def _levels(levels):
    from elt.records import SelectionLevels

    return levels if levels is not None else SelectionLevels(lo=1e-4, hi=1e3)


def _walkers(n: int, stage, seed: int) -> list:
    from elt.records import WalkerSpec

    temps = stage.temperatures
    pressures = stage.pressures or [None]
    return [WalkerSpec(id=f"w{i}", temperature=temps[i % len(temps)], pressure=pressures[i % len(pressures)],
                       seed=seed + 1000 * i + 1, iteration=0) for i in range(n)]


def _check_record(rec, start: Atoms, stage, name: str) -> None:
    from elt.data.modeldevi import ABOVE_TRUST_HI, BAD_STOPS, COMPLETED, DEVI_KEYS
    from elt.sampling.explorer import WalkerRecord

    require(isinstance(rec, WalkerRecord), name, "records", f"got {type(rec).__name__}, not a WalkerRecord")
    steps = list(rec.steps)
    require(bool(steps) and steps[0] == 0, name, "records", f"the first recorded step must be 0, got {steps[:3]}")
    require(all(b > a for a, b in zip(steps, steps[1:])) and steps[-1] <= stage.steps, name, "records",
            f"steps must increase up to stage.steps ({stage.steps}), got {steps}")
    devi = rec.devi_array()
    require(devi.shape == (len(steps), len(DEVI_KEYS)) and len(rec.frames) == len(steps), name, "records",
            f"{len(steps)} steps, deviations {devi.shape} and {len(rec.frames)} frames: one row of "
            f"{len(DEVI_KEYS)} ({', '.join(DEVI_KEYS)}) and one frame per recorded step")
    for a in rec.frames:
        require(isinstance(a, Atoms) and np.array_equal(a.numbers, start.numbers) and a.calc is None, name, "records",
                "each recorded frame is an Atoms with the start's atoms and no calculator")
    word = str(rec.stop_reason).split(" ")[0]
    require(word in (COMPLETED, ABOVE_TRUST_HI, *BAD_STOPS), name, "records",
            f"stop reason {rec.stop_reason!r} is none of {COMPLETED}, {ABOVE_TRUST_HI}, {', '.join(BAD_STOPS)}")
    require(0 <= rec.steps_done <= stage.steps and rec.steps_done >= steps[-1], name, "records",
            f"steps_done {rec.steps_done} must lie between the last recorded step {steps[-1]} and {stage.steps}")


def _check_deviations(rec, potential, tol, name: str) -> None:
    from elt.potentials.deviation import frame_deviation

    rows = rec.devi_array()
    for i in sorted({0, len(rows) - 1}):
        if not np.all(np.isfinite(rows[i])):
            continue
        a = rec.frames[i]
        p = potential.predict(a, stress=fully_periodic(a))
        virials = None if p.stress is None else -p.stress * a.get_volume()
        d = frame_deviation(p.energies, p.forces, virials)
        want = [d.max_devi_f, d.min_devi_f, d.avg_devi_f, d.devi_e]
        require_close(rows[i][3:7], want, name, "deviations", *tol,
                      what=f"recorded step {rec.steps[i]}: max/min/avg force deviation (eV/Å) and energy deviation "
                           "(eV/atom) are not the ensemble's at the recorded frame:")


def _check_candidates(specs, recs, dirs, potential, levels, name: str) -> None:
    from elt.records import ExploreResult
    from elt.sampling.walker_output import finish_walker

    for w, rec, d in zip(specs, recs, dirs):
        res = finish_walker(d, w, rec, potential, levels)
        require(isinstance(res, ExploreResult) and res.n_frames == len(rec.steps), name, "candidates",
                "the engine could not turn the record into a walker result")
        below = int(np.sum((rec.devi_array()[:, 3] >= levels.lo) & (rec.devi_array()[:, 3] < levels.hi)))
        require(len(res.candidates) > 0 or below == 0, name, "candidates",
                f"{below} frames lie between the trust levels but no candidate came out")


def _same(r1, r2, name: str, check: str, walker: str, tol, position_tol: float) -> None:
    require(list(r1.steps) == list(r2.steps) and r1.stop_reason == r2.stop_reason, name, check,
            f"walker {walker}: steps {r1.steps} ({r1.stop_reason}) then {r2.steps} ({r2.stop_reason})")
    require_close(r2.devi_array(), r1.devi_array(), name, check, *tol, what=f"walker {walker}: deviations")
    for i, (a, b) in enumerate(zip(r1.frames, r2.frames)):
        require_close(b.positions, a.positions, name, check, position_tol, 0.0,
                      what=f"walker {walker}, recorded frame {i}: positions (Å)")
