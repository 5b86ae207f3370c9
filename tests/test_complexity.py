"""Complexity counters: hand-computed counts on small nets, the functional-conv cross-check,
non-mutation, and the published figures of the reference entries."""
from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.measure.complexity import explain_op, profile

REPO = Path(__file__).resolve().parents[1]
SHAPE = (1, 3, 16, 16)
HW = 16 * 16


class HandNet(nn.Module):
    """conv 3->8 (3x3), ReLU, grouped conv 8->4 (3x3, groups 2), LeakyReLU, conv 4->4 (1x1) twice, shuffle."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act1 = nn.ReLU()
        self.c2 = nn.Conv2d(8, 4, 3, padding=1, groups=2)
        self.act2 = nn.LeakyReLU(0.1)
        self.c3 = nn.Conv2d(4, 4, 1)
        self.up = nn.PixelShuffle(2)

    def forward(self, x):
        y = self.act2(self.c2(self.act1(self.c1(x))))
        return self.up(self.c3(self.c3(y)))


# by hand, per output position: kh*kw*cin*cout/groups
C1, C2, C3 = 9 * 3 * 8 * HW, 9 * 8 * 4 // 2 * HW, 4 * 4 * HW
HAND_MACS = C1 + C2 + 2 * C3
HAND_PARAMS = (3 * 8 * 9 + 8) + (4 * 4 * 9 + 4) + (4 * 4 + 4)


class FunctionalConv(nn.Module):
    """One nn.Conv2d and one F.conv2d with its own weight (a re-parameterised block's pattern)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.weight = nn.Parameter(torch.randn(8, 8, 3, 3) * 0.1)

    def forward(self, x):
        return F.conv2d(self.head(x), self.weight, padding=1)


class BnLinear(nn.Module):
    def __init__(self, affine=True):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 1, bias=False)
        self.bn = nn.BatchNorm2d(6, affine=affine)
        self.prelu = nn.PReLU()
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        y = self.prelu(self.bn(self.conv(x)))
        return self.fc(y.mean((2, 3)))


SEEN = []


class Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        SEEN.append((float(x.min()), float(x.max()), bool(torch.isfinite(x).all())))
        return self.conv(x)


class LazyFuse(nn.Module):
    """Folds its two parallel 3x3 branches into one on the first forward (lazy re-parameterisation)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 3, padding=1)
        self.b = nn.Conv2d(3, 3, 3, padding=1)
        self.fused = None

    def forward(self, x):
        if self.fused is None:
            with torch.no_grad():
                self.fused = nn.Conv2d(3, 3, 3, padding=1)
                self.fused.weight.copy_(self.a.weight + self.b.weight)
                self.fused.bias.copy_(self.a.bias + self.b.bias)
            del self.a, self.b
        return self.fused(x)


def test_hand_counts():
    torch.manual_seed(0)
    r = profile(HandNet(), input_shape=SHAPE)
    assert r["params"] == HAND_PARAMS == 392
    assert r["macs"] == HAND_MACS
    assert r["flop_counter_macs"] == HAND_MACS
    # legacy adds one per element of each ReLU-family module output
    assert r["macs_legacy"] == HAND_MACS + 8 * HW + 4 * HW
    assert r["macs_legacy_parts"] == {"conv": HAND_MACS, "activation": 12 * HW}
    assert r["activations"] == (8 + 4 + 4 + 4) * HW  # c3 is called twice: both outputs count
    assert r["conv"] == r["conv_calls"] == 4 and r["conv_modules"] == 3  # the organizers count calls
    assert r["counters_agree"] is True and r["flags"] == []
    assert r["input_shape"] == list(SHAPE)
    assert r["by_operator"] == {"conv": HAND_MACS}
    assert r["unsupported_ops"]["aten::pixel_shuffle"] == 1
    assert r["explanations"]["aten::pixel_shuffle"].startswith("does not count by definition")


def test_batchnorm_linear_legacy_rules():
    r = profile(BnLinear(), input_shape=(1, 3, 8, 8))
    parts = r["macs_legacy_parts"]
    assert parts["conv"] == 3 * 6 * 64
    assert parts["batchnorm"] == 2 * 6 * 64  # affine: two per element
    assert parts["activation"] == 6 * 64  # PReLU module
    assert parts["linear"] == 6 * 5  # one row of a 2-D input
    assert r["macs_legacy"] == sum(parts.values())
    assert r["macs"] == r["by_operator"]["conv"] + r["by_operator"]["linear"] + r["by_operator"]["batch_norm"]
    assert r["counters_agree"] is True
    assert profile(BnLinear(affine=False), input_shape=(1, 3, 8, 8))["macs_legacy_parts"]["batchnorm"] == 6 * 64


def test_functional_conv_is_counted_by_fvcore_and_flagged():
    r = profile(FunctionalConv(), input_shape=SHAPE)
    head, functional = 9 * 3 * 8 * HW, 9 * 8 * 8 * HW
    assert r["macs"] == head + functional
    assert r["flop_counter_macs"] == head + functional
    assert r["macs_legacy"] == head  # the hook counter never sees F.conv2d
    assert r["conv"] == 1 and r["activations"] == 8 * HW
    assert r["counters_agree"] is False
    assert any(f"misses {functional / 1e9:.4f} G" in f for f in r["flags"]), r["flags"]


def test_attention_disagreement_flagged():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            q = self.conv(x).flatten(2).transpose(1, 2).unsqueeze(1)  # 1x1xLx4
            return F.scaled_dot_product_attention(q, q, q)

    r = profile(Attn(), input_shape=(1, 3, 4, 4))
    assert r["flop_counter_macs"] > r["macs"]
    assert any(f.startswith("counters disagree") for f in r["flags"])
    assert r["counters_agree"] is False


def test_measuring_leaves_model_untouched():
    model = HandNet().train()
    keys = list(model.state_dict())
    values = {k: v.clone() for k, v in model.state_dict().items()}
    buffers = [n for n, _ in model.named_buffers()]
    profile(model, input_shape=SHAPE)
    assert model.training is True
    assert list(model.state_dict()) == keys
    assert all(torch.equal(values[k], v) for k, v in model.state_dict().items())
    assert [n for n, _ in model.named_buffers()] == buffers
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
        assert not hasattr(m, "total_ops") and not hasattr(m, "total_params")


def test_real_seeded_input_in_range():
    SEEN.clear()
    profile(Recorder(), input_shape=(1, 3, 32, 32), input_range=255.0)
    assert SEEN, "the model was never called"
    for lo, hi, finite in SEEN:
        assert finite and 0.0 <= lo < 1.0 and 250.0 < hi < 255.0
    first = SEEN[0]
    SEEN.clear()
    profile(Recorder(), input_shape=(1, 3, 32, 32), input_range=255.0)
    assert SEEN[0] == first  # seeded: same input every time


def test_lazy_reparameterisation_flagged_and_counted_settled():
    r = profile(LazyFuse(), input_shape=(1, 3, 8, 8))
    assert any("lazy re-parameterisation" in f for f in r["flags"])
    assert r["params"] == 3 * 3 * 9 + 3  # the settled (fused) model
    assert r["macs_legacy"] == r["macs"] == 27 * 3 * 64
    assert r["conv"] == 1


def test_explanations():
    assert explain_op("aten::add_").startswith("does not count")
    assert explain_op("aten::sigmoid").startswith("does not count")
    assert explain_op("aten::upsample_bicubic2d").startswith("does not count")
    assert explain_op("aten::scaled_dot_product_attention").startswith("hides real work")
    assert explain_op("prim::PythonOp.MyConv").startswith("custom autograd Function")
    assert explain_op("aten::frobnicate").startswith("unknown operator")


# ---- reference entries: the figures of the reference-entries issue (1x3x256x256) ----
TARGETS = {
    # file: params, macs G, legacy G, activations M, conv
    "imdn": (893_936, 58.4308, 58.5315, 154.1407, 43),
    "fmen": (341_066, 22.2800, 22.2800, 72.0896, 34),
    "rlfn": (317_218, 19.6749, 19.6953, 80.0452, 39),
    "span": (150_688, 9.8338, 9.8338, 41.6809, 22),
}


def reference_model(stem: str):
    path = REPO / "models" / f"{stem}.py"
    if not path.is_file():
        pytest.skip(f"reference model file {path} not written yet")
    spec = importlib.util.spec_from_file_location(f"_ref_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entry = module.ENTRIES[0]
    model = entry.build()
    if entry.deploy:
        getattr(model, entry.deploy)()
    return model.eval(), entry


@pytest.mark.parametrize("stem", sorted(TARGETS))
def test_reference_entry_counts(stem):
    model, entry = reference_model(stem)
    params, macs, legacy, acts, conv = TARGETS[stem]
    before = copy.deepcopy(model.state_dict())
    r = profile(model, input_shape=(1, 3, 256, 256), input_range=entry.input_range)
    got = (r["params"], round(r["macs"] / 1e9, 4), round(r["macs_legacy"] / 1e9, 4),
           round(r["activations"] / 1e6, 4), r["conv"])
    assert got == (params, macs, legacy, acts, conv)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ---- esr profile ----
def test_esr_profile_json(tmp_path, capsys):
    import json

    from harness.cli import main
    from tests.tiny import entry_line, tiny_param_count, write_entries

    write_entries(tmp_path / "models", "tinyfile", entry_line("tiny"))
    code = main(["profile", "tiny", "--models", str(tmp_path / "models"), "--zoo", str(tmp_path),
                 "--input", "3x8x8", "--json"])
    assert code == 0
    r = json.loads(capsys.readouterr().out)
    assert r["entry"] == "tiny" and r["input_shape"] == [1, 3, 8, 8]
    assert r["params"] == tiny_param_count(4)
    assert r["macs"] == r["macs_legacy"] == r["flop_counter_macs"] == 8 * 8 * 9 * 3 * 48
    assert r["activations"] == 48 * 64 and r["conv"] == 1
    assert "aten::pixel_shuffle" in r["explanations"]


def test_esr_profile_table_and_unknown(tmp_path, capsys):
    from harness.cli import main
    from tests.tiny import entry_line, write_entries

    write_entries(tmp_path / "models", "tinyfile", entry_line("tiny"))
    assert main(["profile", "tiny", "--models", str(tmp_path / "models"), "--input", "3x8x8"]) == 0
    out = capsys.readouterr().out
    assert "MACs" in out and "pixel_shuffle" in out and "0.0001" in out  # 82,944 MACs = 0.0001 G
    assert main(["profile", "tinny", "--models", str(tmp_path / "models")]) == 2
    assert "tiny" in capsys.readouterr().out
