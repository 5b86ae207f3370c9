"""Peak memory on the CPU, and the optional inference modes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import harness.measure.memory as memory
from harness.measure.inference import ModeError, self_ensemble_x8, tiled, wrap_forward
from harness.measure.memory import PeakMemory

MIB = 1 << 20


REPO = Path(__file__).resolve().parents[1]
# Run in a fresh interpreter: a process that already freed memory (earlier tests) reuses it
# without growing RSS, which is the documented limit of cpu_peak_rss_growth.
PROBE = """
import json, sys
import numpy as np
import harness.measure.memory as memory
if sys.argv[1] == "fallback":
    memory.reset_peak_rss = lambda: False
with memory.PeakMemory("cpu", interval_s=0.0005) as mem:
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    if sys.argv[1] == "freed":
        del block  # freed inside the block: only a peak counter sees it
print(json.dumps(mem.to_dict()))
"""


def probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not memory.read_status_kib(), reason="no /proc/self/status (not Linux)")
def test_cpu_peak_rss_growth_sees_freed_peak():
    d = probe("freed")
    assert d["kind"] == "cpu_peak_rss_growth" and d["baseline_mib"] > 0
    # clear_refs reset, or (where refused) VmHWM rising inside the block: both see the freed peak
    assert 62.0 <= d["peak_mib"] < 80.0, d


@pytest.mark.skipif(not memory.read_status_kib(), reason="no /proc/self/status (not Linux)")
def test_cpu_sampling_fallback():
    d = probe("fallback")
    assert d["method"].startswith("VmRSS sampled")
    assert 62.0 <= d["peak_mib"] < 80.0, d


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA path needs a GPU")
def test_cuda_peak():
    with PeakMemory("cuda") as mem:
        x = torch.empty(32 * MIB, dtype=torch.uint8, device="cuda")
        del x
    assert mem.kind == "cuda_max_memory_allocated" and mem.peak_mib >= 32.0


def odd_net():
    """A deliberately asymmetric conv so the 8 transforms give 8 different outputs."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 3, (1, 3), padding=(0, 1))).eval()


def test_self_ensemble_matches_numpy_reference():
    net = odd_net()
    x = torch.rand(1, 3, 7, 7)
    with torch.no_grad():
        got = self_ensemble_x8(net, x).numpy()
        ref = np.zeros((1, 3, 7, 7))
        base = x.numpy()
        for flip in (False, True):
            for k in range(4):
                t = np.rot90(base[..., ::-1] if flip else base, k, axes=(2, 3)).copy()
                y = np.rot90(net(torch.from_numpy(t)).numpy(), -k, axes=(2, 3))
                ref += (y[..., ::-1] if flip else y) / 8
        plain = net(x).numpy()
    assert np.abs(got - ref).max() < 1e-6
    assert np.abs(got - plain).max() > 1e-3  # the ensemble really differs from one forward
    assert (self_ensemble_x8(lambda t: t * 2, x) - x * 2).abs().max() < 1e-6  # equivariant model: unchanged


class LocalSR(nn.Module):
    """Two 3x3 convs (receptive-field radius 2) then x2 pixel shuffle."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1))
        self.up = nn.PixelShuffle(2)

    def forward(self, x):
        return self.up(self.body(x))


def test_tiled_equals_untiled_when_overlap_covers_receptive_field():
    net = LocalSR().eval()
    x = torch.rand(1, 3, 23, 17)
    with torch.no_grad():
        full = net(x)
        exact = tiled(net, x, tile=8, overlap=2, scale=2)
        inferred = tiled(net, x, tile=5, overlap=3)
        short = tiled(net, x, tile=8, overlap=1, scale=2)
    assert exact.shape == full.shape == (1, 3, 46, 34)
    assert (exact - full).abs().max() < 1e-6
    assert (inferred - full).abs().max() < 1e-6
    assert (short - full).abs().max() > 1e-4  # too little context: seams differ


def test_wrap_forward_modes():
    net = LocalSR().eval()
    fwd, mode = wrap_forward(net, scale=2)
    assert fwd is net and mode["plain"] is True and mode["forwards_per_image"] == 1
    x = torch.rand(1, 3, 12, 10)
    fwd, mode = wrap_forward(net, self_ensemble=True, tile=4, overlap=2, scale=2)
    assert mode == {"fp16": False, "channels_last": False, "self_ensemble": True, "tile": 4, "overlap": 2,
                    "forwards_per_image": 8, "tiling": "center-crop, no blending", "plain": False}
    with torch.no_grad():
        assert (fwd(x) - self_ensemble_x8(net, x)).abs().max() < 1e-6
    with pytest.raises(ModeError, match="CUDA only"):
        wrap_forward(net, fp16=True)
    with pytest.raises(ModeError, match="CUDA only"):
        wrap_forward(net, channels_last=True)
    with pytest.raises(ModeError):
        wrap_forward(net, tile=0)
