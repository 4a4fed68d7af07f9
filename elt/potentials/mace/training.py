"""Training one MACE member: a plain, picklable function (a Dask task in the engine).

Loss per batch: mace-torch's ``WeightedEnergyForcesStressLoss`` (energy per atom, force
components, stress on the frames that carry it and are periodic in all three directions, each
with its weight of :class:`elt.config.train.MaceTrain`), minimised with Adam (amsgrad, as mace's
trainer) and gradient-norm clipping under elt's plateau schedule
(:func:`elt.potentials.fitting.plateau_fit`). From scratch the per-element energies, the scale
and shift of the interaction energy and the mean neighbour count come from the data (mace's
``average`` E0s and RMS-force scaling), and the E0s are refitted to the training frames before
each validation check (:func:`realign_energy`); a warm start takes them and the weights from the previous
iteration's member.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from ase import Atoms

from elt.config.train import MaceTrain
from elt.data.frames import labels_of
from elt.potentials.base import fully_periodic
from elt.potentials.neighbors import TypeMap
from elt.potentials.fitting import begin_member, dataset_hash, member_metrics, plateau_fit, split
from elt.potentials.mace.imports import mace_modules
from elt.potentials.mace.model import (DTYPES, FrameGraphs, build, check_compatible, read_member, save_member,
                                       statistics)
from elt.potentials.schedule import score


def _voigt_to_matrix(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    if s.shape == (6,):
        return np.array([[s[0], s[5], s[4]], [s[5], s[1], s[3]], [s[4], s[3], s[2]]])
    return s.reshape(3, 3)


class _Data(FrameGraphs):
    """Labeled frames: graphs plus energies (eV), forces (eV/Å) and stress (eV/Å³, or None)."""

    def __init__(self, frames: Sequence[Atoms], typemap: TypeMap, r_max: float):
        super().__init__(frames, typemap, r_max)
        labels = [labels_of(a) for a in self.frames]
        self.energy = np.array([e for e, _, _ in labels], dtype=np.float64)
        self.forces = [np.asarray(f, dtype=np.float64).reshape(len(a), 3) for (_, f, _), a in zip(labels, self.frames)]
        self.stress = [_voigt_to_matrix(s) if s is not None and fully_periodic(a) else None
                       for (_, _, s), a in zip(labels, self.frames)]
        # Å³ of the frames with stress (1 for the others: never divided by, see _stress_where_labeled)
        self.volume = np.array([a.get_volume() if s is not None else 1.0 for a, s in zip(self.frames, self.stress)])

    def labeled_batch(self, idx: Sequence[int], dtype: torch.dtype) -> tuple[dict, "_Ref"]:
        idx = list(idx)
        graph = self.batch(idx, dtype)
        t = lambda x: torch.as_tensor(np.asarray(x), dtype=dtype)  # noqa: E731
        has_s = [self.stress[i] is not None for i in idx]
        ones = t(np.ones(len(idx)))
        ref = _Ref(energy=t(self.energy[idx]), forces=t(np.concatenate([self.forces[i] for i in idx])),
                   stress=t(np.stack([self.stress[i] if h else np.zeros((3, 3)) for i, h in zip(idx, has_s)])),
                   weight=ones, energy_weight=ones, forces_weight=ones, stress_weight=t(np.asarray(has_s, float)),
                   volume=t(self.volume[idx]), ptr=graph["ptr"], batch=graph["batch"])
        return graph, ref


class _Ref(dict):
    """The reference labels as mace-torch's losses read them (``ref["energy"]``, ``ref.weight``)."""

    __getattr__ = dict.__getitem__


def _losses(config: MaceTrain, dtype: torch.dtype):
    modules, _ = mace_modules()
    with_stress = modules.WeightedEnergyForcesStressLoss(config.energy_weight, config.forces_weight, config.stress_weight)
    without = modules.WeightedEnergyForcesLoss(config.energy_weight, config.forces_weight)
    return with_stress.to(dtype), without.to(dtype)


def _forward(model, graph: dict, virials: bool, training: bool) -> dict:
    """Energies and forces (and virials: the training stress is made from them by
    :func:`_stress_where_labeled`, never mace's own ``stress``)."""
    return model(dict(graph), training=training, compute_force=True, compute_virials=virials)


def _stress_where_labeled(virials: torch.Tensor, ref: "_Ref") -> torch.Tensor:
    """(G, 3, 3) predicted stress (eV/Å³, ASE's sign: ``-virials / V``) on the frames that carry a
    stress label, zero on the others. mace-torch's own ``stress`` divides every frame's virial by
    ``|det(cell)|`` and zeroes what is not finite: right in value, but for a frame without a cell
    (a cluster, cell 0) the gradient of that division is 0 · (1/0) = NaN, and one such frame in a
    batch makes every weight NaN, whatever its stress weight (0). Here only the labeled frames'
    volumes are divided by."""
    mask = ref.stress_weight.view(-1, 1, 1) > 0
    return torch.where(mask, -virials / ref.volume.view(-1, 1, 1), torch.zeros_like(virials))


def evaluate(model, data: _Data, idx: Sequence[int], dtype: torch.dtype, chunk: int = 16) -> Optional[dict]:
    """RMSE of energy per atom (eV/atom) and of force components (eV/Å) on frames ``idx``."""
    if len(idx) == 0:
        return None
    se_e, se_f, n_f = 0.0, 0.0, 0
    for start in range(0, len(idx), chunk):
        part = list(idx[start:start + chunk])
        graph = data.batch(part, dtype)
        out = _forward(model, graph, False, False)
        n_atoms = (graph["ptr"][1:] - graph["ptr"][:-1]).double().numpy()
        de = (out["energy"].detach().double().numpy() - data.energy[part]) / n_atoms
        df = out["forces"].detach().double().numpy() - np.concatenate([data.forces[i] for i in part])
        se_e += float((de ** 2).sum())
        se_f += float((df ** 2).sum())
        n_f += df.size
    return {"rmse_e": math.sqrt(se_e / len(idx)), "rmse_f": math.sqrt(se_f / max(n_f, 1)), "n_frames": len(idx)}


def realign_energy(model, data: _Data, idx, dtype: torch.dtype, max_frames: int = 32, chunk: int = 16) -> None:
    """Refit the per-element energies E0 to up to ``max_frames`` training frames ``idx`` (least squares
    on the residual energies). Forces do not depend on them, so while the force term dominates the
    loss the absolute energies drift freely; this takes the drift out without touching the networks."""
    idx = np.unique(idx)[:max_frames]
    resid = np.empty(len(idx))
    for start in range(0, len(idx), chunk):
        part = list(idx[start:start + chunk])
        out = model(dict(data.batch(part, dtype)), training=False, compute_force=False)
        resid[start:start + len(part)] = data.energy[part] - out["energy"].detach().double().numpy()
    delta = np.linalg.lstsq(data.counts(idx), resid, rcond=None)[0]
    with torch.no_grad():
        e0 = model.atomic_energies_fn.atomic_energies
        e0 += torch.as_tensor(delta, dtype=e0.dtype).view(e0.shape)


class _Trainee:
    """One member under :func:`elt.potentials.fitting.plateau_fit`."""

    def __init__(self, model, data: _Data, config: MaceTrain, dtype: torch.dtype):
        self.model, self.data, self.config, self.dtype = model, data, config, dtype
        self.opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate, amsgrad=True)
        self.loss_stress, self.loss_plain = _losses(config, dtype)

    def step(self, idx, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr
        graph, ref = self.data.labeled_batch(idx, self.dtype)
        stress = self.config.stress_weight > 0 and bool(ref.stress_weight.any())
        self.model.train()
        out = _forward(self.model, graph, stress, True)
        if stress:
            out = dict(out, stress=_stress_where_labeled(out["virials"], ref))
        loss = (self.loss_stress if stress else self.loss_plain)(ref, out)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad)
        self.opt.step()
        self.model.eval()

    def score(self, train_idx, check_idx) -> float:
        realign_energy(self.model, self.data, train_idx, self.dtype)
        v = evaluate(self.model, self.data, check_idx, self.dtype)
        return score(v["rmse_e"], v["rmse_f"])

    def snapshot(self) -> dict:
        return copy.deepcopy(self.model.state_dict())

    def restore(self, snapshot: dict) -> None:
        self.model.load_state_dict(snapshot)


def _init_model(config: MaceTrain, elements: list[str], data: _Data, init_path: Optional[Path]):
    """A new model with the data's statistics, or the previous member's (weights and statistics)."""
    hyper = config.model.model_dump(mode="json")
    dtype = DTYPES[config.model.precision]
    if init_path is not None:
        state, meta = read_member(Path(init_path))
        check_compatible({"elements": elements, "model": hyper}, meta, Path("train.model"), Path(init_path),
                         f"cannot warm-start from {str(init_path)!r}")
        model = build(hyper, elements, meta["stats"], dtype)
        model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()})
        return model, meta["stats"]
    stats = statistics(data, data.energy, data.forces)
    return build(hyper, elements, stats, dtype), stats


def train_member(frames: Sequence[Atoms], config: MaceTrain, elements: Sequence[str], member: int,
                 seed: int, out_path, init_path=None) -> dict:
    """Fit one member and write its checkpoint to ``out_path``; see :mod:`elt.potentials.base`."""
    frames, rng, started = begin_member(frames, config, seed)
    elements = list(elements)
    dtype = DTYPES[config.model.precision]
    data = _Data(frames, TypeMap(elements), config.model.r_max)
    model, stats = _init_model(config, elements, data, init_path)
    model.eval()
    train_idx, valid_idx = split(len(frames), config, rng)

    warm = init_path is not None
    fit = plateau_fit(_Trainee(model, data, config, dtype), train_idx, valid_idx, config, warm, rng)
    stress = config.stress_weight > 0 and any(data.stress[i] is not None for i in np.unique(train_idx))
    metrics = member_metrics(fit, evaluate(model, data, np.unique(train_idx), dtype),
                             evaluate(model, data, valid_idx, dtype), config, member, warm, stress,
                             len(frames), started)
    meta = {
        "kind": "mace", "elements": elements, "model": config.model.model_dump(mode="json"), "stats": stats,
        "member": int(member), "seed": int(seed), "dataset_hash": dataset_hash(frames),
        "init_path": str(init_path) if init_path is not None else None, "virial_trained": metrics["virial_trained"],
        "train": config.model_dump(mode="json", exclude={"model"}), "metrics": metrics,
    }
    save_member(Path(out_path), model, meta)
    return metrics
