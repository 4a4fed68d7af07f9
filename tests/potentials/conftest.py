"""Fixtures of the potential tests: one torch thread, a small trained ensemble (module-scoped)."""

from __future__ import annotations

import pytest
import torch
from cu_frames import rattled_cu, small_config


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small_ensemble(tmp_path_factory):
    """Two quickly trained members on 6 EMT Cu frames; returns their paths and the frames."""
    from elt.potentials.deepmd import train_member

    d = tmp_path_factory.mktemp("ens")
    frames = rattled_cu(6)
    paths = []
    for m in range(2):
        p = d / f"member_{m}.pt"
        train_member(frames, small_config(), ["Cu"], m, 100 + m, p)
        paths.append(p)
    return paths, frames
