"""Test-session setup: one BLAS thread, and one torch thread where torch is in use.

The problems here are small; multi-threaded BLAS only adds contention on a shared 2-core
machine (measured: a rank-100 flow took 545 s instead of 9.7 s under load). Set before NumPy
loads its BLAS; a user's explicit setting wins.

Nothing here imports torch: the theory's tests (``tests/dynamics``) run, and pass, where torch
is not installed. A test module that needs torch imports it itself (or skips without it:
``pytest.importorskip("torch")``, or a ``skipif`` on the tests that compare against it).
"""

import os
import sys

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models: with 2 intra-op threads on a busy 2-core machine torch is ~40x slower.
    Applies when torch has been imported (by the test modules collected), else does nothing."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
