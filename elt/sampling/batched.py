"""Batched MD: many walkers advance together with ONE ensemble evaluation per step.

:func:`run_batch` is the batched counterpart of :func:`elt.sampling.md.run_walker` and returns the
same :class:`~elt.sampling.md.WalkerRecord` per walker: frames and deviations every
``record_every`` steps from step 0, and the same stop rules and reasons (``nan``, ``too_close``,
``energy_spike``, ``above_trust_hi``; the frame that triggered a stop is the last one recorded).
A stopped walker leaves the batch; the others go on. Walkers may differ in temperature, pressure,
start structure, atom count and elements.

- Integrators (:mod:`elt.sampling.integrators`): nve velocity Verlet, nvt Langevin BAOAB, npt
  BAOAB + isotropic Berendsen barostat (periodic cells).
- Seeds: start velocities are drawn exactly as in :func:`run_walker` (Maxwell-Boltzmann from the
  walker's seed, zero total momentum); the Langevin noise comes from a generator seeded by the
  walker's own stream. A walker's record does not depend on the batch it runs in (up to float
  rounding of the model in a differently padded batch).
- Deviation schedule: all k members on recorded frames (the deviations are the full ensemble's);
  between them the MD follows ``propagate``: ``"mean"`` (the ensemble mean, every member every
  step) or ``"member0"`` (member 0 alone, DP-GEN/LAMMPS's way: about k times cheaper between
  records, the trajectory is member 0's).
- Biases: ``biases[w]`` is a bias wrapper chain of :mod:`elt.sampling.bias` / :mod:`metad`
  (e.g. from :func:`~elt.sampling.bias.wrap_calculator`); its innermost calculator is replaced by a
  feed of the batch's results for that walker, so every bias kind runs its own ``bias`` and
  ``on_step`` code unchanged. A biased batch evaluates all members every step (the biases need
  the members' energies and forces).
- Neighbour lists: the potential's batch evaluator (:meth:`EnsemblePotential.batch_evaluator`),
  for the Deep Potential Verlet lists with ``skin`` (Å), cache-sized groups of systems per model
  call on the CPU, and (``compile``) its native CPU kernels (:mod:`elt.potentials.deepmd.native`).
- Devices: ``device`` auto | cpu | cuda (the potential's evaluator resolves it); the MD
  state lives on the device, the per-walker bookkeeping (records, biases, stop checks) on the host.

Cost (``bench/bench_explore.py``): the MD between records is about k times cheaper with
``member0`` than with ``mean``; ``mean`` follows the smoother ensemble-mean surface, ``member0``
one member's (as DP-GEN does), so the two explore slightly different trajectories; the recorded
deviations are the full ensemble's either way.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from ase import Atoms, units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

from elt.sampling.batch_bias import attach_feed, bias_hooks, biased_forces
from elt.sampling.integrators import MDState, make_integrator
from elt.data.modeldevi import ABOVE_TRUST_HI, DEVI_KEYS
from elt.sampling.explorer import WalkerRecord
from elt.sampling.md import PastHi, min_pair_distance
from elt.units import GPA_TO_EV_PER_ANGSTROM3

PROPAGATE = ("mean", "member0")


class _Walker:
    """One walker's bookkeeping: its record, generator, bias chain and a scratch Atoms."""

    def __init__(self, index: int, start: Atoms, spec: dict, ensemble: str, chain, past: PastHi):
        self.index = index
        self.rec = WalkerRecord()
        self.atoms = start.copy()
        self.atoms.calc = None
        self.temperature = float(spec.get("temperature", 300.0))
        self.rng = rng = np.random.default_rng(spec.get("seed", 0))
        MaxwellBoltzmannDistribution(self.atoms, temperature_K=self.temperature,
                                     rng=np.random.RandomState(rng.integers(2**31)))
        Stationary(self.atoms)
        # the ASE path's Langevin draws its generator's seed next from the same stream
        self.noise = np.random.default_rng(rng.integers(2**31)) if ensemble != "nve" else None
        pressure = spec.get("pressure")
        self.pressure = (pressure or 0.0) * GPA_TO_EV_PER_ANGSTROM3
        if ensemble == "npt" and not (self.atoms.pbc.all() and self.atoms.cell.rank == 3):
            raise ValueError(f"npt needs a periodic cell (walker {index})")
        self.chain = chain
        self.feed = attach_feed(chain) if chain is not None else None
        self.e_prev: Optional[float] = None
        self.past = past          # the rule at frames at or above stop_at (md.py's)
        self.restart: Optional[Atoms] = None  # where a restarted walker goes on from
        self.n = len(self.atoms)
        self.periodic = bool(self.atoms.pbc.any()) and self.atoms.cell.rank == 3  # as EnsembleCalculator
        # min_pair_distance sees no periodic images unless pbc is all True: a list's distances then differ
        self.lists_see_distances = bool(self.atoms.pbc.all()) or not bool(self.atoms.pbc.any())


def _initial_state(walkers: list[_Walker], device: torch.device) -> MDState:
    t = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device)  # noqa: E731
    cat = lambda f: np.concatenate([f(w) for w in walkers])  # noqa: E731
    return MDState(
        pos=t(cat(lambda w: w.atoms.positions)), mom=t(cat(lambda w: w.atoms.get_momenta())),
        mass=t(cat(lambda w: w.atoms.get_masses()))[:, None],
        cells=t(np.stack([w.atoms.cell.array for w in walkers])),
        wid=torch.as_tensor(np.repeat(np.arange(len(walkers)), [w.n for w in walkers]), device=device),
        kT=t(cat(lambda w: np.full(w.n, units.kB * w.temperature)))[:, None],
        pressure=t([w.pressure for w in walkers]))


class _Batch:
    """The walkers still running, their MD state and the evaluator, kept in step."""

    def __init__(self, walkers, evaluator, state, integrator, propagate, stop_rules):
        self.walkers, self.ev, self.s, self.integ = walkers, evaluator, state, integrator
        self.propagate = propagate
        self.min_distance, self.stop_at, self.max_energy_jump = stop_rules
        self.biased = any(w.chain is not None for w in walkers)
        self.npt = integrator.__class__.__name__ == "BerendsenNPT"
        self.periodic = any(w.periodic for w in walkers)
        self.offsets = evaluator.offsets
        self.evaluations = 0

    # ----------------------------------------------------------------- forces
    def noise(self) -> torch.Tensor:
        xi = np.concatenate([w.noise.standard_normal((w.n, 3)) for w in self.walkers])
        return torch.as_tensor(xi, dtype=torch.float64, device=self.s.pos.device)

    def evaluate(self, record: bool):
        members = "all" if (record or self.biased) else ("mean" if self.propagate == "mean" else "first")
        out = self.ev.evaluate(self.s.pos, self.s.cells, members=members,
                               virial=self.npt or (record and self.periodic),
                               distances=self.min_distance if record else None)
        self.evaluations += 1
        f = out.forces.mean(dim=0) if self.propagate == "mean" else out.forces[0]
        if self.biased:
            f = self._bias(out, f)
        self.s.forces = f
        if out.virials is not None:
            v = out.virials.mean(dim=0) if self.propagate == "mean" else out.virials[0]
            self.s.virials = v
        return out

    def _bias(self, out, f: torch.Tensor) -> torch.Tensor:
        return biased_forces(self.walkers, self.offsets, self.s.pos, out, f, self.propagate)

    def on_step(self, step: int) -> None:
        """The walkers' bias hooks after a step (hills, adaptation)."""
        if self.biased:
            self.s.forces = bias_hooks(self.walkers, self.offsets, self.s.pos, self.s.forces, step)

    # ----------------------------------------------------------------- records and stops
    def record(self, step: int, out) -> list[int]:
        """Record every walker's frame; returns the positions (in the batch) of walkers that stop."""
        pos, mom = self.s.pos.cpu().numpy(), self.s.mom.cpu().numpy()
        cells = self.s.cells.cpu().numpy()
        host = out.host()
        stopped = []
        for w, walker in enumerate(self.walkers):
            sl = slice(self.offsets[w], self.offsets[w + 1])
            frame = walker.atoms.copy()
            frame.positions = pos[sl]
            if walker.periodic:
                frame.cell = cells[w]
            frame.set_momenta(mom[sl])
            dev = host.deviation(w, sl, walker.periodic)
            row = [float(dev.get(k, 0.0)) for k in DEVI_KEYS]
            dmin = float(host.min_distance[w]) if host.min_distance is not None and walker.lists_see_distances else None
            if self._append(walker, step, row, frame, float(np.mean(host.energies[:, w])), dmin):
                stopped.append(w)
        return stopped

    def _append(self, walker: _Walker, step: int, row: list, frame: Atoms, e_now: float,
                dmin: Optional[float] = None) -> bool:
        """Record a frame and apply run_walker's stop rules, in its order; True: the walker stops.
        ``dmin``: the frame's smallest pair distance below min_distance (else inf) when the evaluator
        knew it from its neighbour lists; else it is computed here."""
        rec = walker.rec
        rec.steps.append(step)
        rec.devi.append(row)
        rec.frames.append(frame)
        rec.steps_done = step
        if not (np.all(np.isfinite(frame.positions)) and np.all(np.isfinite(row))):
            rec.stop_reason = "nan"
            return True
        if (min_pair_distance(frame, self.min_distance) if dmin is None else dmin) < self.min_distance:
            rec.stop_reason = "too_close"
            return True
        if (self.max_energy_jump is not None and walker.e_prev is not None
                and abs(e_now - walker.e_prev) > self.max_energy_jump * len(frame)):
            rec.stop_reason = "energy_spike"
            return True
        walker.e_prev = e_now
        if self.stop_at is not None and row[3] >= self.stop_at:
            scratch, restarts = frame.copy(), rec.restarts
            if not walker.past.go_on(scratch, rec, walker.rng, walker.temperature):
                rec.stop_reason = ABOVE_TRUST_HI
                return True
            if rec.restarts > restarts:
                walker.restart = scratch
        else:
            walker.past.trusted(frame)
        return False

    def restart(self) -> bool:
        """Put restarted walkers back to their last frame below stop_at with their fresh
        velocities; True when any was (the forces need a new evaluation)."""
        moved = False
        for w, walker in enumerate(self.walkers):
            if walker.restart is None:
                continue
            sl = slice(self.offsets[w], self.offsets[w + 1])
            t = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float64, device=self.s.pos.device)  # noqa: E731
            self.s.pos[sl] = t(walker.restart.positions)
            self.s.mom[sl] = t(walker.restart.get_momenta())
            self.s.cells[w] = t(walker.restart.cell.array)
            walker.restart, moved = None, True
        return moved

    def blown_up(self, step: int) -> list[int]:
        """Walkers whose positions are no longer finite: their last frame is recorded as nan."""
        finite = torch.isfinite(self.s.pos).all(dim=1)
        if bool(finite.all()):
            return []
        bad = torch.zeros(len(self.walkers), dtype=torch.bool, device=finite.device).index_put_(
            (self.s.wid,), ~finite, accumulate=True)
        out = torch.nonzero(bad).flatten().tolist()
        pos = self.s.pos.cpu().numpy()
        for w in out:
            frame = self.walkers[w].atoms.copy()
            frame.positions = pos[self.offsets[w]:self.offsets[w + 1]]
            self._append(self.walkers[w], step, [float("nan")] * len(DEVI_KEYS), frame, float("nan"))
        return out

    def drop(self, gone: Sequence[int]) -> None:
        if not gone:
            return
        keep = [w for w in range(len(self.walkers)) if w not in set(gone)]
        dev = self.s.pos.device
        keep_t = torch.as_tensor(keep, dtype=torch.long, device=dev)
        atoms = torch.cat([torch.arange(self.offsets[w], self.offsets[w + 1], device=dev) for w in keep]) \
            if keep else torch.zeros(0, dtype=torch.long, device=dev)
        self.s = self.s.select(atoms, keep_t)
        self.walkers = [self.walkers[w] for w in keep]
        self.ev.keep(keep)
        self.offsets = self.ev.offsets


def run_batch(starts: Sequence[Atoms], walkers: Sequence[dict], potential, *, ensemble: str = "nvt",
              timestep: float = 2.0, steps: int = 1000, record_every: int = 10, friction: float = 0.02,
              min_distance: float = 0.5, stop_at: Optional[float] = None,
              max_energy_jump: Optional[float] = None, biases: Optional[Sequence] = None,
              propagate: str = "mean", device: str = "cpu", skin: float = 1.0,
              compile: bool | str = "auto", beyond=None, stats: Optional[dict] = None) -> list[WalkerRecord]:
    """Run all walkers (``walkers[w]``: temperature K, pressure GPa or None, seed) from
    ``starts[w]`` (not modified) with ``potential`` (an EnsemblePotential); one record per walker,
    in order. Arguments as :func:`~elt.sampling.md.run_walker`; see the module docstring for
    ``biases``, ``propagate``, ``skin``; ``beyond`` as in run_walker (stop, continue or restart
    at frames at or above ``stop_at``; a restarted walker goes back to its last frame below it
    with fresh velocities from its own stream). ``compile``: the potential's compiled kernels (True or
    ``auto``: wherever they can be built, faster at every batch size measured (``bench/bench_explore.py``),
    built once per machine in about a second; False: the torch kernels). ``stats``, when given,
    receives counters (evaluations, neighbour-list builds)."""
    if len(starts) != len(walkers):
        raise ValueError(f"{len(starts)} start frames for {len(walkers)} walkers")
    if propagate not in PROPAGATE:
        raise ValueError(f"propagate must be one of {PROPAGATE}, got {propagate!r}")
    if biases is not None and len(biases) != len(walkers):
        raise ValueError(f"{len(biases)} biases for {len(walkers)} walkers (give None for an unbiased walker)")
    if not len(starts):
        return []
    ws = [_Walker(i, a, spec, ensemble, biases[i] if biases is not None else None, PastHi(beyond, record_every))
          for i, (a, spec) in enumerate(zip(starts, walkers))]
    records = [w.rec for w in ws]
    evaluator = potential.batch_evaluator([w.atoms for w in ws], device=device, skin=skin, compile=compile is not False)
    b = _Batch(ws, evaluator, _initial_state(ws, evaluator.device), make_integrator(ensemble, timestep, friction),
               propagate, (min_distance, stop_at, max_energy_jump))
    n_total = (steps // record_every) * record_every  # as run_walker: the last record at or before steps
    b.drop(b.record(0, b.evaluate(record=True)))
    if b.walkers and b.restart():
        b.evaluate(record=False)
    if n_total and b.walkers:
        b.on_step(0)  # ASE calls its observers once before the first step
    for step in range(1, n_total + 1):
        if not b.walkers:
            break
        b.integ.before_force(b.s, b.noise)
        gone = b.blown_up(step)
        if gone:
            b.drop(gone)
            if not b.walkers:
                break
        record = step % record_every == 0
        out = b.evaluate(record)
        b.integ.after_force(b.s)
        b.on_step(step)
        if record:
            b.drop(b.record(step, out))
            if b.walkers and b.restart():
                b.evaluate(record=False)  # forces at the restarted walkers' new positions
    if stats is not None:
        stats.update(evaluations=b.evaluations, builds=getattr(evaluator, "builds", None),
                     assemblies=getattr(evaluator, "assemblies", None))
    return records
