"""Work fvcore does not see (issue 13) and models that cannot be deep-copied (issue 12): the
official-convention value and the corrected one, each asserted by hand arithmetic."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.measure.complexity import profile
from harness.measure.timing import state_fingerprint

H = W = 8
N = H * W


class Square(torch.autograd.Function):
    """A custom autograd Function running a 3x3 conv 4->4 inside: fvcore sees prim::PythonOp."""

    @staticmethod
    def forward(ctx, x, weight):
        return F.conv2d(x, weight, padding=1)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class CustomFunction(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 4, 1)
        self.weight = nn.Parameter(torch.randn(4, 4, 3, 3) * 0.1)

    def forward(self, x):
        return Square.apply(self.head(x), self.weight)


class SamePadding(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding="same")
        self.b = nn.Conv2d(6, 6, 5, padding="same", groups=2)
        self.c = nn.Conv2d(6, 3, 3, padding=1)

    def forward(self, x):
        return self.c(self.b(self.a(x)))


class TokenLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.fc = nn.Linear(8, 12)

    def forward(self, x):
        t = self.conv(x).flatten(2).transpose(1, 2)  # (1, N, 8)
        return self.fc(t)


@torch.library.custom_op("esrtest::opaque_mm", mutates_args=())
def opaque_mm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x @ w


@opaque_mm.register_fake
def _(x, w):
    return x.new_empty(x.shape[0], w.shape[1])


class Opaque(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1)
        self.w = nn.Parameter(torch.randn(5, 7))

    def forward(self, x):
        f = self.conv(x)
        return opaque_mm(f.flatten(2).transpose(1, 2)[0], self.w)


class Unfold(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 27))

    def forward(self, x):
        cols = F.unfold(x, 3, padding=1)  # (1, 27, N): im2col, a copy
        return (self.w @ cols[0]).reshape(1, 4, H, W)


class WeightNormed(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.utils.weight_norm(nn.Conv2d(3, 6, 3, padding=1))
        self.act = nn.ReLU()
        self.b = nn.utils.weight_norm(nn.Conv2d(6, 3, 1))

    def forward(self, x):
        return self.b(self.act(self.a(x)))


def run(model):
    torch.manual_seed(0)
    return profile(model.eval(), input_shape=(1, 3, H, W))


def artefact(r, prefix):
    found = [a for a in r["artefacts"] if a["op"].startswith(prefix)]
    assert len(found) == 1, r["artefacts"]
    return found[0]


def test_custom_autograd_function_hidden_macs():
    r = run(CustomFunction())
    head, inside = 3 * 4 * N, 9 * 4 * 4 * N
    assert r["macs"] == head  # fvcore, as the organizers ran it
    assert r["macs_corrected"] == head + inside
    a = artefact(r, "prim::PythonOp")
    assert a["op"] == "prim::PythonOp.Square" and a["calls"] == 1 and a["hidden_macs"] == inside
    assert any("fvcore (official convention) misses MACs" in f for f in r["flags"])


def test_same_padding_conv_hidden_macs():
    r = run(SamePadding())
    a_macs, b_macs, c_macs = 9 * 3 * 6 * N, 25 * 3 * 6 * N, 9 * 6 * 3 * N
    assert r["macs"] == c_macs
    assert r["macs_corrected"] == a_macs + b_macs + c_macs
    a = artefact(r, "aten::_convolution_mode")
    assert a["calls"] == 2 and a["hidden_macs"] == a_macs + b_macs
    # the 2022 counter hooks modules: it sees all three
    assert r["macs_legacy"] == r["macs_legacy_corrected"] == a_macs + b_macs + c_macs
    assert r["conv"] == 3 and r["activations"] == (6 + 6 + 3) * N


def test_linear_on_tokens_official_and_corrected():
    r = run(TokenLinear())
    conv = 3 * 8 * N
    assert r["macs"] == r["macs_corrected"] == conv + N * 8 * 12  # fvcore counts Linear right
    assert r["macs_legacy"] == conv + 1 * N * N  # organizers' rule: in[0] * in[1] * out[1]
    assert r["macs_legacy_corrected"] == conv + N * 8 * 12
    assert r["macs_legacy_parts"] == {"conv": conv, "linear": N * N}
    assert any("nn.Linear rule is wrong on token" in f and "fc x1" in f for f in r["flags"])


def test_opaque_custom_op_hidden_macs():
    r = run(Opaque())
    conv, mm = 3 * 5 * N, N * 5 * 7
    assert r["macs"] == conv
    assert r["macs_corrected"] == conv + mm
    a = artefact(r, "esrtest::opaque_mm")
    assert a["calls"] == 1 and a["hidden_macs"] == mm


def test_im2col_is_named_and_hides_nothing():
    r = run(Unfold())
    assert r["macs"] == r["macs_corrected"] == 4 * 27 * N  # the matmul after unfold is counted
    a = artefact(r, "aten::im2col")
    assert a["hidden_macs"] == 0 and a["calls"] == 1


def test_weight_norm_model_is_counted_and_left_unchanged():
    torch.manual_seed(0)
    model = WeightNormed().eval()
    with pytest.raises(RuntimeError):
        copy.deepcopy(model)
    before = state_fingerprint(model)
    hooks = {k: (len(m._forward_hooks), len(m._forward_pre_hooks)) for k, m in model.named_modules()}
    x = torch.rand(1, 3, H, W)
    out_before = model(x).detach()  # with autograd on, as after construction: still not deep-copyable
    r = profile(model, input_shape=(1, 3, H, W))
    assert r["counted_on"] == "original"
    assert r["macs"] == r["macs_legacy"] - 6 * N == 9 * 3 * 6 * N + 6 * 3 * N
    assert r["activations"] == 9 * N and r["conv"] == 2
    assert r["params"] == sum(p.numel() for p in model.parameters())
    assert state_fingerprint(model) == before
    assert {k: (len(m._forward_hooks), len(m._forward_pre_hooks)) for k, m in model.named_modules()} == hooks
    assert not model.training
    with torch.no_grad():
        assert torch.equal(model(x), out_before)
    assert any("cannot be deep-copied" in f for f in r["flags"])


def test_run_table_marks_corrected_values_and_missing_complexity():
    from harness.running.summary import markdown, table_rows

    records = [
        {"entry": "skewed", "status": "ok", "trained": True, "metrics": {
            "params": 10, "macs": 1_590_000_000, "macs_corrected": 9_110_000_000,
            "macs_legacy": 2_000_000_000, "macs_legacy_corrected": 2_000_000_000, "activations": 1, "conv": 1}},
        {"entry": "blind", "status": "ok", "trained": True, "metrics": {"params": 10},
         "complexity": {"error": "trace failed"}},
    ]
    headers, rows = table_rows(records)
    macs, legacy = headers.index("MACs (G)"), headers.index("MACs legacy (G)")
    assert rows[0][macs] == "1.5900\u2020" and rows[0][legacy] == "2.0000"
    assert rows[1][1] == "ok (no complexity)" and rows[1][macs] == "-"
    text = markdown(records)
    assert "skewed [\u2020 corrected]: macs 1.5900 G official, 9.1100 G corrected" in text


def test_esr_profile_counts_a_weight_norm_model(tmp_path, capsys):
    import json

    from harness.cli import main as esr

    models = tmp_path / "models"
    models.mkdir()
    (models / "wn.py").write_text(
        "import torch\nfrom torch import nn\nfrom harness.card import Entry\n\n"
        "class WN(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.a = nn.utils.weight_norm(nn.Conv2d(3, 48, 3, padding=1))\n"
        "        self.up = nn.PixelShuffle(4)\n"
        "    def forward(self, x):\n"
        "        return self.up(self.a(x))\n\n"
        "ENTRIES = [Entry(name='wn', model=WN, scale=4)]\n")
    code = esr(["profile", "wn", "--models", str(models), "--zoo", str(tmp_path), "--input", "3x8x8", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["macs"] == out["macs_legacy"] == 9 * 3 * 48 * N and out["conv"] == 1
    assert out["counted_on"] == "original"


@pytest.mark.parametrize("net,needle,fix", [
    (SamePadding, f"aten::_convolution_mode x2 (hides real work: a convolution with string padding ('same'/'valid') "
                  f"that fvcore 0.1.5 does not count; hides {(9 * 3 * 6 + 25 * 3 * 6) * N / 1e9:.4f} G MACs",
     f"official-convention (fvcore) {9 * 6 * 3 * N / 1e9:.4f} G, corrected {(9 * 3 * 6 + 25 * 3 * 6 + 9 * 6 * 3) * N / 1e9:.4f} G"),
    (CustomFunction, "prim::PythonOp.Square x1 (custom autograd Function", "corrected"),
    (Opaque, "esrtest::opaque_mm x1 (hides real work: an opaque custom operator", "corrected"),
    (TokenLinear, "nn.Linear rule is wrong on token input", "the record keeps both values"),
])
def test_esr_check_reports_each_artefact(net, needle, fix):
    from types import SimpleNamespace

    from harness.checks.estimate import measure_entry, operators_check

    torch.manual_seed(0)
    stats = measure_entry(net().eval(), SimpleNamespace(input_range=1.0, name="t"), (1, 3, H, W))
    result = operators_check(stats, "t")
    assert result.status == "warn"
    assert needle in result.message, result.message
    assert fix in result.fix, result.fix


def _fake_extension():
    """A module shaped like mamba_ssm's interface: a fast function (a custom Function standing for a
    CUDA kernel: it hides a 1x1 conv 4->4 as far as fvcore and the module hooks can tell, and raises
    on a CPU when ``cuda_only``) and its pure-PyTorch twin ``scan_ref`` running an nn.Conv2d."""
    import sys
    import types

    ext = types.ModuleType("esrtest_fake_ext")
    ext.cuda_only = False

    class Scan(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight):
            if ext.cuda_only:
                raise RuntimeError("esrtest_fake_ext: CUDA kernel not available")
            return torch.einsum("oi,bihw->bohw", weight[:, :, 0, 0], x)  # not a conv op: hidden from hooks

        @staticmethod
        def backward(ctx, grad):
            return grad, None

    def scan_fn(x, conv):
        return Scan.apply(x, conv.weight)

    def scan_ref(x, conv):
        return conv(x)

    scan_fn.__module__ = scan_ref.__module__ = ext.__name__
    ext.scan_fn, ext.scan_ref = scan_fn, scan_ref
    sys.modules[ext.__name__] = ext
    return ext


class FastPath(nn.Module):
    def __init__(self, ext):
        super().__init__()
        self.head = nn.Conv2d(3, 4, 1)
        self.mix = nn.Conv2d(4, 4, 1, bias=False)
        self.scan = ext.scan_fn

    def forward(self, x):
        return self.scan(self.head(x), self.mix)


def test_fast_path_with_pure_pytorch_twin_is_counted_on_the_twin():
    ext = _fake_extension()
    model = FastPath(ext).eval()
    head, mix = 3 * 4 * N, 4 * 4 * N
    r = run(model)  # the fast path runs here: official values see the custom Function only as PythonOp
    assert r["macs"] == head  # fvcore, as the organizers ran it
    assert r["macs_corrected"] == head + mix
    assert r["activations"] == 4 * N and r["activations_corrected"] == 8 * N
    assert r["conv"] == 1 and r["conv_corrected"] == 2
    assert model.scan is ext.scan_fn  # the swap is undone
    ext.cuda_only = True  # as on a CPU without the extension: measured on the twin, flagged
    r = run(model)
    assert r["macs"] == r["macs_corrected"] == head + mix and r["conv"] == 2
    assert any("fast path failed here" in f and "scan=scan_fn -> scan_ref" in f for f in r["flags"]), r["flags"]
    assert model.scan is ext.scan_fn
