"""Training one ensemble member: a plain, picklable function (a Dask task in the engine).

Loss per batch (DeePMD's): p_e * mean((dE/N)^2) + p_f * mean(dF^2) + p_v * mean((dW/N)^2), with
Adam, exponential learning-rate decay from ``learning_rate`` to ``learning_rate_end`` over the step
cap (faster after validation plateaus; training ends at a plateau at the final rate, see
:mod:`elt.potentials.schedule`, run by :func:`elt.potentials.fitting.plateau_fit`) and prefactors p(t) = p_end + (p_start - p_end) * lr(t) / lr(0).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from ase import Atoms

from elt.config.train import DeepMDTrain
from elt.data.frames import labels_of
from elt.errors import SetupError
from elt.potentials.base import fully_periodic
from elt.potentials.deepmd.checkpoint import ARCH_KEYS, read_member, save_member
from elt.potentials.deepmd.graph import build_graph
from elt.potentials.neighbors import TypeMap, frame_pairs
from elt.potentials.deepmd.model import DeepPot, build
from elt.potentials.fitting import begin_member, dataset_hash, member_metrics, plateau_fit, split
from elt.potentials.schedule import score

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class _Data:
    """Labeled frames with precomputed neighbour pairs and labels as arrays."""

    def __init__(self, frames: Sequence[Atoms], typemap: TypeMap, rcut: float):
        self.frames = list(frames)
        self.pairs = [frame_pairs(a, rcut) for a in self.frames]
        self.typemap, self.rcut = typemap, rcut
        self.energy = np.empty(len(frames))
        self.forces, self.virial = [], []
        for f, atoms in enumerate(self.frames):
            typemap(atoms)  # unknown elements -> clear error now
            e, forces, stress = labels_of(atoms)
            self.energy[f] = e
            self.forces.append(np.asarray(forces, dtype=np.float64).reshape(len(atoms), 3))
            vir = None
            if stress is not None and fully_periodic(atoms):
                s = np.asarray(stress, dtype=np.float64)
                if s.shape == (6,):
                    s = np.array([[s[0], s[5], s[4]], [s[5], s[1], s[3]], [s[4], s[3], s[2]]])
                vir = -s * atoms.get_volume()
            self.virial.append(vir)
        self.n_atoms = np.array([len(a) for a in self.frames], dtype=np.float64)

    def batch(self, idx: Sequence[int], dtype: torch.dtype):
        g = build_graph([self.frames[i] for i in idx], self.typemap, self.rcut,
                        pairs=[self.pairs[i] for i in idx])
        t = lambda x: torch.as_tensor(np.asarray(x), dtype=dtype)  # noqa: E731
        has_v = np.array([self.virial[i] is not None for i in idx])
        vir = np.stack([self.virial[i] if self.virial[i] is not None else np.zeros((3, 3)) for i in idx])
        return (g, t(g.vec), t(self.energy[idx]), t(np.concatenate([self.forces[i] for i in idx])),
                t(self.n_atoms[idx]), t(vir), torch.as_tensor(has_v))


def _fit_statistics(model: DeepPot, data: _Data, elements: Sequence[str]) -> None:
    """Per-element energy shift (least squares) and environment normalisation from the data."""
    shift = np.linalg.lstsq(_counts(data, range(len(data.frames))), data.energy, rcond=None)[0]
    r = np.concatenate([np.linalg.norm(p[3], axis=1) for p in data.pairs]) if data.pairs else np.zeros(0)
    n_pairs = sum(len(p[0]) for p in data.pairs)
    with torch.no_grad():
        model.shift.copy_(torch.as_tensor(shift, dtype=model.shift.dtype).unsqueeze(0))
        if len(r):
            rt = torch.as_tensor(r, dtype=torch.float64)
            s = model.smooth(rt)
            mean_nei = max(n_pairs / max(data.n_atoms.sum(), 1.0), 1.0)
            rms_r = float(torch.sqrt((s * s).mean()).clamp_min(1e-3))
            rms_a = float(torch.sqrt((s * s).mean() / 3.0).clamp_min(1e-3))  # each of the 3 angular terms
            model.s_mean.fill_(float(s.mean()))
            model.s_std.fill_(float(s.std().clamp_min(1e-2)) if len(r) > 1 else 1.0)
            model.env_scale.copy_(torch.tensor([1 / rms_r, 1 / rms_a, 1 / rms_a, 1 / rms_a],
                                               dtype=model.env_scale.dtype).view(1, 1, 4) / math.sqrt(mean_nei))


def _standardize(model: DeepPot, data: _Data, dtype: torch.dtype, max_frames: int = 32) -> None:
    """Descriptor mean (per feature) and spread (one number) per center type on (up to ``max_frames``) training frames, then shift each
    fitting network's output bias so that the initial network adds zero on average to the fitted
    per-element energy shift (the energy loss then starts small)."""
    idx = list(range(min(len(data.frames), max_frames)))
    g, vec = data.batch(idx, dtype)[:2]
    with torch.no_grad():
        desc = model.descriptor(vec.unsqueeze(0), g.blocks)[0]
        for t, atoms in enumerate(g.atoms_by_type):
            if len(atoms):
                x = desc[torch.as_tensor(atoms)]
                model.desc_mean[0, t] = x.mean(dim=0)
                # one scale for all features: per-feature scaling would blow up the (near-constant
                # in the training data) angular features on unfamiliar structures
                spread = (x - x.mean(dim=0)).pow(2).mean().sqrt() if len(atoms) > 1 else x.new_tensor(1.0)
                model.desc_std[0, t] = spread.clamp_min(1e-3)
        base = model.shift[:, torch.as_tensor(g.types)]
        e_atom = model(g, vec, forces=False, atomic=True)["atomic_energy"] - base
        for t, fit in enumerate(model.fittings):
            if len(g.atoms_by_type[t]):
                fit.out.bias -= e_atom[:, torch.as_tensor(g.atoms_by_type[t])].mean()


def _loss(model: DeepPot, batch, pref: tuple[float, float, float], create_graph: bool = True):
    g, vec, energy, forces, n_atoms, vir, has_v = batch
    want_v = pref[2] > 0 and bool(has_v.any())
    out = model(g, vec, forces=True, virial=want_v, create_graph=create_graph)
    de = (out["energy"][0] - energy) / n_atoms
    df = out["forces"][0] - forces
    loss_e, loss_f = (de * de).mean(), (df * df).mean()
    loss = pref[0] * loss_e + pref[1] * loss_f
    if want_v:
        dv = (out["virial"][0][has_v] - vir[has_v]) / n_atoms[has_v].view(-1, 1, 1)
        loss = loss + pref[2] * (dv * dv).mean()
    return loss, de.detach(), df.detach()


def evaluate(model: DeepPot, data: _Data, idx: Sequence[int], dtype: torch.dtype, chunk: int = 32) -> Optional[dict]:
    """RMSE of energy per atom (eV/atom) and of force components (eV/Å) on frames ``idx``."""
    if len(idx) == 0:
        return None
    se_e, se_f, n_f = 0.0, 0.0, 0
    for start in range(0, len(idx), chunk):
        batch = data.batch(list(idx[start:start + chunk]), dtype)
        _, de, df = _loss(model, batch, (1.0, 1.0, 0.0), create_graph=False)
        se_e += float((de.double() ** 2).sum())
        se_f += float((df.double() ** 2).sum())
        n_f += df.numel()
    return {"rmse_e": math.sqrt(se_e / len(idx)), "rmse_f": math.sqrt(se_f / max(n_f, 1)), "n_frames": len(idx)}


def _init_model(config: DeepMDTrain, elements: Sequence[str], data: _Data, seed: int,
                init_path: Optional[Path]) -> tuple[DeepPot, dict]:
    hyper = config.model.model_dump(mode="json")
    dtype = _DTYPES[config.model.precision]
    model = build(1, len(elements), hyper, dtype)
    if init_path is not None:
        state, meta = read_member(Path(init_path))
        if list(meta["elements"]) != list(elements):
            raise SetupError(f"cannot warm-start from {str(init_path)!r}: it was trained for elements "
                             f"{meta['elements']}, this training has {list(elements)}",
                             hint="train from scratch (train.warm_start: false) when the elements change")
        diff = [k for k in ARCH_KEYS if meta["model"][k] != hyper[k]]
        if diff:
            raise SetupError(f"cannot warm-start from {str(init_path)!r}: its {', '.join(diff)} differ from "
                             "train.model", hint="train from scratch (train.warm_start: false) after "
                                                 "changing the model hyperparameters")
        model.load_state_dict({k: v.to(dtype) for k, v in state.items()})
        return model, meta
    gen = torch.Generator().manual_seed(int(seed))
    model.reset(gen)
    _fit_statistics(model, data, elements)
    _standardize(model, data, dtype)
    return model, {}


def _prefactors(config: DeepMDTrain, ratio: float) -> tuple[float, float, float]:
    """Loss prefactors at learning-rate ratio lr / learning_rate (DeePMD's schedule)."""
    (e0, e1), (f0, f1), (v0, v1) = config.energy_weight, config.force_weight, config.stress_weight
    return e1 + (e0 - e1) * ratio, f1 + (f0 - f1) * ratio, v1 + (v0 - v1) * ratio


def _counts(data: _Data, idx) -> np.ndarray:
    n_types = len(data.typemap.elements)
    return np.stack([np.bincount(data.typemap(data.frames[i]), minlength=n_types) for i in idx]).astype(np.float64)


def realign_energy(model: DeepPot, data: _Data, idx, dtype: torch.dtype, chunk: int = 32) -> None:
    """Refit the per-element energy shift to the training frames ``idx`` (least squares on the
    residual energies). Forces do not depend on it, so while the force term dominates the loss the
    absolute energies drift freely; this takes the drift out without touching the networks."""
    idx = np.unique(idx)[:256]
    resid = np.empty(len(idx))
    with torch.no_grad():
        for start in range(0, len(idx), chunk):
            part = list(idx[start:start + chunk])
            g, vec = data.batch(part, dtype)[:2]
            resid[start:start + len(part)] = data.energy[part] - model(g, vec, forces=False)["energy"][0].double().numpy()
        delta = np.linalg.lstsq(_counts(data, idx), resid, rcond=None)[0]
        model.shift += torch.as_tensor(delta, dtype=model.shift.dtype).unsqueeze(0)


def _check_score(model: DeepPot, data: _Data, train_idx, check_idx, dtype) -> float:
    realign_energy(model, data, train_idx, dtype)
    v = evaluate(model, data, check_idx, dtype)
    return score(v["rmse_e"], v["rmse_f"])


class _Trainee:
    """One member under :func:`elt.potentials.fitting.plateau_fit`: DeePMD's loss with prefactors
    that follow the learning rate; the energy shift realigned before each check."""

    def __init__(self, model: DeepPot, data: _Data, config: DeepMDTrain, dtype: torch.dtype):
        self.model, self.data, self.config, self.dtype = model, data, config, dtype
        self.opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)

    def step(self, idx, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr
        loss, _, _ = _loss(self.model, self.data.batch(idx, self.dtype),
                           _prefactors(self.config, lr / self.config.learning_rate))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def score(self, train_idx, check_idx) -> float:
        return _check_score(self.model, self.data, train_idx, check_idx, self.dtype)

    def snapshot(self) -> dict:
        return copy.deepcopy(self.model.state_dict())

    def restore(self, snapshot: dict) -> None:
        self.model.load_state_dict(snapshot)


def train_member(frames: Sequence[Atoms], config: DeepMDTrain, elements: Sequence[str], member: int,
                 seed: int, out_path, init_path=None) -> dict:
    """Fit one member and write its checkpoint to ``out_path``; see :mod:`elt.potentials.base`."""
    frames, rng, started = begin_member(frames, config, seed)
    elements = list(elements)
    typemap = TypeMap(elements)
    dtype = _DTYPES[config.model.precision]
    data = _Data(frames, typemap, config.model.rcut)
    model, _ = _init_model(config, elements, data, seed, init_path)
    train_idx, valid_idx = split(len(frames), config, rng)

    warm = init_path is not None
    fit = plateau_fit(_Trainee(model, data, config, dtype), train_idx, valid_idx, config, warm, rng)
    virial = max(config.stress_weight) > 0 and any(data.virial[i] is not None for i in np.unique(train_idx))
    metrics = member_metrics(fit, evaluate(model, data, np.unique(train_idx), dtype),
                             evaluate(model, data, valid_idx, dtype), config, member, warm, virial,
                             len(frames), started)
    meta = {
        "kind": "deepmd", "elements": elements, "model": config.model.model_dump(mode="json"),
        "member": int(member), "seed": int(seed), "dataset_hash": dataset_hash(frames),
        "init_path": str(init_path) if init_path is not None else None,
        "virial_trained": metrics["virial_trained"],
        "train": config.model_dump(mode="json", exclude={"model"}), "metrics": metrics,
    }
    save_member(Path(out_path), model.state_dict(), meta)
    return metrics
