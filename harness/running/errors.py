"""Errors that stop a run before any entry is measured."""


class RunError(RuntimeError):
    """The run cannot start (bad data, bad models folder, unknown entry)."""
