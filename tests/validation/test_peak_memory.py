"""The peak-memory probe of the re-clusterings (``validation.grouped._PeakMemory``) counts
what the block allocates even in a process whose allocator holds freed memory (a report
worker after other jobs): before the fix it read 0 MB there (claim 12's "MB per
re-clustering")."""

from __future__ import annotations

import numpy as np
import pytest

from validation.grouped import _PeakMemory

BLOCKS, SIZE = 300, 12_500  # 300 arrays of 100 kB (below glibc's mmap threshold: heap memory)


def _hold_freed_heap() -> np.ndarray:
    """Allocate 40 MB in small arrays, free all but the last: the allocator keeps the pages."""
    held = [np.ones(SIZE) for _ in range(400)]
    return held[-1]


def test_peak_memory_counts_pages_the_allocator_already_held() -> None:
    keep = _hold_freed_heap()
    with _PeakMemory() as memory:
        arrays = [np.ones(SIZE) for _ in range(BLOCKS)]  # touched: resident
    expected = BLOCKS * SIZE * 8  # 30 MB, the oracle: the arrays' own bytes
    if memory.bytes is None:
        pytest.skip("no /proc/self/clear_refs here")
    assert 0.9 * expected <= memory.bytes <= expected + 15e6
    assert len(arrays) == BLOCKS and keep.size == SIZE
