"""The stacked ensemble: k member checkpoints -> one :class:`DeepPot` with k on every weight."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from ase import Atoms

from elt.errors import ConfigError, SetupError
from elt.potentials.base import EnsemblePotential, EnsemblePrediction, atom_chunks, fully_periodic
from elt.potentials.deepmd.checkpoint import check_compatible, read_member
from elt.potentials.deepmd.graph import Graph, build_graph
from elt.potentials.neighbors import TypeMap
from elt.potentials.deepmd.model import DeepPot, build, stack_states

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class DeepPotEnsemble(EnsemblePotential):
    """k Deep Potential members evaluated in one graph. Units: eV, Å, eV/Å, eV/Å³.

    ``predict(..., stress=True)`` gives the virial-derived stress of frames periodic in all three
    directions; ``stress_trained`` says whether every member was fitted to virials (checkpoint
    metadata ``virial_trained``), which the ASE calculator requires before it offers stress."""

    def __init__(self, model: DeepPot, elements: Sequence[str], metadata: Sequence[dict],
                 max_atoms_per_batch: int = 4096):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.elements = tuple(elements)
        self.size = model.k
        self.rcut = model.rcut
        self.metadata = list(metadata)
        self.stress_trained = bool(self.metadata) and all(m.get("virial_trained", False) for m in self.metadata)
        self.typemap = TypeMap(self.elements)
        self.dtype = next(model.parameters()).dtype
        self.max_atoms_per_batch = max_atoms_per_batch

    def _run(self, g: Graph, stress: bool) -> dict:
        vec = torch.as_tensor(g.vec, dtype=self.dtype)
        out = self.model(g, vec, forces=True, virial=stress)
        return {k: v.detach().to(torch.float64).numpy() for k, v in out.items()}

    def descriptors(self, atoms: Atoms) -> np.ndarray:
        """Per-atom se_e2_a descriptors (N, M1*M2), the mean over members (for diversity selection)."""
        g = build_graph([atoms], self.typemap, self.rcut)
        vec = torch.as_tensor(g.vec, dtype=self.dtype)
        with torch.no_grad():
            d = self.model.descriptor(vec.unsqueeze(0).expand(self.size, *vec.shape), g.blocks)
        return d.mean(dim=0).to(torch.float64).numpy()

    def batch_evaluator(self, systems: Sequence[Atoms], *, device: str = "cpu", skin: float = 1.0,
                        compile: bool = False):
        """All ``systems`` in one model call with Verlet lists (:class:`~elt.potentials.deepmd.batch.DeepPotBatch`);
        ``compile``: the native kernels on the CPU (:mod:`elt.potentials.deepmd.native`, built once per
        machine; the torch kernels where they cannot be built)."""
        from elt.potentials.batch import resolve_device
        from elt.potentials.deepmd.batch import DeepPotBatch
        from elt.potentials.deepmd.native import available

        dev = resolve_device(device)
        native = bool(compile) and dev.type == "cpu" and available(self.dtype)
        return DeepPotBatch(self, systems, dev, skin=skin, native=native)

    def predict(self, atoms: Atoms, *, stress: bool = False) -> EnsemblePrediction:
        return self.predict_many([atoms], stress=stress)[0]

    def predict_many(self, frames: Sequence[Atoms], *, stress: bool = False) -> list[EnsemblePrediction]:
        """Frames are evaluated in batches of up to ``max_atoms_per_batch`` atoms."""
        preds: list[EnsemblePrediction] = []
        for chunk in atom_chunks(frames, self.max_atoms_per_batch):
            want_virial = stress and any(fully_periodic(a) for a in chunk)
            g = build_graph(chunk, self.typemap, self.rcut)
            out = self._run(g, want_virial)
            for f, atoms in enumerate(chunk):
                sel = g.atom_frame == f
                s = None
                if want_virial and fully_periodic(atoms):
                    s = -out["virial"][:, f] / atoms.get_volume()
                preds.append(EnsemblePrediction(out["energy"][:, f], out["forces"][:, sel], s))
        return preds


def load_ensemble(member_paths: Sequence, precision: Optional[str] = None, compress: bool = True) -> DeepPotEnsemble:
    """Stack member checkpoints into one ensemble. ``precision``: None (as trained), float32, float64.
    ``compress``: replace the embedding networks by tables (faster; agrees to ~1e-6 relative)."""
    paths = [Path(p) for p in ([member_paths] if isinstance(member_paths, (str, Path)) else member_paths)]
    if not paths:
        raise SetupError("no member checkpoints given to load the ensemble from",
                         hint="pass member_*.pt files, or a directory that holds them")
    members = [read_member(p) for p in paths]
    metas = [m for _, m in members]
    check_compatible(metas, paths)
    hyper = metas[0]["model"]
    name = precision or hyper.get("precision", "float32")
    if name not in _DTYPES:
        raise ConfigError(f"unknown precision {name!r}", hint="use float32 or float64")
    model = build(len(paths), len(metas[0]["elements"]), hyper, _DTYPES[name])
    state = stack_states([s for s, _ in members])
    try:
        model.load_state_dict({k: v.to(_DTYPES[name]) for k, v in state.items()})
    except RuntimeError as exc:
        raise SetupError(f"checkpoint weights do not fit the model described in their metadata: {exc}",
                         hint="the checkpoint is damaged or from an incompatible elt version; retrain") from None
    if compress:
        model.compress()
    return DeepPotEnsemble(model, metas[0]["elements"], metas)
