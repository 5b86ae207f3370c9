"""Tiny model files for tests: written into a temporary models folder."""
from __future__ import annotations

import textwrap
from pathlib import Path

HEADER = """
import os, time
import torch
from torch import nn
from harness.card import Entry


class Tiny(nn.Module):
    \"\"\"conv 3->3*s*s + pixel shuffle: 3*3*s*s*9 + 3*s*s parameters.\"\"\"

    def __init__(self, scale=4, mode="ok"):
        super().__init__()
        self.mode = mode
        self.conv = nn.Conv2d(3, 3 * scale * scale, 3, padding=1)
        self.up = nn.PixelShuffle(scale)

    def forward(self, x):
        if self.mode == "raise":
            raise RuntimeError("boom in forward")
        if self.mode == "exit":
            os._exit(3)
        if self.mode == "sleep":
            time.sleep(float(os.environ.get("ESR_TEST_SLEEP", "60")))
        if self.mode == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        y = self.up(self.conv(x))
        if self.mode == "nan":
            y = y * float("nan")
        if self.mode == "small":
            y = y[:, :, :-1, :]
        return y
"""


def tiny_param_count(scale: int = 4) -> int:
    return 3 * 3 * scale * scale * 9 + 3 * scale * scale


def write_model(folder: Path, stem: str, body: str = "", header: bool = True) -> Path:
    """Write ``folder/stem.py`` with the Tiny class (unless header=False) and ``body``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.py"
    path.write_text((HEADER if header else "") + "\n" + textwrap.dedent(body))
    return path


def entry_line(name: str, mode: str = "ok", checkpoint: str | None = None, **extra) -> str:
    extras = "".join(f", {k}={v!r}" for k, v in extra.items())
    return (f"Entry(name={name!r}, model=Tiny, kwargs={{'mode': {mode!r}}}, scale=4, input_range=1.0, "
            f"checkpoint={checkpoint!r}{extras})")


def write_entries(folder: Path, stem: str, *lines: str) -> Path:
    return write_model(folder, stem, "ENTRIES = [" + ", ".join(lines) + "]\n")
