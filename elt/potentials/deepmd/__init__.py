"""The built-in Deep Potential (se_e2_a) ensemble in torch: the ``potential`` plugin ``deepmd``.

``train_member`` fits one member (a plain picklable function); ``load_ensemble`` stacks member
checkpoints into one module that evaluates all members in one graph. Checkpoints: ``member_I.pt``.
"""

from __future__ import annotations

from elt.potentials.base import Potential
from elt.potentials.deepmd.ensemble import DeepPotEnsemble, load_ensemble
from elt.potentials.deepmd.training import train_member
from elt.registry import register

__all__ = ["train_member", "load_ensemble", "DeepPotEnsemble", "DeepMD"]


class DeepMD(Potential):
    """The ``deepmd`` plugin: :func:`~elt.potentials.deepmd.training.train_member` and
    :func:`~elt.potentials.deepmd.ensemble.load_ensemble` (config: :class:`elt.config.train.DeepMDTrain`)."""

    kind = "deepmd"

    def train_member(self, frames, config, elements, member, seed, out_path, init_path=None) -> dict:
        return train_member(frames, config, elements, member, seed, out_path, init_path)

    def load_ensemble(self, member_paths, precision=None, compress: bool = True) -> DeepPotEnsemble:
        return load_ensemble(member_paths, precision=precision, compress=compress)


register("potential", "deepmd")(DeepMD())
