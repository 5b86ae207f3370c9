"""The CPU memory figure is the peak of the forward passes: work in an excluded window is left out."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from harness.measure.memory import read_status_kib

# In a fresh interpreter: the peak resident size of a long test session would hide the growth.
BODY = textwrap.dedent("""
    import json
    import numpy as np
    from harness.measure.memory import MIB, PeakMemory

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
    print(json.dumps({"counted": counted.peak_mib, "excluded": mem.peak_mib,
                      "windows": mem.to_dict()["excluded_windows"]}))
""")


@pytest.mark.skipif(not read_status_kib(), reason="no /proc/self/status (not Linux)")
def test_excluded_window_is_left_out_of_the_peak():
    out = subprocess.run([sys.executable, "-c", BODY], capture_output=True, text=True, check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["counted"] >= 250
    assert got["excluded"] < 100
    assert got["windows"] == 1
