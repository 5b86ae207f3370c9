"""The CPU memory figure is the peak of the forward passes: work in an excluded window is left out."""
from __future__ import annotations

import numpy as np
import pytest

from harness.measure.memory import MIB, PeakMemory, read_status_kib


@pytest.mark.skipif(not read_status_kib(), reason="no /proc/self/status (not Linux)")
def test_excluded_window_is_left_out_of_the_peak():
    size = 300 * MIB
    with PeakMemory("cpu") as counted:
        a = np.ones(size // 8)
        del a
    with PeakMemory("cpu") as mem:
        small = np.ones(10 * MIB // 8)
        with mem.excluded():  # what the worker does with an SR output between forwards
            a = np.ones(size // 8)
            del a
        del small
    assert counted.peak_mib >= 250
    assert mem.peak_mib < 100
    assert mem.to_dict()["excluded_windows"] == 1
