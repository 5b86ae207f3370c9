"""Defaults shared by the sub-commands: where models and checkpoints are looked for."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def default_models() -> Path:
    return Path(os.environ.get("ESR_MODELS", REPO / "models"))


def default_zoo() -> Path:
    return Path(os.environ.get("ESR_ZOO", REPO / "model_zoo"))


def add_confinement_arguments(p) -> None:
    """``--sandbox`` and ``--memory-limit``: shared by run, check and profile."""
    p.add_argument("--sandbox", choices=["auto", "required", "off"], default="auto",
                   help="confine team code (no network, read-only files, own PID namespace): auto (default: when the "
                        "machine allows, else unconfined and recorded), required (refuse to run without), off")
    p.add_argument("--memory-limit", default=None, metavar="MIB",
                   help="memory limit of one entry's process tree in MiB (default 75%% of RAM; 0: none)")


def memory_limit_from_args(args):
    from harness.core.sandbox import check_memory_limit, default_memory_limit_mib

    return default_memory_limit_mib() if args.memory_limit is None else check_memory_limit(args.memory_limit)
