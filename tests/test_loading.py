"""Checkpoint loading: weights_only, wrappers, prefixes, strict keys."""
from __future__ import annotations

import collections

import pytest
import torch
from tiny import entry_line, write_entries

from harness.submissions.checkpoint import LoadError, load_entry_checkpoint, unwrap
from harness.submissions.discovery import discover


@pytest.fixture
def tiny_entry(tmp_path):
    write_entries(tmp_path / "models", "tiny", entry_line("tiny", checkpoint="tiny.pth"))
    return discover(tmp_path / "models").entries["tiny"]


def test_plain_state_dict_loads_strictly(tmp_path, tiny_entry):
    src = tiny_entry.build()
    torch.save(src.state_dict(), tmp_path / "tiny.pth")
    model = tiny_entry.build()
    info = load_entry_checkpoint(model, tiny_entry, tmp_path)
    assert info.trained and info.notes == []
    assert torch.equal(model.conv.weight, src.conv.weight)
    assert len(info.sha256) == 64


@pytest.mark.parametrize("wrapper", ["params_ema", "params", "state_dict", "model", "net"])
def test_default_rule_unwraps_wrappers_and_says_so(tmp_path, tiny_entry, wrapper):
    src = tiny_entry.build()
    torch.save({wrapper: src.state_dict(), "iter": torch.tensor(5)}, tmp_path / "tiny.pth")
    info = load_entry_checkpoint(tiny_entry.build(), tiny_entry, tmp_path)
    assert info.notes[0].startswith(f"unwrapped '{wrapper}' by the default rule")


def test_default_rule_prefers_params_ema():
    sd = {"w": torch.zeros(1)}
    ema = {"w": torch.ones(1)}
    state, _ = unwrap({"params": sd, "params_ema": ema})
    assert torch.equal(state["w"], torch.ones(1))


def test_module_prefix_is_stripped_by_default_and_declared_map_is_applied(tmp_path, tiny_entry):
    src = tiny_entry.build()
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, tmp_path / "tiny.pth")
    info = load_entry_checkpoint(tiny_entry.build(), tiny_entry, tmp_path)
    assert "stripped the 'module.' prefix" in info.notes[0]
    torch.save({f"net_g.{k}": v for k, v in src.state_dict().items()}, tmp_path / "tiny.pth")
    tiny_entry.key_map = {"net_g.": ""}
    info = load_entry_checkpoint(tiny_entry.build(), tiny_entry, tmp_path)
    assert "renamed key prefixes" in info.notes[0]


def test_mismatch_lists_missing_and_unexpected_keys(tmp_path, tiny_entry):
    sd = collections.OrderedDict(tiny_entry.build().state_dict())
    sd.pop("conv.bias")
    sd["extra.weight"] = torch.zeros(2)
    torch.save(sd, tmp_path / "tiny.pth")
    with pytest.raises(LoadError) as info:
        load_entry_checkpoint(tiny_entry.build(), tiny_entry, tmp_path)
    assert str(info.value) == (
        "tiny: checkpoint does not match the model: 1 missing keys (conv.bias); 1 unexpected keys (extra.weight)"
    )


def test_shape_mismatch_is_named(tmp_path, tiny_entry):
    sd = tiny_entry.build().state_dict()
    sd["conv.bias"] = torch.zeros(5)
    torch.save(sd, tmp_path / "tiny.pth")
    with pytest.raises(LoadError, match=r"tiny: checkpoint shapes do not match the model: .*conv.bias"):
        load_entry_checkpoint(tiny_entry.build(), tiny_entry, tmp_path)


class Pickled:
    """A Python object in a checkpoint: loading it would run arbitrary code."""


def test_unsafe_pickle_is_refused(tmp_path, tiny_entry):
    torch.save({"conv.weight": Pickled()}, tmp_path / "tiny.pth")
    with pytest.raises(LoadError, match="cannot be loaded with weights_only=True"):
        load_entry_checkpoint(tiny_entry.build(), tiny_entry, tmp_path)


def test_absent_checkpoint_means_untrained(tmp_path, tiny_entry):
    info = load_entry_checkpoint(tiny_entry.build(), tiny_entry, tmp_path)
    assert not info.trained and "not found" in info.notes[0]


def test_sha256_on_the_card_is_enforced(tmp_path, tiny_entry):
    torch.save(tiny_entry.build().state_dict(), tmp_path / "tiny.pth")
    tiny_entry.sha256 = "0" * 64
    with pytest.raises(LoadError, match="the card expects 000000000000"):
        load_entry_checkpoint(tiny_entry.build(), tiny_entry, tmp_path)
