"""Test-session setup: one BLAS thread.

The problems here are small; multi-threaded BLAS only adds contention on a shared 2-core
machine (measured: a rank-100 flow took 545 s instead of 9.7 s under load). Set before NumPy
loads its BLAS; a user's explicit setting wins.
"""

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
