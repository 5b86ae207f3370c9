"""Sidecar cards: parsing, errors, and an unmodified model file with only a sidecar running
through `esr run` exactly like an inline-declared entry."""
from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.card import CardError
from harness.cli import main as esr
from harness.submissions.discovery import discover, entries_of_file, read_sidecar, read_sidecar_entries

PLAIN = '''
import torch
from torch import nn


class PlainNet(nn.Module):
    """A team's file: plain PyTorch, no harness import."""

    def __init__(self, in_ch, upscale=4, nf=4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_ch, nf, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(nf, 3 * upscale * upscale, 3, padding=1))
        self.up = nn.PixelShuffle(upscale)

    def forward(self, x):
        return self.up(self.body(x))
'''

INLINE = PLAIN + '''

from harness.card import Entry

ENTRIES = [Entry(name="reference", model=PlainNet, args=[3], kwargs={"upscale": 4, "nf": 4}, scale=4,
                 input_range=1.0, checkpoint="reference.pth", state_key="params_ema")]
'''

SIDECAR = '''
class = "PlainNet"
args = [3]
kwargs = { upscale = 4, nf = 4 }
scale = 4
input_range = 1.0
checkpoint = "team09_PlainNet.pth"
state_key = "params_ema"
notes = "sent as is"
'''


def module_with():
    mod = types.ModuleType("esr_models.fake")
    exec(PLAIN, mod.__dict__)
    return mod


def test_flat_card_fields(tmp_path):
    path = tmp_path / "team09_PlainNet.toml"
    path.write_text(SIDECAR)
    entry = read_sidecar(path, module_with())
    assert entry.name == "team09_PlainNet" and entry.model.__name__ == "PlainNet"
    assert (entry.args, entry.kwargs, entry.scale, entry.input_range) == ([3], {"upscale": 4, "nf": 4}, 4, 1.0)
    assert (entry.checkpoint, entry.state_key, entry.notes, entry.source) == (
        "team09_PlainNet.pth", "params_ema", "sent as is", "sidecar")
    assert entry.file == str(tmp_path / "team09_PlainNet.py")


def test_entry_tables_give_several_entries(tmp_path):
    path = tmp_path / "team09_PlainNet.toml"
    path.write_text('[[entry]]\nname = "a"\nclass = "PlainNet"\nargs = [3]\nscale = 4\n'
                    '[[entry]]\nname = "b"\nclass = "PlainNet"\nargs = [3]\nkwargs = {nf = 8}\nscale = 4\n'
                    'key_map = {"module." = ""}\ndeploy = "fuse"\nrequirements = ["einops"]\n')
    a, b = read_sidecar_entries(path, module_with())
    assert (a.name, b.name, b.kwargs, b.key_map, b.deploy, b.requirements) == (
        "a", "b", {"nf": 8}, {"module.": ""}, "fuse", ["einops"])
    with pytest.raises(CardError, match="holds 2"):
        read_sidecar(path, module_with())


@pytest.mark.parametrize("text, message", [
    ('class = "PlainNet"\nscale = 4\ncolor = "red"\n', r"unknown card fields \['color'\]"),
    ('scale = 4\n', "the card needs 'class'"),
    ('class = "PlainNet"\n', "the card needs 'scale'"),
    ('class = "Missing"\nscale = 4\n', r"no class 'Missing'; classes defined there"),
    ('class = "PlainNet"\nscale = 4\ninput_range = 2\n', "input_range must be 1.0 or 255.0"),
    ('[[entry]]\nclass = "PlainNet"\nscale = 4\n[[entry]]\nclass = "PlainNet"\nscale = 2\n',
     "each \\[\\[entry\\]\\] needs its own name"),
])
def test_bad_cards_name_the_field(tmp_path, text, message):
    path = tmp_path / "team09_PlainNet.toml"
    path.write_text(text)
    with pytest.raises(CardError, match=message):
        read_sidecar_entries(path, module_with())


def test_bad_sidecar_is_a_card_error_problem(tmp_path):
    (tmp_path / "team09_PlainNet.py").write_text(PLAIN)
    (tmp_path / "team09_PlainNet.toml").write_text('class = "PlainNet"\n')
    entries, problem = entries_of_file(tmp_path / "team09_PlainNet.py")
    assert entries == [] and problem.status == "card_error"
    assert problem.error == ("team09_PlainNet: bad card: CardError: team09_PlainNet.toml: the card needs 'scale' "
                             "(for example scale = 4)")


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory) -> Path:
    from skimage import data, io

    folder = tmp_path_factory.mktemp("hr")
    for name, img in {"astronaut": data.astronaut()[100:164, 150:214], "coffee": data.coffee()[100:164, 200:264]}.items():
        io.imsave(folder / f"{name}.png", np.ascontiguousarray(img), check_contrast=False)
    return folder


def test_sidecar_entry_runs_like_an_inline_entry(tmp_path, hr_folder):
    """Same weights, same data: the two records differ only in the card's name, source, file and checkpoint."""
    models, zoo, out = tmp_path / "models", tmp_path / "zoo", tmp_path / "out"
    models.mkdir()
    zoo.mkdir()
    (models / "team09_PlainNet.py").write_text(PLAIN)
    (models / "team09_PlainNet.toml").write_text(SIDECAR)
    (models / "reference.py").write_text(INLINE)
    ns = {}
    exec(PLAIN, ns)
    torch.manual_seed(0)
    state = ns["PlainNet"](3).state_dict()
    torch.save({"params_ema": state}, zoo / "team09_PlainNet.pth")
    torch.save({"params_ema": state}, zoo / "reference.pth")
    code = esr(["run", "--models", str(models), "--zoo", str(zoo), "--out", str(out), "--data", str(hr_folder),
                "--input", "3x32x32", "--trials", "1", "--device", "cpu", "--threads", "1", "--quiet", "--strict"])
    assert code == 0
    team = json.loads((out / "records" / "team09_PlainNet.json").read_text())
    ref = json.loads((out / "records" / "reference.json").read_text())
    assert team["status"] == ref["status"] == "ok"
    assert set(team) == set(ref)
    assert set(team["metrics"]) == set(ref["metrics"])
    for key in ("params", "macs", "activations", "conv", "valid.psnr_rgb", "valid.psnr_y", "valid.ssim_rgb"):
        assert team["metrics"][key] == ref["metrics"][key], key
    assert team["raw"]["valid"]["psnr_rgb"] == ref["raw"]["valid"]["psnr_rgb"]
    assert team["metrics"]["params"] == sum(v.numel() for v in state.values())
    differing = {k for k in team["card"] if team["card"][k] != ref["card"][k]}
    assert differing == {"name", "source", "file", "checkpoint", "notes", "module"}
    assert (team["card"]["source"], ref["card"]["source"]) == ("sidecar", "inline")
    assert team["trained"] is ref["trained"] is True


def test_inferred_card_is_marked_and_printed_by_list(tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    (models / "team09_PlainNet.py").write_text(PLAIN.replace("def __init__(self, in_ch,", "def __init__(self, in_ch=3,"))
    catalog = discover(models)
    assert catalog.inferred == ["team09_PlainNet"]
    assert catalog.entries["team09_PlainNet"].source == "inferred"
    assert esr(["list", "--models", str(models), "--zoo", str(tmp_path)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps at the console width
    assert ("inferred card for team09_PlainNet: class PlainNet(), scale 4, input range 1, "
            "checkpoint team09_PlainNet.pth") in out
