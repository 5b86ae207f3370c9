"""Registry-driven: every entry in models/ is tested the day it is declared.

Each entry builds on the CPU, passes its deploy-equivalence check, loads its checkpoint
strictly when the official file is available, has the parameter count its card expects,
and returns ``scale x`` the input size.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import zoo_dir

from harness.submissions.checkpoint import load_entry_checkpoint
from harness.submissions.discovery import discover
from harness.running.worker import prepare_model

MODELS = Path(__file__).resolve().parents[1] / "models"
CATALOG = discover(MODELS)
NAMES = CATALOG.names()


def test_catalog_has_no_problems():
    assert CATALOG.problems == []
    assert len(NAMES) >= 9


@pytest.mark.parametrize("name", NAMES)
def test_entry_builds_deploys_and_upscales(name):
    entry = CATALOG.entries[name]
    prepared = prepare_model(entry, zoo_dir() if zoo_dir().is_dir() else None, "cpu")
    model = prepared.model
    if entry.deploy:
        assert prepared.deploy["equivalent"], prepared.deploy
        assert prepared.deploy["max_abs_diff"] < 1e-4
    else:
        assert prepared.deploy is None
    params = sum(p.numel() for p in model.parameters())
    if "params" in entry.expected:
        assert params == entry.expected["params"]
    x = torch.rand(1, 3, 20, 17) * entry.input_range
    with torch.inference_mode():
        y = model(x)
    assert tuple(y.shape) == (1, 3, 20 * entry.scale, 17 * entry.scale)
    assert bool(y.isfinite().all())


@pytest.mark.parametrize("name", [n for n in NAMES if CATALOG.entries[n].checkpoint])
def test_official_checkpoint_loads_strictly(name):
    entry = CATALOG.entries[name]
    path = zoo_dir() / entry.checkpoint
    if not path.is_file():
        pytest.skip(f"{entry.checkpoint} not in {zoo_dir()} (no official checkpoint shared for {name})")
    model = entry.build()
    if entry.deploy and entry.load_after_deploy:
        getattr(model, entry.deploy)()
    info = load_entry_checkpoint(model, entry, zoo_dir())
    assert info.trained and info.sha256 == (entry.sha256 or info.sha256)
