"""k MACE members as one :class:`~elt.potentials.base.EnsemblePotential`: one graph per batch of
frames, the members evaluated on it one after the other. Units: eV, Å, eV/Å, eV/Å³."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from ase import Atoms

from elt.errors import ConfigError, SetupError
from elt.potentials.base import EnsemblePotential, EnsemblePrediction, atom_chunks, fully_periodic
from elt.potentials.neighbors import TypeMap, frame_pairs
from elt.potentials.mace.imports import mace_modules
from elt.potentials.mace.model import DTYPES, build, check_compatible, graph_dict, load_member


class MaceEnsemble(EnsemblePotential):
    """k MACE models on one neighbour graph. ``stress_trained``: every member was fitted to stress
    (checkpoint metadata ``virial_trained``), which the ASE calculator requires before it offers stress.
    Pickles as its weights and metadata (rebuilt on the other side)."""

    def __init__(self, models: Sequence[torch.nn.Module], elements: Sequence[str], metadata: Sequence[dict],
                 max_atoms_per_batch: int = 2048):
        self.models = list(models)
        for m in self.models:
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
        self.elements = tuple(elements)
        self.size = len(self.models)
        self.metadata = list(metadata)
        self.rcut = float(self.metadata[0]["model"]["r_max"])
        self.stress_trained = all(m.get("virial_trained", False) for m in self.metadata)
        self.typemap = TypeMap(self.elements)
        self.dtype = next(self.models[0].parameters()).dtype
        self.max_atoms_per_batch = max_atoms_per_batch

    def __reduce__(self):
        states = [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in self.models]
        return _rebuild, (states, self.metadata, str(self.dtype).removeprefix("torch."), self.max_atoms_per_batch)

    def _graph(self, frames: Sequence[Atoms]) -> dict:
        return graph_dict(frames, [self.typemap(a) for a in frames], [frame_pairs(a, self.rcut)[:3] for a in frames],
                          len(self.elements), self.dtype)

    def predict(self, atoms: Atoms, *, stress: bool = False) -> EnsemblePrediction:
        return self.predict_many([atoms], stress=stress)[0]

    def predict_many(self, frames: Sequence[Atoms], *, stress: bool = False) -> list[EnsemblePrediction]:
        """Frames are evaluated in batches of up to ``max_atoms_per_batch`` atoms."""
        return [p for chunk in atom_chunks(frames, self.max_atoms_per_batch) for p in self._predict_chunk(chunk, stress)]

    def _predict_chunk(self, chunk: Sequence[Atoms], stress: bool) -> list[EnsemblePrediction]:
        want = stress and any(fully_periodic(a) for a in chunk)
        graph = self._graph(chunk)
        e, f, s = [], [], []
        for model in self.models:
            out = model(dict(graph), training=False, compute_force=True, compute_stress=want)
            e.append(out["energy"].detach().double().numpy())
            f.append(out["forces"].detach().double().numpy())
            if want:
                s.append(out["stress"].detach().double().numpy())
        e, f = np.stack(e), np.stack(f)  # (k, G), (k, N, 3)
        s = np.stack(s) if want else None  # (k, G, 3, 3)
        ptr = graph["ptr"].numpy()
        return [EnsemblePrediction(e[:, g], f[:, ptr[g]:ptr[g + 1]],
                                   s[:, g] if want and fully_periodic(a) else None)
                for g, a in enumerate(chunk)]

    def descriptors(self, atoms: Atoms) -> np.ndarray:
        """Per-atom invariant MACE features (N, D) of every layer (mace's ``get_descriptors``),
        the mean over members (for diversity selection)."""
        modules, o3 = mace_modules()
        from mace.modules.utils import extract_invariant

        graph = self._graph([atoms])
        out = []
        for model in self.models:
            irreps = o3.Irreps(str(model.products[0].linear.irreps_out))
            feats = model(dict(graph), training=False, compute_force=False)["node_feats"].detach()
            out.append(extract_invariant(feats, num_layers=int(model.num_interactions),
                                         num_features=irreps.dim // (irreps.lmax + 1) ** 2,
                                         l_max=irreps.lmax).double().numpy())
        return np.mean(out, axis=0)


def _rebuild(states: list[dict], metadata: list[dict], dtype: str, max_atoms: int) -> MaceEnsemble:
    models = []
    for state, meta in zip(states, metadata):
        model = build(meta["model"], meta["elements"], meta["stats"], DTYPES[dtype])
        model.load_state_dict(state)
        models.append(model)
    return MaceEnsemble(models, metadata[0]["elements"], metadata, max_atoms)


def load_ensemble(member_paths: Sequence, precision: Optional[str] = None) -> MaceEnsemble:
    """The ensemble of MACE member checkpoints. ``precision``: None (as trained), float32, float64."""
    paths = [Path(p) for p in ([member_paths] if isinstance(member_paths, (str, Path)) else member_paths)]
    if not paths:
        raise SetupError("no member checkpoints given to load the ensemble from",
                         hint="pass mace_*.pt files, or the model folder that holds them")
    if precision is not None and precision not in DTYPES:
        raise ConfigError(f"unknown precision {precision!r}", hint="use float32 or float64")
    members = [load_member(p, DTYPES[precision] if precision else None) for p in paths]
    dtypes = {next(m.parameters()).dtype for m, _ in members}
    if len(dtypes) > 1:  # members trained in different precisions: evaluate all in the widest
        members = [load_member(p, torch.float64) for p in paths]
    for (_, meta), path in zip(members[1:], paths[1:]):
        check_compatible(meta, members[0][1], path, paths[0], "members of one ensemble")
    return MaceEnsemble([m for m, _ in members], members[0][1]["elements"], [m for _, m in members])
