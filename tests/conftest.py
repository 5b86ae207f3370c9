"""Shared fixtures: where ../shared lives, and skips with a visible reason when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("ESR_SHARED", REPO.parent / "shared"))


def zoo_dir() -> Path:
    return Path(os.environ.get("ESR_ZOO", shared_dir() / "zoo"))


def set5_dir() -> Path:
    return Path(os.environ.get("ESR_SET5", shared_dir() / "data" / "Set5"))


@pytest.fixture
def zoo() -> Path:
    path = zoo_dir()
    if not path.is_dir():
        pytest.skip(f"official checkpoints not found at {path} (set ESR_ZOO or ESR_SHARED)")
    return path


@pytest.fixture
def set5() -> Path:
    path = set5_dir()
    if not (path / "HR").is_dir():
        pytest.skip(f"Set5 not found at {path} (set ESR_SET5 or ESR_SHARED)")
    return path


def zoo_file(name: str) -> Path:
    """Path of one official checkpoint, skipping the test when it is absent."""
    path = zoo_dir() / name
    if not path.is_file():
        pytest.skip(f"checkpoint {name} not found in {zoo_dir()} (set ESR_ZOO or ESR_SHARED)")
    return path
