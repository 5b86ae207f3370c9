"""Atomic writes and JSON reads for the harness: the torch-free ``leaderboard.fsio`` is the one
implementation (the leaderboard must not import ``harness``, so the shared code lives there)."""
from leaderboard.fsio import atomic_write_json, atomic_write_text, read_json

__all__ = ["atomic_write_json", "atomic_write_text", "read_json"]
