"""Stable import path for team files: ``from harness.card import Entry`` (lives in harness.core.card)."""
from harness.core.card import CardError, Entry  # noqa: F401

__all__ = ["CardError", "Entry"]
