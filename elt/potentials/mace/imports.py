"""mace-torch, imported so that it works with torch ≥ 2.6 and leaves the process as it found it.

- e3nn 0.4.4 ``torch.load``s its constants (tensors and ``slice`` objects) at import; torch's
  ``weights_only`` default refuses ``slice``, so it is allowed first (``add_safe_globals``).
- mace's ``__init__`` sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` for the whole process (every
  later ``torch.load`` without ``weights_only`` would unpickle arbitrary objects); the variable
  is put back as it was. elt's own checkpoints are read with ``weights_only=True``.
"""

from __future__ import annotations

import io
import os
import warnings
from contextlib import contextmanager, redirect_stdout

from elt.errors import SetupError

_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
_loaded: tuple = ()
INSTALL_HINT = "pip install 'elt[mace]'  (mace-torch and e3nn; the CPU torch you have stays)"


def mace_modules():
    """``(mace.modules, e3nn.o3)``; a SetupError saying how to install mace-torch when it is missing."""
    global _loaded
    if _loaded:
        return _loaded
    import torch

    torch.serialization.add_safe_globals([slice])
    before = os.environ.get(_ENV)
    try:
        with quiet():
            from e3nn import o3
            from mace import modules
    except ImportError as exc:
        raise SetupError(f"train.kind mace needs mace-torch, which cannot be imported here ({exc})",
                         hint=INSTALL_HINT) from None
    finally:
        if before is None:
            os.environ.pop(_ENV, None)
        else:
            os.environ[_ENV] = before
    _loaded = (modules, o3)
    return _loaded


@contextmanager
def quiet():
    """Without what e3nn and mace-torch say at import and model construction (TorchScript
    deprecation and annotation warnings, the cuequivariance notice on stdout): nothing about the run."""
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


@contextmanager
def default_dtype(dtype):
    """torch's default dtype set to ``dtype`` inside (mace-torch builds its buffers in it)."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)
