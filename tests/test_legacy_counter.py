"""The NTIRE 2022 counter (macs_legacy, activations, conv) against the organizers' own
``utils/model_summary.py``, imported from ../shared as an ORACLE only (skipped when absent)."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import REPO, shared_dir
from harness.measure.legacy_counter import count_legacy

KIT = "submissions/ntire2022"


def kit_dir() -> Path:
    path = shared_dir() / KIT
    if not (path / "utils" / "model_summary.py").is_file():
        pytest.skip(f"organizers' counter not found at {path}/utils/model_summary.py (set ESR_SHARED)")
    return path


def load_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def oracle():
    return load_file(kit_dir() / "utils" / "model_summary.py", "ntire2022_model_summary_oracle")


def organizers(oracle, model, input_res):
    """Their activations, conv count and FLOPs, as their test_demo.py calls them (call it last: it
    leaves attributes on the model; weight_norm models cannot be deep-copied)."""
    net = model
    with torch.no_grad():
        acts, conv = oracle.get_model_activation(net, input_res)
        flops = oracle.get_model_flops(net, input_res, False)
    return {"macs": int(flops), "activations": int(acts), "conv": int(conv)}


def ours(model, input_res):
    torch.manual_seed(1)
    r = count_legacy(model.eval(), torch.rand(1, *input_res))
    return {"macs": r["macs"], "activations": r["activations"], "conv": r["conv"]}, r


class Tokens(nn.Module):
    """conv 3->8, tokens (B, HW, 8), Linear 8->16 and 16->8 (3-D), Linear on 4-D, back to an image."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc1 = nn.Linear(8, 16)
        self.act = nn.GELU()  # not counted by the 2022 rules
        self.fc2 = nn.Linear(16, 8)
        self.fc4 = nn.Linear(8, 8)
        self.out = nn.Conv2d(8, 3, 1)

    def forward(self, x):
        f = self.conv(x)
        b, c, h, w = f.shape
        t = f.flatten(2).transpose(1, 2)  # (B, HW, C)
        t = self.fc2(self.act(self.fc1(t)))
        img = t.transpose(1, 2).reshape(b, c, h, w)
        img = self.fc4(img.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, H, W, C)
        return self.out(img)


class Repeated(nn.Module):
    """One conv called three times, a transposed conv, BN (affine), PReLU, ReLU6, Conv3d (not counted)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 6, 3, padding=1)
        self.body = nn.Conv2d(6, 6, 3, padding=1, groups=3)
        self.bn = nn.BatchNorm2d(6)
        self.act = nn.PReLU()
        self.act6 = nn.ReLU6()
        self.up = nn.ConvTranspose2d(6, 3, 4, stride=2, padding=1)
        self.c3d = nn.Conv3d(1, 1, 1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        f = self.head(x)
        for _ in range(3):
            f = self.act(self.body(f))
        f = self.act6(self.bn(f))
        y = self.up(f)
        y = y + self.c3d(y.unsqueeze(1)).squeeze(1)
        return y + self.fc(y.mean((2, 3)))[:, :1, None, None]


def test_tokens_official_rule_and_corrected_by_hand():
    h = w = 8
    n = h * w
    got, r = ours(Tokens(), (3, h, w))
    conv = 9 * 3 * 8 * n + 8 * 3 * n
    # official rule: in.shape[0] * in.shape[1] * out.shape[1]
    official_linear = 1 * n * n + 1 * n * n + 1 * h * h
    true_linear = n * 8 * 16 + n * 16 * 8 + n * 8 * 8
    assert r["parts"] == {"conv": conv, "linear": official_linear}
    assert r["macs"] == conv + official_linear
    assert r["macs_corrected"] == conv + true_linear
    assert r["linear_token_calls"] == {"fc1": 1, "fc2": 1, "fc4": 1}
    assert got["activations"] == 8 * n + 3 * n and got["conv"] == 2


def test_repeated_calls_transposed_bn_by_hand():
    h = w = 6
    n = h * w
    got, r = ours(Repeated(), (3, h, w))
    head, body, up = 9 * 3 * 6 * n, 9 * 6 * 2 * n, 16 * 6 * 3 * (4 * n)  # transposed: OUTPUT positions
    assert r["parts"] == {"conv": head + 3 * body + up, "activation": 3 * 6 * n + 6 * n,
                          "batchnorm": 2 * 6 * n, "linear": 3 * 2}
    assert r["macs_corrected"] == r["macs"] and r["linear_token_calls"] == {}
    assert got["conv"] == 5 and r["conv_modules"] == 3  # calls, not modules
    assert got["activations"] == 6 * n + 3 * 6 * n + 3 * 4 * n


@pytest.mark.parametrize("net,res", [(Tokens, (3, 8, 8)), (Repeated, (3, 6, 6))])
def test_synthetic_models_match_organizers_counter(oracle, net, res):
    torch.manual_seed(0)
    model = net().eval()
    got, _ = ours(model, res)
    assert got == organizers(oracle, model, res)


# (file, class, kwargs, published conv count or None): single-file 2022 submissions
SHARED = [
    ("team27_lwfanet.py", "LWFANet", {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 96, "num_block": 10}, 207),
    ("team20_mobilesr.py", "MobileSR", {}, 25),
    ("team42_rlcsr.py", "RLCSR", {"in_nc": 3, "nf": 32, "num_modules": 6, "out_nc": 3, "upscale": 4}, 113),
]


@pytest.mark.parametrize("file,cls,kwargs,published_conv", SHARED, ids=[s[0] for s in SHARED])
def test_shared_submissions_match_organizers_counter(oracle, file, cls, kwargs, published_conv):
    path = kit_dir() / "models" / file
    if "einops" in path.read_text():
        pytest.importorskip("einops", reason=f"{file} needs einops")
    module = load_file(path, f"ntire2022_oracle_{path.stem}")
    torch.manual_seed(0)
    model = getattr(module, cls)(**(kwargs or {})).eval()
    res = (3, 32, 32)  # the rules do not depend on the size; keep CI fast
    got, _ = ours(model, res)
    assert got == organizers(oracle, model, res)
    if published_conv is not None:
        assert got["conv"] == published_conv


def test_harness_never_imports_shared():
    pattern = re.compile(r"(shared/submissions|^\s*(from|import)\s+\S*model_summary|utils\.model_summary)", re.M)
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "harness").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
