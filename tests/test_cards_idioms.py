"""Every select_model idiom of the published NTIRE folders, each on a small synthetic chain.

Static idioms are read without running anything; the trace tests run a tiny synthetic
challenge folder (models/, model_zoo/, test_demo.py written here) in the trace subprocess.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.submissions.cards_convert import convert

torch = pytest.importorskip("torch")

HEAD = '''
import os
import importlib
import torch
from utils import utils_logger
from utils import utils_image as util


def select_model(args, device):
    model_id = args.model_id
'''

TAIL = '''
    else:
        raise NotImplementedError(f"Model {model_id} is not implemented.")
    model.eval()
    tile = 128 if model_id == -1 else None
    for _ in range(3):
        model(torch.zeros(1, 3, 8, 8))
    model = model.to(device)
    return model, name, data_range, tile
'''

BRANCHES = {
    "negative": '''
    if model_id == -1:
        # Baseline Team
        from models.team00_Base import Base
        name, data_range = f"{model_id:02}_Base", 1.0
        model = Base(upscale=4).eval().to(device)
        model.load_state_dict(torch.load('model_zoo/base.pth', map_location=device), strict=True)
''',
    "cuda_chain": '''
    elif model_id == 3:
        # Fast Team
        from models.team03_Fast import Fast
        name, data_range = f"{model_id:02}_Fast", 255.0
        model = Fast(dim=8).cuda()
        model = model.cuda()
        model.load_state_dict(torch.load(os.path.join('model_zoo', 'team03.pth')), strict=False)
        model = model.to(device).eval()
''',
    "importlib": '''
    elif model_id == 4:
        model_module = importlib.import_module(f'models.team{model_id:02}_Imp')
        name, data_range = f"{model_id:02}_Imp", 1.0
        model = getattr(model_module, f'ImpNet')(3, 3, upscale=4).eval().to(device)
        stat_dict = torch.load(os.path.join('model_zoo', f'team{model_id:02}_imp.pth'))['params_ema']
        model.load_state_dict(stat_dict, strict=True)
''',
    "in_tests": '''
    elif model_id == 5:
        from models.team05_Sel import SelNet
        name, data_range = f"{model_id:02}_Sel", 1.0
        model = SelNet()
        ckpt = torch.load('model_zoo/team05.pth')
        if 'params_ema' in ckpt:
            sd = ckpt['params_ema']
        elif 'params' in ckpt:
            sd = ckpt['params']
        else:
            sd = ckpt
        model.load_state_dict(sd, strict=True)
''',
    "get": '''
    elif model_id == 6:
        from models.team06_Get.arch import GetNet
        name, data_range = f"{model_id:02}_Get", 1.0
        model = GetNet()
        ckpt = torch.load('model_zoo/team06.pth')
        model.load_state_dict(ckpt.get('params', ckpt))
''',
    "organizer_file": '''
    elif model_id == 26:
        # xilinx Team
        from models.imdn_baseline import IMDN
        name, data_range = f"{model_id:02}_FromCheckpointName", 1.0
        model = IMDN(nb=7)
        model.load_state_dict(torch.load('model_zoo/team26_weird_ckpt_name.pth'), strict=True)
''',
    "modules_deploy": '''
    elif model_id == 7:
        from models.team07_Dep import DepNet
        name, data_range = f"{model_id:02}_Dep", 1.0
        model = DepNet()
        model.load_state_dict(torch.load('model_zoo/team07.pth')['params'], strict=True)
        for module in model.modules():
            if hasattr(module, 'switch_deploy'):
                module.switch_deploy()
''',
    "custom_loader": '''
    elif model_id == 8:
        from models.team08_Own import OwnNet
        name, data_range = f"{model_id:02}_Own", 1.0
        model = OwnNet()
        model.load_weights('model_zoo/team08.pth')
''',
    "pass": '''
    elif model_id == 9:
        # Missing Team
        pass
''',
}


@pytest.fixture
def demo(tmp_path) -> Path:
    path = tmp_path / "test_demo.py"
    path.write_text(HEAD + "".join(BRANCHES.values()) + TAIL)
    return path


def cards_by_name(conv) -> dict:
    return {c["name"]: c for cards in conv.cards.values() for c in cards}


def line_of(path: Path, text: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if text in ln)


def test_static_idioms(demo):
    conv = convert(demo)
    cards = cards_by_name(conv)
    assert sorted(cards) == ["team00_Base", "team03_Fast", "team04_Imp", "team05_Sel", "team06_Get",
                             "team07_Dep", "team26_imdn_baseline"]
    base = cards["team00_Base"]
    assert (base["class"], base["kwargs"], base["checkpoint"], base["team"]) == ("Base", {"upscale": 4}, "base.pth",
                                                                                "Baseline Team")
    assert "tile by tile (tile 128)" in base["notes"] and "warm-up passes" in base["notes"]
    fast = cards["team03_Fast"]
    assert (fast["kwargs"], fast["input_range"], fast["checkpoint"]) == ({"dim": 8}, 255.0, "team03.pth")
    assert "strict=False" in fast["notes"] and "tile" not in fast["notes"]
    imp = cards["team04_Imp"]
    assert (imp["class"], imp["args"], imp["kwargs"], imp["state_key"], imp["checkpoint"]) == (
        "ImpNet", [3, 3], {"upscale": 4}, "params_ema", "team04_imp.pth")
    sel = cards["team05_Sel"]  # checkpoint absent here: the choice is left to the harness's default unwrapping
    assert "state_key" not in sel and "['params_ema', 'params']" in sel["notes"]
    get = cards["team06_Get"]
    assert (get["module"], get["class"]) == ("team06_Get.arch", "GetNet")
    assert "'params'" in get["notes"]
    assert cards["team07_Dep"]["deploy"] == "modules:switch_deploy" and cards["team07_Dep"]["state_key"] == "params"
    organizer = cards["team26_imdn_baseline"]  # the team prefix comes from the id, never from the checkpoint
    assert (organizer["team"], organizer["kwargs"]) == ("xilinx Team", {"nb": 7})
    failed = {r.model_id: r.reason for r in conv.branches if r.how == "failed"}
    assert failed == {
        8: f"line {line_of(demo, 'load_weights')}: model.load_weights('model_zoo/team08.pth') (a custom loader; "
           f"static reading cannot tell which weights it loads)",
        9: f"line {line_of(demo, 'model_id == 9')}: the branch builds no model (pass)",
    }
    assert {r.how for r in conv.branches if r.model_id != 8 and r.model_id != 9} == {"static"}


def test_key_tests_are_resolved_from_the_checkpoint_keys(demo, tmp_path):
    zoo = tmp_path / "model_zoo"
    zoo.mkdir()
    torch.save({"params": {"w": torch.zeros(1)}, "optimizer": {}}, zoo / "team05.pth")
    torch.save({"w": torch.zeros(1)}, zoo / "team06.pth")
    cards = cards_by_name(convert(demo))
    assert cards["team05_Sel"]["state_key"] == "params"
    assert "state_key" not in cards["team06_Get"]  # .get('params', ckpt) on a bare state dict: the whole file
    assert "none, the whole checkpoint" in cards["team06_Get"]["notes"]


MODEL_FILE = '''
import torch
from torch import nn


class Inner(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


class OwnNet(nn.Module):
    def __init__(self, dim=4, upscale=4, act="relu"):
        super().__init__()
        self.head = nn.Conv2d(3, dim, 3, padding=1)
        self.body = Inner(dim)
        self.tail = nn.Conv2d(dim, 3 * upscale * upscale, 3, padding=1)
        self.up = nn.PixelShuffle(upscale)
        self.cuda()  # CUDA-bound constructor, as several real submissions have

    def forward(self, x):
        return self.up(self.tail(self.body(self.head(x))))

    def load_weights(self, path):
        ckpt = torch.load(path, map_location="cpu")
        if "params" in ckpt:
            ckpt = ckpt["params"]
        self.load_state_dict({"module." + k if False else k: v for k, v in ckpt.items()}, strict=True)
'''

TRACE_DEMO = '''
import os
import torch
from utils import utils_logger
from utils import utils_image as util


def select_model(args, device):
    model_id = args.model_id
    if model_id == 8:
        # Own Team
        from models.team08_Own import OwnNet
        name, data_range = f"{model_id:02}_Own", 1.0
        model = OwnNet(8, act="gelu").cuda()
        model.load_weights(os.path.join('model_zoo', 'team08.pth'))
    elif model_id == 9:
        from models.team08_Own import OwnNet
        name, data_range = f"{model_id:02}_Logged", 1.0
        util.mkdir("somewhere")
        model = OwnNet()
    else:
        raise NotImplementedError(f"Model {model_id} is not implemented.")
    model.eval()
    tile = None
    model = model.to(device)
    return model, name, data_range, tile
'''


@pytest.fixture
def challenge(tmp_path) -> Path:
    """A tiny challenge folder: organizers' utils/ without utils_image/utils_logger, one team file, a zoo."""
    root = tmp_path / "challenge"
    (root / "models").mkdir(parents=True)
    (root / "utils").mkdir()
    (root / "utils" / "__init__.py").write_text("")
    (root / "models" / "__init__.py").write_text("")
    (root / "models" / "team08_Own.py").write_text(MODEL_FILE)
    (root / "model_zoo").mkdir()
    import importlib.util

    spec = importlib.util.spec_from_file_location("own_for_test", root / "models" / "team08_Own.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.nn.Module.cuda, saved = (lambda self, *a, **k: self), torch.nn.Module.cuda
    try:
        net = mod.OwnNet(8, act="gelu")
    finally:
        torch.nn.Module.cuda = saved
    torch.save({"params": net.state_dict()}, root / "model_zoo" / "team08.pth")
    (root / "test_demo.py").write_text(TRACE_DEMO)
    return root


def test_a_custom_loader_is_traced_into_a_card(challenge):
    conv = convert(challenge / "test_demo.py", trace=True, timeout=120)
    card = cards_by_name(conv)["team08_Own"]
    assert (card["class"], card["kwargs"], card["checkpoint"], card["state_key"], card["team"]) == (
        "OwnNet", {"dim": 8, "act": "gelu"}, "team08.pth", "params", "Own Team")
    assert "by tracing select_model" in card["notes"]
    assert "CUDA calls neutralised while tracing (Module.cuda x2)" in card["notes"]
    assert "utils.utils_logger" in card["notes"] and "utils.utils_image" in card["notes"]
    hows = {r.model_id: (r.how, r.reason) for r in conv.branches}
    assert hows[8] == ("traced", "")
    # model_id 9 really uses a stubbed module: the trace fails naming the module, the attribute and the line
    how, reason = hows[9]
    assert how == "failed"
    assert "static: line" in reason and "no model constructed" not in reason
    line = next(i for i, ln in enumerate(TRACE_DEMO.splitlines(), 1) if "util.mkdir" in ln)
    assert (f"traced: select_model(9) raised at line {line} of test_demo.py: StubUsed: "
            f"utils.utils_image.mkdir was used, but utils.utils_image is a stub") in reason


def test_traced_card_builds_and_loads_with_the_harness(challenge):
    """The traced card, read by discovery, builds the same model and loads the checkpoint strictly."""
    from harness.submissions.cards_convert import write_cards
    from harness.submissions.checkpoint import load_entry_checkpoint
    from harness.submissions.discovery import discover

    conv = convert(challenge / "test_demo.py", trace=True, timeout=120)
    out = challenge / "cards"
    (out).mkdir()
    write_cards(conv, out)
    (out / "team08_Own.py").write_text((challenge / "models" / "team08_Own.py").read_text())
    entry = discover(out).entries["team08_Own"]
    torch.nn.Module.cuda, saved = (lambda self, *a, **k: self), torch.nn.Module.cuda
    try:
        model = entry.build()
    finally:
        torch.nn.Module.cuda = saved
    info = load_entry_checkpoint(model, entry, challenge / "model_zoo")
    assert info.trained and sum(p.numel() for p in model.parameters()) == sum(
        t.numel() for t in torch.load(challenge / "model_zoo" / "team08.pth")["params"].values())


def test_cli_says_per_branch_how_it_was_converted(demo, capsys):
    from harness.cli import main as esr

    assert esr(["cards", "from-test-demo", str(demo), "--out", str(demo.parent / "cards"), "--no-trace"]) == 0
    out = capsys.readouterr().out
    assert f"  model_id 4 (line {line_of(demo, 'model_id == 4')}): static -> team04_Imp" in out
    assert "7 branches converted into 7 cards (7 static, 0 traced), 2 not understood" in out


def test_shared_ntire_chains_convert_without_failures():
    """The published folders (when present): every branch with a model converts statically or by trace."""
    from conftest import shared_dir

    shared = shared_dir() / "submissions"
    if not (shared / "ntire2022" / "test_demo.py").is_file():
        pytest.skip("../shared/submissions is absent")
    c22 = convert(shared / "ntire2022" / "test_demo.py")
    failed = sorted(r.model_id for r in c22.branches if r.how == "failed")
    assert failed == [7, 21, 32, 34, 41]  # `pass` branches (no code was submitted); 34 builds through a factory
    names = {c["name"] for cards in c22.cards.values() for c in cards}
    assert len(names) == 41 and {"imdn_baseline", "rfdn_baseline", "team26_imdn_baseline"} <= names
    assert cards_by_name(c22)["team09_imdtn"]["module"] == "team09_imdtn.architecture"
    c25 = convert(shared / "ntire2025" / "test_demo.py")
    failed = {r.model_id: r.reason for r in c25.branches if r.how == "failed"}
    assert sorted(failed) == [1, 40]  # `pass`, and a custom loader that only a trace can read
    assert cards_by_name(c25)["team24_SPANF"]["kwargs"] == {"upscale": 4, "feature_channels": 32}


def test_shared_factory_branch_is_traced(tmp_path):
    """NTIRE 2022 team 34 builds through ``make_model(1)``: the trace names the class and its argument."""
    import shutil

    from conftest import shared_dir

    src = shared_dir() / "submissions" / "ntire2022"
    if not (src / "test_demo.py").is_file():
        pytest.skip("../shared/submissions is absent")
    root = tmp_path / "ntire2022"
    (root / "models").mkdir(parents=True)
    shutil.copy(src / "test_demo.py", root)
    shutil.copytree(src / "utils", root / "utils")
    shutil.copy(src / "models" / "team34_esan.py", root / "models")
    (root / "model_zoo").symlink_to(src / "model_zoo")
    from harness.submissions.trace_chain import trace

    got = trace(root / "test_demo.py", 34, timeout=120)
    assert (got["module"], got["class"], got["args"], got["kwargs"]) == ("models.team34_esan", "ESAN", [], {"level": 1})
    assert got["load"] == {"path": "model_zoo/team34_esan.pt", "state_key": None, "key_map": {}, "strict": True}
    assert got["stubs"] == ["utils.utils_logger", "utils.utils_image"]
