"""Stable import path for team files: ``harness.reparam`` (lives in harness.core.reparam)."""
from harness.core.reparam import *  # noqa: F401,F403
from harness.core.reparam import Kernel  # noqa: F401
