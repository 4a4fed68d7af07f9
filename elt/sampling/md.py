"""Molecular dynamics of one walker driven by the ensemble's mean forces.

Every ``record_every`` steps the frame and its model deviation are recorded. A walker stops early,
and says why, when: positions or deviations become NaN (``nan``), two atoms come closer than
``min_distance`` (``too_close``), the unbiased potential energy per atom jumps by more than
``max_energy_jump`` between two recorded frames (``energy_spike``), or a frame reaches the upper
trust level (``above_trust_hi``) when ``stop_at`` is given: frames past that point are off the map
and only waste time. The frame that triggered a stop is the last one recorded.

A biased walker is pushed towards trust_hi on purpose, and a barrier's top is often past it, so
``beyond`` (a :class:`~elt.config.sampling.BeyondHi`: mode, steps, restarts) may let it go on:
``continue`` keeps the walker running until more than ``steps`` MD steps in a row have had their
recorded frames at or above ``stop_at`` (back below resets the count); ``restart`` puts it back to
its last recorded frame below ``stop_at`` with fresh Maxwell–Boltzmann velocities, at most
``restarts`` times (the bias state, e.g. hills, is kept). Either way the frames at or above
``stop_at`` stay recorded with their deviations, so selection classifies them failed (never
labeled); ``WalkerRecord.beyond_frames`` and ``restarts`` count what happened.

``calc`` may be a bias wrapper (:mod:`elt.sampling.bias`, :mod:`elt.sampling.metad`): the MD then
follows the biased forces while the recorded deviations stay the ensemble's own; ``on_step(step,
atoms)`` (default: the calculator's own ``on_step``) is called after every MD step (hill
deposition, parameter adaptation).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet

from elt.data.frames import fully_periodic
from elt.data.modeldevi import ABOVE_TRUST_HI, DEVI_KEYS
from elt.sampling.explorer import WalkerRecord  # noqa: F401  (re-exported: the interface type)
from elt.units import GPA_TO_EV_PER_ANGSTROM3


def min_pair_distance(atoms: Atoms, cutoff: float) -> float:
    """Smallest interatomic distance (Å), or ``inf`` when none is below ``cutoff``."""
    from vesin import NeighborList

    if len(atoms) < 2:
        return float("inf")
    periodic = bool(atoms.pbc.all())
    box = atoms.cell.array if periodic else np.zeros((3, 3))
    nl = NeighborList(cutoff=float(cutoff), full_list=False)
    (d,) = nl.compute(points=atoms.positions, box=box, periodic=periodic, quantities="d")
    return float(d.min()) if len(d) else float("inf")


def unbiased_energy(results: dict) -> float:
    """The ensemble's mean energy (eV) without any bias term: the mean of the members' energies
    when the calculator gives them, else its unbiased or plain energy."""
    if "energies_members" in results:
        return float(np.mean(results["energies_members"]))
    return float(results.get("energy_unbiased", results.get("energy", 0.0)))


def make_dynamics(atoms: Atoms, ensemble: str, timestep_fs: float, temperature: float,
                  pressure_gpa: Optional[float], friction: float, rng: np.random.Generator):
    dt = timestep_fs * units.fs
    if ensemble == "nvt":
        return Langevin(atoms, dt, temperature_K=temperature, friction=friction / units.fs,
                        rng=np.random.RandomState(rng.integers(2**31)), fixcm=False)
    if ensemble == "nve":
        return VelocityVerlet(atoms, dt)
    if ensemble == "npt":
        from ase.md.nptberendsen import NPTBerendsen

        if not fully_periodic(atoms):
            raise ValueError("npt needs a periodic cell")
        return NPTBerendsen(atoms, dt, temperature_K=temperature,
                            pressure_au=(pressure_gpa or 0.0) * GPA_TO_EV_PER_ANGSTROM3,
                            taut=100 * units.fs, taup=1000 * units.fs,
                            compressibility_au=4.57e-5 / units.bar)
    raise ValueError(f"unknown ensemble {ensemble!r}")


class PastHi:
    """The walker's rule at frames at or above trust_hi (stop, continue, restart)."""

    def __init__(self, beyond, record_every: int):
        self.mode = getattr(beyond, "mode", "stop") if beyond is not None else "stop"
        self.steps = int(getattr(beyond, "steps", 0))
        self.restarts = int(getattr(beyond, "restarts", 0))
        self.record_every = record_every
        self.run = 0  # recorded frames in a row at or above hi
        self.last: Optional[tuple[np.ndarray, np.ndarray]] = None  # (positions, cell) of the last trusted frame

    def trusted(self, a: Atoms) -> None:
        self.run = 0
        if self.mode == "restart":
            self.last = (a.positions.copy(), a.cell.array.copy())

    def go_on(self, a: Atoms, rec: WalkerRecord, rng: np.random.Generator, temperature: float) -> bool:
        """True: the walker goes on (continued or restarted); False: it stops here."""
        if self.mode == "continue":
            self.run += 1
            if self.run * self.record_every > self.steps:
                return False
            rec.beyond_frames += 1
            return True
        if self.mode == "restart" and self.last is not None and rec.restarts < self.restarts:
            a.set_cell(self.last[1], scale_atoms=False)
            a.positions = self.last[0]
            MaxwellBoltzmannDistribution(a, temperature_K=temperature, rng=np.random.RandomState(rng.integers(2**31)))
            Stationary(a)
            rec.restarts += 1
            rec.beyond_frames += 1
            return True
        return False


def run_walker(atoms: Atoms, calc, *, ensemble: str = "nvt", temperature: float = 300.0,
               pressure: Optional[float] = None, timestep: float = 2.0, steps: int = 1000,
               record_every: int = 10, friction: float = 0.02, min_distance: float = 0.5,
               stop_at: Optional[float] = None, seed: int = 0,
               on_record: Optional[Callable[[int], None]] = None,
               max_energy_jump: Optional[float] = None,
               on_step: Optional[Callable[[int, Atoms], None]] = None, beyond=None) -> WalkerRecord:
    """Run MD from ``atoms`` (not modified) with ``calc`` (an EnsembleCalculator) and record
    deviations every ``record_every`` steps, starting with step 0. ``beyond``: what to do at a
    frame at or above ``stop_at`` (module docstring); None stops there."""
    rng = np.random.default_rng(seed)
    a = atoms.copy()
    a.calc = calc
    MaxwellBoltzmannDistribution(a, temperature_K=temperature, rng=np.random.RandomState(rng.integers(2**31)))
    Stationary(a)
    dyn = make_dynamics(a, ensemble, timestep, temperature, pressure, friction, rng)
    on_step = on_step or getattr(calc, "on_step", None)  # bias wrappers bring their own hook
    if on_step is not None:
        dyn.attach(lambda: on_step(dyn.nsteps, a), interval=1)
    rec = WalkerRecord()
    step = 0
    e_prev = None
    past = PastHi(beyond, record_every)
    while True:
        a.get_potential_energy()  # make sure results belong to the current positions
        r = calc.results
        row = [float(r.get(k, 0.0)) for k in DEVI_KEYS]
        frame = a.copy()
        frame.calc = None
        rec.steps.append(step)
        rec.devi.append(row)
        rec.frames.append(frame)
        rec.steps_done = step
        if on_record is not None:
            on_record(step)
        if not (np.all(np.isfinite(a.positions)) and np.all(np.isfinite(row))):
            rec.stop_reason = "nan"
            break
        if min_pair_distance(a, min_distance) < min_distance:
            rec.stop_reason = "too_close"
            break
        e_now = unbiased_energy(r)
        if max_energy_jump is not None and e_prev is not None and abs(e_now - e_prev) > max_energy_jump * len(a):
            rec.stop_reason = "energy_spike"
            break
        e_prev = e_now
        if stop_at is not None and row[3] >= stop_at:
            if not past.go_on(a, rec, rng, temperature):
                rec.stop_reason = ABOVE_TRUST_HI
                break
        else:
            past.trusted(a)
        if step + record_every > steps:
            break
        try:
            dyn.run(record_every)
        except (FloatingPointError, ValueError) as e:  # blown-up dynamics
            rec.stop_reason = f"nan ({e})"
            break
        step += record_every
    return rec
