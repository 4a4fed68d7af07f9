"""The built-in Deep Potential (se_e2_a) ensemble in torch: the ``potential`` plugin ``deepmd``.

``train_member`` fits one member (a plain picklable function); ``load_ensemble`` stacks member
checkpoints into one module that evaluates all members in one graph.
"""

from __future__ import annotations

import sys

from elt.potentials.deepmd.ensemble import DeepPotEnsemble, load_ensemble
from elt.potentials.deepmd.training import train_member
from elt.registry import register

__all__ = ["train_member", "load_ensemble", "DeepPotEnsemble"]

register("potential", "deepmd")(sys.modules[__name__])
