"""Defaults shared by the sub-commands: where models and checkpoints are looked for."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def default_models() -> Path:
    return Path(os.environ.get("ESR_MODELS", REPO / "models"))


def default_zoo() -> Path:
    return Path(os.environ.get("ESR_ZOO", REPO / "model_zoo"))
