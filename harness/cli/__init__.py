"""The ``esr`` command (top layer): argument parsing and output; the work happens below."""
from harness.cli.main import main

__all__ = ["main"]
