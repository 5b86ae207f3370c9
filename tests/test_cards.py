"""`esr cards from-test-demo`: an NTIRE-style select_model chain (written here) becomes sidecar cards."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.submissions.cards_convert import card_toml, convert, toml_value, write_cards
from harness.cli import main as esr

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

TEST_DEMO = '''
import os
import torch
from collections import OrderedDict


def select_model(args, device):
    # Model ID is assigned according to the order of the submissions.
    model_id = args.model_id
    if model_id == 0:
        from models.team00_Base import BaseNet
        name, data_range = f"{model_id:02}_Base_baseline", 255.0
        model_path = os.path.join('model_zoo', 'team00_base.pth')
        model = BaseNet()
        model.load_state_dict(torch.load(model_path), strict=True)
    elif model_id == 1:
        from models.team01_Pos import PosNet
        name, data_range = f"{model_id:02}_Pos", 1.0
        model_path = os.path.join('model_zoo', 'team01_pos.pth')
        model = PosNet(3, 3, upscale=4, feature_channels=28)
        model.load_state_dict(torch.load(model_path)['params_ema'], strict=True)
    elif model_id == 2:
        from models.team02_Kw import KwNet as Net
        name, data_range = f"{model_id:02}_Kw", 1.0
        model_path = os.path.join('model_zoo', 'team02_kw.pth')
        model = Net(num_feat=32, num_block=[2, 2], act='gelu', upscale=4)
        state_dict = torch.load(model_path, map_location='cpu')['params']
        state_dict = {k.replace('module.', ''): v for k, v in state_dict.items()}
        model.load_state_dict(state_dict, strict=False)
    elif model_id == 3:
        from models.team03_Loop import LoopNet
        name, data_range = f"{model_id:02}_Loop", 255.0
        model_path = os.path.join('model_zoo', 'team03_loop.pth')
        model = LoopNet(upscale=4)
        checkpoint = torch.load(model_path)
        new_state = OrderedDict()
        for k, v in checkpoint.items():
            new_state[k[7:]] = v
        model.load_state_dict(new_state, strict=True)
        model.switch_to_deploy()
    elif model_id == 4:
        from models.team04_Two import TwoNet
        name, data_range = f"{model_id:02}_Two_small", 1.0
        model = TwoNet(dim=16)
        model.load_state_dict(torch.load('model_zoo/team04_two_s.pth'), strict=True)
    elif model_id == 5:
        from models.team04_Two import TwoNet
        name, data_range = f"{model_id:02}_Two_large", 1.0
        model = TwoNet(dim=48)
        model.load_state_dict(torch.load('model_zoo/team04_two_l.pth'), strict=True)
    elif model_id == 6:
        from models.team06_Cfg import CfgNet
        name, data_range = f"{model_id:02}_Cfg", 1.0
        model = CfgNet(**cfg)
        model.load_state_dict(torch.load('model_zoo/team06.pth'), strict=True)
    elif model_id == 7:
        from models.team07_Pkg.arch import PkgNet
        name, data_range = f"{model_id:02}_Pkg", 1.0
        model = PkgNet()
    elif model_id == 8:
        from models.team08_Odd import OddNet
        name, data_range = f"{model_id:02}_Odd", 2.0
        model = OddNet()
    else:
        raise NotImplementedError(f"Model {model_id} is not implemented.")

    model.eval()
    tile = None
    for k, v in model.named_parameters():
        v.requires_grad = False
    model = model.to(device)
    return model, name, data_range, tile
'''

EXPECTED = {
    "team00_Base": [{
        "name": "team00_Base", "class": "BaseNet", "scale": 4, "input_range": 255.0, "checkpoint": "team00_base.pth",
        "notes": "converted from test_demo.py model_id 0 (00_Base_baseline)"}],
    "team01_Pos": [{
        "name": "team01_Pos", "class": "PosNet", "args": [3, 3], "kwargs": {"upscale": 4, "feature_channels": 28},
        "scale": 4, "input_range": 1.0, "checkpoint": "team01_pos.pth", "state_key": "params_ema",
        "notes": "converted from test_demo.py model_id 1 (01_Pos)"}],
    "team02_Kw": [{
        "name": "team02_Kw", "class": "KwNet", "kwargs": {"num_feat": 32, "num_block": [2, 2], "act": "gelu", "upscale": 4},
        "scale": 4, "input_range": 1.0, "checkpoint": "team02_kw.pth", "state_key": "params",
        "key_map": {"module.": ""},
        "notes": "converted from test_demo.py model_id 2 (02_Kw); test_demo loaded it with strict=False; "
                 "the harness loads strictly: run esr check"}],
    "team03_Loop": [{
        "name": "team03_Loop", "class": "LoopNet", "kwargs": {"upscale": 4}, "scale": 4, "input_range": 255.0,
        "checkpoint": "team03_loop.pth", "key_map": {"module.": ""}, "deploy": "switch_to_deploy",
        "notes": "converted from test_demo.py model_id 3 (03_Loop)"}],
    "team07_Pkg": [{
        "name": "team07_Pkg", "class": "PkgNet", "module": "team07_Pkg.arch", "scale": 4, "input_range": 1.0,
        "notes": "converted from test_demo.py model_id 7 (07_Pkg); the branch loads no checkpoint"}],
    "team04_Two": [
        {"name": "team04_Two_id04", "class": "TwoNet", "kwargs": {"dim": 16}, "scale": 4, "input_range": 1.0,
         "checkpoint": "team04_two_s.pth", "notes": "converted from test_demo.py model_id 4 (04_Two_small)"},
        {"name": "team04_Two_id05", "class": "TwoNet", "kwargs": {"dim": 48}, "scale": 4, "input_range": 1.0,
         "checkpoint": "team04_two_l.pth", "notes": "converted from test_demo.py model_id 5 (05_Two_large)"},
    ],
}


@pytest.fixture
def demo(tmp_path) -> Path:
    path = tmp_path / "test_demo.py"
    path.write_text(TEST_DEMO)
    return path


def lineno(text: str) -> int:
    """1-based line of the first line of TEST_DEMO containing ``text``."""
    return next(i for i, ln in enumerate(TEST_DEMO.splitlines(), 1) if text in ln)


def read_card(path: Path) -> list[dict]:
    data = tomllib.loads(path.read_text())
    return data["entry"] if "entry" in data else [data]


def test_convert_understands_each_branch_form(demo):
    conv = convert(demo, scale=4)
    assert conv.cards == EXPECTED
    assert conv.skipped == [
        (f"model_id 6 (line {lineno('model_id == 6')})", f"line {lineno('CfgNet(**cfg)')}: constructor called with **cfg"),
        (f"model_id 8 (line {lineno('model_id == 8')})", "data_range is 2.0, not 1.0 or 255.0"),
    ]
    assert conv.warnings == [
        "model_id 0 (team00_Base): no scale argument; assumed scale 4",
        "model_id 2 (team02_Kw): loaded with strict=False in test_demo; the harness loads strictly (run esr check)",
        "model_id 4 (team04_Two): no scale argument; assumed scale 4",
        "model_id 5 (team04_Two): no scale argument; assumed scale 4",
        "model_id 7 (team07_Pkg): no scale argument; assumed scale 4",
        "model_id 7 (team07_Pkg): loads no checkpoint; measured untrained",
    ]


def test_written_cards_round_trip_through_toml(demo, tmp_path):
    written, kept = write_cards(convert(demo), tmp_path / "cards")
    assert sorted(p.name for p in written) == sorted(f"{stem}.toml" for stem in EXPECTED) and kept == []
    for stem, cards in EXPECTED.items():
        assert read_card(tmp_path / "cards" / f"{stem}.toml") == cards
    again, kept = write_cards(convert(demo), tmp_path / "cards")
    assert again == [] and len(kept) == len(EXPECTED)  # existing cards are kept without --force


def test_cards_are_read_by_discovery(demo, tmp_path):
    """The converted cards declare entries once the teams' files sit beside them."""
    from harness.submissions.discovery import discover

    models = tmp_path / "models"
    models.mkdir()
    write_cards(convert(demo), models)
    classes = {"team01_Pos": "PosNet", "team02_Kw": "KwNet", "team04_Two": "TwoNet"}
    for stem, cls in classes.items():
        (models / f"{stem}.py").write_text(f"from torch import nn\n\n\nclass {cls}(nn.Module):\n"
                                           f"    def __init__(self, *a, **k):\n        super().__init__()\n")
    for stem in ("team00_Base", "team03_Loop", "team07_Pkg"):
        (models / f"{stem}.toml").unlink()
    catalog = discover(models)
    assert catalog.names() == ["team01_Pos", "team02_Kw", "team04_Two_id04", "team04_Two_id05"]
    pos = catalog.entries["team01_Pos"]
    assert (pos.args, pos.kwargs, pos.state_key, pos.source) == ([3, 3], {"upscale": 4, "feature_channels": 28},
                                                                 "params_ema", "sidecar")
    kw = catalog.entries["team02_Kw"]
    assert (kw.key_map, kw.state_key, kw.input_range) == ({"module.": ""}, "params", 1.0)
    assert catalog.entries["team04_Two_id05"].kwargs == {"dim": 48}


def test_cli_writes_cards_and_lists_what_it_did_not_understand(demo, tmp_path, capsys):
    out = tmp_path / "cards"
    assert esr(["cards", "from-test-demo", str(demo), "--out", str(out), "--no-trace"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"wrote {out / 'team04_Two.toml'} (2 entries)" in lines
    assert (f"✗ not converted: model_id 6 (line {lineno('model_id == 6')}): line {lineno('CfgNet(**cfg)')}: "
            f"constructor called with **cfg") in lines
    assert lines[-1] == "7 branches converted into 6 cards (7 static, 0 traced), 2 not understood"
    assert esr(["cards", "from-test-demo", str(tmp_path / "absent.py")]) == 2


def test_default_out_is_models_beside_test_demo(demo):
    assert esr(["cards", "from-test-demo", str(demo), "--no-trace"]) == 0
    assert (demo.parent / "models" / "team01_Pos.toml").is_file()


def test_a_file_without_a_chain_is_reported(tmp_path):
    path = tmp_path / "test_demo.py"
    path.write_text("def select_model(args, device):\n    return None\n")
    conv = convert(path)
    assert conv.cards == {} and conv.skipped == [("select_model", "no `if model_id == N:` chain found")]


def test_toml_values():
    assert toml_value({"a.b": [1, 2.5, True, "x\"y"]}) == '{"a.b" = [1, 2.5, true, "x\\"y"]}'
    text = card_toml([{"name": "n", "class": "C", "scale": 2, "input_range": 1.0}])
    assert tomllib.loads(text) == {"name": "n", "class": "C", "scale": 2, "input_range": 1.0}
    assert textwrap.dedent(text).startswith("# sidecar card written by")
