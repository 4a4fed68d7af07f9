"""Fixtures of the conformance tests: one torch thread, the frames, and the built-in Deep Potential
ensemble that check_potential trains (once per session)."""

from __future__ import annotations

import pytest
from conformance_helpers import TINY_DEEPMD, cu_frames


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def frames():
    return cu_frames()


@pytest.fixture(scope="session")
def deepmd_report(frames, tmp_path_factory):
    """check_potential on the built-in Deep Potential: its report holds the trained ensemble."""
    from elt.testing import check_potential

    return check_potential("deepmd", frames, TINY_DEEPMD, workdir=tmp_path_factory.mktemp("deepmd"))
