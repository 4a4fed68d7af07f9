import pytest
from lab_helpers import CP2K_BINARY, NO_CP2K, h2_frame


@pytest.fixture
def h2():
    return h2_frame()


@pytest.fixture
def cp2k_binary():
    if CP2K_BINARY is None:
        pytest.skip(NO_CP2K)
    return CP2K_BINARY
