"""Worker -> quality process hand-over of SR outputs: JSON headers, never pickle; host path on the CPU.

The CUDA IPC path needs a GPU: bench/gpu_check.sh exercises it (a child process shares, the
parent maps and scores); here the header checks that guard it are tested.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness.measure.output_share import ShareError, open_output, share_output


def test_host_round_trip_is_exact_and_json_only():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    t = torch.from_numpy(img).permute(2, 0, 1)  # non-contiguous CHW view
    header, payload = share_output(t)
    assert json.loads(json.dumps(header)) == header  # the header is plain JSON
    assert header == {"kind": "host", "shape": [5, 7, 3], "from_cuda": False}
    out, where = open_output(header, payload, expect_hw=(5, 7))
    assert where == "host" and np.array_equal(out, img)


def test_bad_headers_are_refused_before_anything_is_mapped():
    t = torch.zeros(3, 4, 6, dtype=torch.uint8)
    header, payload = share_output(t)
    with pytest.raises(ShareError, match="expected 4x5x3"):
        open_output(header, payload, expect_hw=(4, 5))
    with pytest.raises(ShareError, match="bytes"):
        open_output(header, payload[:-1], expect_hw=(4, 6))
    with pytest.raises(ShareError, match="unknown output kind"):
        open_output({"kind": "pickle"}, payload, expect_hw=(4, 6))
    ipc = {"kind": "cuda_ipc", "shape": [3, 4, 6], "size_bytes": 10, "storage_offset": 0}
    with pytest.raises(ShareError, match="cannot hold 3x4x6"):
        open_output(ipc, None, expect_hw=(4, 6))
    with pytest.raises(ShareError, match=r"expected \[3, 4, 7\]"):
        open_output(ipc, None, expect_hw=(4, 7))
    with pytest.raises(ShareError, match="uint8 3xHxW"):
        share_output(torch.zeros(3, 4, 6))
