"""The final test of a campaign: errors of the trained ensemble on fresh labeled frames."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from elt.data.frames import FRAME_ID, labels_of


def fresh_test_frames(frames: Sequence, known: set, n: int) -> list:
    """The first ``n`` frames that are not in the data set (``known`` frame ids), spread evenly over
    the test trajectory: a test frame the model was trained on would flatter it."""
    fresh = [a for a in frames if a.info.get(FRAME_ID) not in known]
    if len(fresh) <= n:
        return fresh
    pick = np.linspace(0, len(fresh) - 1, n).round().astype(int)
    return [fresh[i] for i in pick]


def ensemble_errors(pot, labeled: Sequence) -> dict:
    """RMSE of the ensemble's mean prediction against the labels: forces (eV/Å, over components)
    and energy per atom (eV/atom)."""
    ferr, eerr = [], []
    for a in labeled:
        e_ref, f_ref, _ = labels_of(a)
        p = pot.predict(a)
        ferr.append((p.forces.mean(axis=0) - f_ref).ravel())
        eerr.append((p.energies.mean() - e_ref) / len(a))
    ferr = np.concatenate(ferr)
    return {"frames": len(labeled), "rmse_f": float(np.sqrt(np.mean(ferr**2))),
            "rmse_e": float(np.sqrt(np.mean(np.square(eerr))))}
