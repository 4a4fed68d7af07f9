"""``train.kind: mace``: an ensemble of MACE models (mace-torch's ScaleShiftMACE), the
``potential`` plugin ``mace``. Needs the optional extra: ``pip install 'elt[mace]'``.

Each member is one MACE model trained by elt's loop (:mod:`elt.potentials.fitting`) with
mace-torch's weighted energy/forces/stress loss (:mod:`elt.potentials.mace.training`); the
ensemble evaluates the members one after the other on one shared graph
(:mod:`elt.potentials.mace.ensemble`). Checkpoints: ``mace_I.pt`` (weights and metadata,
:mod:`elt.potentials.mace.model`), loadable with ``torch.load(weights_only=True)``.
Config: :class:`elt.config.train.MaceTrain`.
"""

from __future__ import annotations

from elt.potentials.base import Potential
from elt.potentials.mace.imports import mace_modules
from elt.registry import register

mace_modules()  # a clear SetupError now (when the kind is asked for) if mace-torch is missing


class Mace(Potential):
    """The ``mace`` plugin."""

    kind = "mace"

    def checkpoint_name(self, member: int) -> str:
        return f"mace_{int(member)}.pt"

    def train_member(self, frames, config, elements, member, seed, out_path, init_path=None) -> dict:
        from elt.potentials.mace.training import train_member

        return train_member(frames, config, elements, member, seed, out_path, init_path)

    def load_ensemble(self, member_paths, precision=None):
        from elt.potentials.mace.ensemble import load_ensemble

        return load_ensemble(member_paths, precision=precision)


register("potential", "mace")(Mace())
