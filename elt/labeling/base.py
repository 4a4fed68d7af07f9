"""The labeler plugin interface.

A labeler turns one frame into reference labels. It is built from its workflow section
(``label:``) and the execution settings of the cluster profile (threads, launcher), and is used
inside one Dask task per frame.

Units at this interface: positions Å, energy eV, forces eV/Å, stress eV/Å³ (ASE convention,
Voigt order xx yy zz yz xz xy). Each backend converts from its own units with :mod:`elt.units`.

Failures:
- a *physics* failure (SCF not converged, bad geometry) raises
  ``CalculationError(..., physics=True, reason="scf_not_converged")``; the frame is recorded as
  failed with its reason and excluded, never retried blindly;
- an *infrastructure* failure (binary missing, killed, time limit, garbled output) raises
  ``CalculationError(..., physics=False)`` and is retried up to ``label.retries`` times.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from ase import Atoms

from elt.records import ExecSettings  # noqa: F401  (labelers take it; defined with the other task records)


@dataclass
class Labels:
    energy: float                      # eV
    forces: np.ndarray                 # (N, 3) eV/Å
    stress: Optional[np.ndarray] = None  # (6,) eV/Å³ or None
    info: Optional[dict] = None        # backend details (SCF cycles, tries, wall time)


class Labeler(ABC):
    """Base of every labeler. Subclasses are registered with ``@register("labeler", KIND)``."""

    def __init__(self, config, exec_settings: ExecSettings | None = None):
        self.config = config
        self.exec = exec_settings or ExecSettings()

    @abstractmethod
    def compute(self, atoms: Atoms, workdir: Path) -> Labels:
        """Label one frame. ``workdir`` is this task's own directory (exists, may be reused on retry)."""

    def check(self, elements: list[str], periodic: Optional[bool] = None) -> list[str]:
        """Problems that would make every label fail (missing binary, unknown basis, element not
        supported), each a sentence saying what to do. Empty list: ready.

        ``periodic``: True when the frames are 3D periodic cells, False when they are molecules,
        None when unknown or mixed; lets a backend also check its defaults for that kind of system."""
        return []
