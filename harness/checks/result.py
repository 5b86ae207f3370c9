"""One line of the ``esr check`` checklist and its statuses."""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

STATUSES = ("pass", "warn", "fail", "skip")


@dataclass
class CheckResult:
    """One line of the checklist. ``fix`` says in one line what to do (empty on pass)."""

    name: str
    status: str
    message: str
    fix: str = ""
    entry: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check {self.name}: status must be one of {STATUSES}, got {self.status!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _one(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


CUDA_WORDS = re.compile(r"cuda|nvidia|no gpus|gpu", re.IGNORECASE)


class Recorder:
    """Collects results in the subprocess and rewrites the results file after each one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.results: list[CheckResult] = []
        self.current, self.entry = "imports", ""
        self._flush()

    def start(self, name: str, entry: str = "") -> None:
        self.current, self.entry = name, entry
        self._flush()

    def add(self, result: CheckResult) -> CheckResult:
        self.results.append(result)
        self._flush()
        return result

    def done(self) -> None:
        self.current = None
        self._flush(done=True)

    def _flush(self, done: bool = False) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"results": [r.to_dict() for r in self.results], "current": self.current,
                                   "entry": self.entry, "done": done}))
        os.replace(tmp, self.path)
