"""`esr replay`: a tiny synthetic challenge folder replayed against a published table and the organizers' counters."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from harness.running.replay import join_team, replay  # noqa: E402

MODEL = '''
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, dim=4, upscale=4):
        super().__init__()
        self.head = nn.Conv2d(3, dim, 3, padding=1)
        self.tail = nn.Conv2d(dim, 3 * upscale * upscale, 3, padding=1)
        self.up = nn.PixelShuffle(upscale)

    def forward(self, x):
        return self.up(self.tail(self.head(x)))
'''

# the organizers' counter, as an oracle of this synthetic challenge: params-style hooks on Conv2d
SUMMARY = '''
import torch


def get_model_activation(model, input_res):
    acts, convs = [0], [0]

    def hook(m, i, o):
        acts[0] += o.numel()
        convs[0] += 1
    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    model(torch.zeros(1, *input_res))
    for h in hs:
        h.remove()
    return acts[0], convs[0]


def get_model_flops(model, input_res, print_per_layer_stat=False):
    flops = [0]

    def hook(m, i, o):
        flops[0] += o.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1] + o.numel()
    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    model(torch.zeros(1, *input_res))
    for h in hs:
        h.remove()
    return flops[0]
'''

DEMO = '''
import os
import torch
from utils.model_summary import get_model_activation, get_model_flops
from utils import utils_image as util


def select_model(args, device):
    model_id = args.model_id
    if model_id == -1:
        # Tiny baseline
        from models.tiny_baseline import TinyNet
        name, data_range = f"{model_id:02}_Tiny", 1.0
        model = TinyNet(dim=4).eval().to(device)
        model.load_state_dict(torch.load(os.path.join('model_zoo', 'tiny.pth')), strict=True)
    elif model_id == 1:
        # Alpha Team
        from models.team01_alpha import TinyNet
        name, data_range = f"{model_id:02}_Alpha", 1.0
        model = TinyNet(dim=8)
        model.load_state_dict(torch.load('model_zoo/team01.pth'), strict=True)
    elif model_id == 2:
        # Beta Team
        from models.team02_beta import TinyNet
        name, data_range = f"{model_id:02}_Beta", 1.0
        model = TinyNet(dim=6)
        model.load_state_dict(torch.load('model_zoo/team02.pth'), strict=True)
    model.eval()
    tile = None
    return model, name, data_range, tile
'''


@pytest.fixture
def challenge(tmp_path) -> Path:
    root = tmp_path / "ntire_tiny"
    for sub in ("models", "utils", "model_zoo"):
        (root / sub).mkdir(parents=True)
    (root / "utils" / "__init__.py").write_text("")
    (root / "utils" / "model_summary.py").write_text(SUMMARY)
    ns: dict = {}
    exec(MODEL, ns)
    for stem, dim, ckpt in (("tiny_baseline", 4, "tiny.pth"), ("team01_alpha", 8, "team01.pth"),
                            ("team02_beta", 6, "team02.pth")):
        (root / "models" / f"{stem}.py").write_text(MODEL)
        state = ns["TinyNet"](dim=dim).state_dict()
        if stem == "team02_beta":  # a submission whose checkpoint does not fit its model
            state = {("module." + k if k.startswith("head") else k): v for k, v in state.items()}
            state["extra.weight"] = torch.zeros(1)
        torch.save(state, root / "model_zoo" / ckpt)
    (root / "test_demo.py").write_text(DEMO)
    return root


def published_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["team", "params_m", "flops_g", "acts_m", "conv"])
        w.writeheader()
        w.writerows(rows)
    return path


def test_join_by_team_name():
    teams = {"team01_a": "NKU-ESR Team", "rfdn_baseline": "RFDN baseline, AIM 2020 Efficient SR Challenge winner",
             "imdn_baseline": "IMDN baseline", "team31": "Alpan Team", "team36": "imglhl"}
    assert join_team("NKU-ESR", teams) == "team01_a"
    assert join_team("RFDN AIM2020 Winner", teams) == "rfdn_baseline"
    assert join_team("IMDN_baseline", teams) == "imdn_baseline"
    assert join_team("Alpan Team", teams) == "team31" and join_team("imglhl", teams) == "team36"
    assert join_team("Nobody", teams) is None


def test_replay_against_a_published_table_and_the_organizers_counters(challenge, tmp_path):
    params = 3 * 8 * 9 + 8 + 8 * 48 * 9 + 48
    table = published_csv(tmp_path / "published.csv", [
        {"team": "Alpha", "params_m": f"{params / 1e6:.3f}", "flops_g": "9.99", "acts_m": "3.67", "conv": "2"},
        {"team": "Tiny_baseline", "params_m": f"{(3 * 4 * 9 + 4 + 4 * 48 * 9 + 48) / 1e6:.3f}", "flops_g": "0.12",
         "acts_m": "3.41", "conv": "2"},
        {"team": "Beta", "params_m": "0.100", "flops_g": "1.00", "acts_m": "1.00", "conv": "1"},
        {"team": "Gamma", "params_m": "0.100", "flops_g": "1.00", "acts_m": "1.00", "conv": "1"},
    ])
    out = tmp_path / "out"
    result = replay(challenge, out, published=table, oracle=True, python=sys.executable, 
                    log=lambda m: None)
    rows = {r.team: r for r in result["rows"]}
    alpha = rows["Alpha"]
    assert alpha.entry == "team01_alpha" and alpha.status == "ok"
    assert alpha.ours["params"] == params == alpha.counter["params"]  # the organizers' counter, run on our model
    assert alpha.counter["conv"] == 2 and alpha.counter["acts"] == 256 * 256 * (8 + 48) == alpha.ours["acts"]
    assert alpha.match == {"params": True, "flops": False, "acts": True, "conv": True}
    assert alpha.why == ("flops ours 0.24 vs published 9.99 (the organizers' counter on this code agrees with ours: "
                         "published artefact or other code)")
    assert rows["Tiny_baseline"].entry == "tiny_baseline" and rows["Tiny_baseline"].match["params"]
    beta = rows["Beta"]
    assert beta.status == "load_error" and beta.why.startswith("submission defect: the checkpoint does not fit")
    assert "extra.weight" in beta.why
    assert rows["Gamma"].status == "no code"
    text = (out / "replay.md").read_text()
    assert "| -1 |" in text and "| static | tiny_baseline |" in text
    assert (out / "replay.csv").is_file()
    assert not (challenge / "models" / "team01_alpha.toml").exists()  # the source folder is never written


def test_oracle_comparison_explains_each_difference():
    from harness.running.replay import Row, compare_oracle

    row = Row(team="t", ours={"params": 10, "flops": 100, "acts": 5, "conv": 2})
    compare_oracle(row, {"params": 10, "macs": 100, "activations": 5, "conv": 2}, "macs")
    assert row.all_match and row.why == "equal to the organizers' counters on the same input"
    # a model whose work depends on the input values: their own input gives other counts, ours gives ours
    row = Row(team="t", ours={"params": 10, "flops": 100, "acts": 5, "conv": 2})
    compare_oracle(row, {"params": 10, "macs": 100, "activations": 7, "conv": 2,
                         "same_input": {"macs": 100, "activations": 5, "conv": 2}}, "macs")
    assert row.all_match and row.oracle["acts"] == 7
    assert "depends on the input values" in row.why and "acts 7" in row.why
    # a model that samples in its forward: two counts on the same input differ, and that is said
    row = Row(team="t", ours={"params": 10, "flops": 95, "acts": 5, "conv": 2})
    compare_oracle(row, {"params": 10, "macs": 100, "activations": 5, "conv": 2,
                         "same_input": {"macs": 100, "activations": 5, "conv": 2},
                         "same_input_again": {"macs": 104, "activations": 5, "conv": 2}}, "macs")
    assert not row.all_match and row.why.startswith("submission property: the model draws random numbers")
    assert "flops 100 then 104" in row.why and "ours flops 95" in row.why
    row = Row(team="t", ours={"params": 10, "flops": 130, "acts": 5, "conv": 2})
    compare_oracle(row, {"params": 10, "macs": 100, "activations": 5, "conv": 2,
                         "fvcore_unsupported": {"aten::_convolution_mode": 80}}, "macs")
    assert not row.all_match and row.why == ("oracle artefact?: fvcore skips aten::_convolution_mode; "
                                             "ours differs by +30 MACs")
    row = Row(team="t", ours={"params": 11, "flops": 100, "acts": 5, "conv": 2})
    compare_oracle(row, {"params": 10, "macs": 100, "activations": 5, "conv": 2}, "macs")
    assert row.why == "ours wrong: params ours 11 vs 10"


def test_official_artefacts_keep_the_corrected_figure():
    from harness.running.replay import Row, note_artefacts

    row = Row(team="t", ours={"params": 10, "flops": 1_590_000_000, "acts": 5, "conv": 2})
    note_artefacts(row, {"macs_corrected": 9_110_000_000, "artefacts": [
        {"op": "prim::PythonOp.FastOp", "calls": 4, "hidden_macs": 7_520_000_000}]}, "macs")
    assert row.corrected == 9_110_000_000 and row.artefacts == "prim::PythonOp.FastOp x4 hides 7.52 G"
    same = Row(team="t", ours={"flops": 5})
    note_artefacts(same, {"macs_corrected": 5, "artefacts": []}, "macs")
    assert same.corrected is None and same.artefacts == ""
