"""One MACE member: the model built from its hyperparameters and data statistics, its graph
input, its checkpoint.

Graph (mace-torch's input dict) of G frames, N atoms and E directed edges (sender i, receiver j,
``r_j - r_i + shift`` shorter than r_max; full neighbour list from vesin):

    positions (N, 3) Å, node_attrs (N, T) one-hot element, edge_index (2, E), shifts (E, 3) Å,
    unit_shifts (E, 3) cell multiples, cell (3G, 3) Å, batch (N,) frame of each atom, ptr (G+1,)

The model returns energy (G,) eV, forces (N, 3) eV/Å and, asked for, stress (G, 3, 3) eV/Å³ with
ASE's sign (``stress = (1/V) dE/dε``) and virials (G, 3, 3) eV = -V · stress.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from ase import Atoms

from elt.errors import SetupError
from elt.potentials.checkpoint import read_checkpoint, save_checkpoint
from elt.potentials.neighbors import TypeMap, frame_pairs
from elt.potentials.mace.imports import default_dtype, mace_modules, quiet

FORMAT = "elt-mace"
VERSION = 1
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# hyperparameters that must agree between members (and between a warm start and its config)
ARCH_KEYS = ("r_max", "hidden_irreps", "num_interactions", "max_ell", "correlation", "num_bessel",
             "num_polynomial_cutoff", "radial_mlp", "mlp_irreps")
INTERACTION = "RealAgnosticResidualInteractionBlock"  # mace-torch's default for both kinds of layer


def build(hyper: dict, elements: Sequence[str], stats: dict, dtype: torch.dtype) -> torch.nn.Module:
    """A ScaleShiftMACE for ``elements`` from the hyperparameters (:class:`elt.config.train.MaceModel`)
    and the statistics of :func:`statistics` (per-element energies e0, eV; avg_num_neighbors; scale,
    eV/Å, and shift, eV, of the interaction energy per atom)."""
    from ase.data import atomic_numbers

    modules, o3 = mace_modules()
    with default_dtype(dtype), quiet():
        model = modules.ScaleShiftMACE(
            r_max=float(hyper["r_max"]), num_bessel=int(hyper["num_bessel"]),
            num_polynomial_cutoff=int(hyper["num_polynomial_cutoff"]), max_ell=int(hyper["max_ell"]),
            interaction_cls=modules.interaction_classes[INTERACTION],
            interaction_cls_first=modules.interaction_classes[INTERACTION],
            num_interactions=int(hyper["num_interactions"]), num_elements=len(elements),
            hidden_irreps=o3.Irreps(hyper["hidden_irreps"]), MLP_irreps=o3.Irreps(hyper["mlp_irreps"]),
            atomic_energies=np.asarray(stats["e0"], dtype=np.float64),
            avg_num_neighbors=float(stats["avg_num_neighbors"]),
            atomic_numbers=[atomic_numbers[e] for e in elements], correlation=int(hyper["correlation"]),
            gate=torch.nn.functional.silu, radial_MLP=[int(x) for x in hyper["radial_mlp"]],
            atomic_inter_scale=float(stats["scale"]), atomic_inter_shift=float(stats["shift"]))
    return model.to(dtype)


class FrameGraphs:
    """Frames with their neighbour pairs computed once; :meth:`batch` concatenates some of them."""

    def __init__(self, frames: Sequence[Atoms], typemap: TypeMap, r_max: float):
        self.frames = list(frames)
        self.typemap, self.r_max = typemap, r_max
        self.types = [typemap(a) for a in self.frames]  # unknown elements -> clear error now
        self.pairs = [frame_pairs(a, r_max)[:3] for a in self.frames]

    def counts(self, idx: Sequence[int]) -> np.ndarray:
        """(len(idx), T) atoms of each element in frames ``idx``."""
        n_types = len(self.typemap.elements)
        return np.stack([np.bincount(self.types[i], minlength=n_types) for i in idx]).astype(np.float64)

    def edges_per_atom(self) -> float:
        n = sum(len(t) for t in self.types)
        return sum(len(p[0]) for p in self.pairs) / max(n, 1)

    def batch(self, idx: Sequence[int], dtype: torch.dtype) -> dict:
        """The graph dict of frames ``idx`` (see the module docstring)."""
        return graph_dict([self.frames[i] for i in idx], [self.types[i] for i in idx],
                          [self.pairs[i] for i in idx], len(self.typemap.elements), dtype)


def graph_dict(frames: Sequence[Atoms], types: Sequence[np.ndarray], pairs: Sequence[tuple], n_types: int,
               dtype: torch.dtype) -> dict:
    pos, types_l, send, recv, unit, cells, batch = [], [], [], [], [], [], []
    offset = 0
    for f, (atoms, t, (i, j, s)) in enumerate(zip(frames, types, pairs)):
        pos.append(np.asarray(atoms.positions, dtype=np.float64))
        types_l.append(t)
        send.append(i + offset)
        recv.append(j + offset)
        unit.append(s)
        cells.append(np.asarray(atoms.cell.array, dtype=np.float64))
        batch.append(np.full(len(t), f, dtype=np.int64))
        offset += len(t)
    types_a = np.concatenate(types_l)
    unit_a = np.concatenate(unit).astype(np.float64)
    cell_a = np.stack(cells)
    batch_a = np.concatenate(batch)
    send_a = np.concatenate(send)
    shifts = np.einsum("ec,ecd->ed", unit_a, cell_a[batch_a[send_a]])
    t = lambda x: torch.as_tensor(x, dtype=dtype)  # noqa: E731
    counts = np.bincount(batch_a, minlength=len(frames))
    return {
        "positions": t(np.concatenate(pos)),
        "node_attrs": t(np.eye(n_types)[types_a]),
        "edge_index": torch.as_tensor(np.stack([send_a, np.concatenate(recv)]), dtype=torch.long),
        "shifts": t(shifts),
        "unit_shifts": t(unit_a),
        "cell": t(cell_a.reshape(-1, 3)),
        "batch": torch.as_tensor(batch_a),
        "ptr": torch.as_tensor(np.concatenate([[0], np.cumsum(counts)]), dtype=torch.long),
    }


def statistics(graphs: FrameGraphs, energies: np.ndarray, forces: Sequence[np.ndarray]) -> dict:
    """mace-torch's ``average`` E0s (least squares of the energies on the element counts), the mean
    interaction energy per atom (shift, eV) and the RMS force (scale, eV/Å), the mean neighbour count."""
    counts = graphs.counts(range(len(graphs.frames)))
    e0 = np.linalg.lstsq(counts, energies, rcond=None)[0]
    n_atoms = counts.sum(axis=1)
    shift = float(np.mean((energies - counts @ e0) / n_atoms))
    f = np.concatenate([np.asarray(x).ravel() for x in forces])
    scale = float(np.sqrt(np.mean(f * f))) if len(f) else 1.0
    return {"e0": [float(x) for x in e0], "shift": shift, "scale": scale if scale > 1e-6 else 1.0,
            "avg_num_neighbors": max(graphs.edges_per_atom(), 1.0)}


def save_member(path: Path, model: torch.nn.Module, meta: dict) -> None:
    save_checkpoint(path, FORMAT, VERSION, model.state_dict(), meta)


def read_member(path: Path) -> tuple[dict, dict]:
    """(state, metadata) of one MACE member checkpoint, with a clear error for anything else."""
    return read_checkpoint(path, FORMAT, VERSION, "MACE")


def load_member(path: Path, dtype: Optional[torch.dtype] = None) -> tuple[torch.nn.Module, dict]:
    """The model of a member checkpoint (in ``dtype``, default: as trained) and its metadata."""
    state, meta = read_member(path)
    dtype = dtype or DTYPES[meta["model"].get("precision", "float32")]
    model = build(meta["model"], meta["elements"], meta["stats"], dtype)
    try:
        model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        raise SetupError(f"checkpoint weights of {str(path)!r} do not fit the model described in their "
                         f"metadata: {exc}", hint="the checkpoint is damaged or from an incompatible "
                                                  "mace-torch or elt version; retrain") from None
    return model, meta


def check_compatible(meta: dict, ref: dict, path: Path, ref_path: Path, what: str) -> None:
    """Members of one ensemble (or a warm start and its config) share elements and architecture."""
    if list(meta["elements"]) != list(ref["elements"]):
        raise SetupError(f"{what}: {str(path)!r} was trained for elements {meta['elements']}, "
                         f"{str(ref_path)!r} is for {ref['elements']}",
                         hint="train from scratch (train.warm_start: false) when the elements change, and "
                              "load the members of one ensemble together")
    diff = [k for k in ARCH_KEYS if meta["model"][k] != ref["model"][k]]
    if diff:
        raise SetupError(f"{what}: {str(path)!r} differs from {str(ref_path)!r} in {', '.join(diff)}",
                         hint="train from scratch (train.warm_start: false) after changing train.model, and "
                              "load the members of one ensemble together")
