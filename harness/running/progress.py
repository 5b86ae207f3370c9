"""Progress over entries for the backends: a bar with an ETA in a terminal, one line per event elsewhere.

The ETA is the mean time of the finished entries times the entries left (entries differ a lot,
so it settles as the run goes on); before the first entry finishes it is unknown and shown as ``?``.
"""
from __future__ import annotations

import sys
import time


def clock(seconds: float | None) -> str:
    """``H:MM:SS`` (or ``M:SS`` under an hour); ``?`` when unknown."""
    if seconds is None:
        return "?"
    seconds = int(round(max(seconds, 0.0)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Eta:
    """Elapsed time and a remaining-time estimate over ``total`` items."""

    def __init__(self, total: int, now=time.monotonic):
        self.total, self.done, self.now = total, 0, now
        self.started = now()

    def finish_one(self) -> None:
        self.done += 1

    @property
    def elapsed(self) -> float:
        return self.now() - self.started

    @property
    def remaining(self) -> float | None:
        if self.done == 0:
            return None
        return self.elapsed / self.done * (self.total - self.done)


class progress_bar:
    """Progress over entries; ``with progress_bar(n, console) as advance: advance(text, done)``.

    In a terminal: a rich bar with the count, elapsed time and ETA. Otherwise (a log file, CI):
    one plain line when an entry starts and one when it finishes, each with elapsed time and ETA,
    so a redirected run is never silent for minutes. Disabled: nothing.
    """

    def __init__(self, total: int, console=None, enabled: bool = True, stream=None):
        self.total, self.console, self.enabled = total, console, enabled and total > 0
        self.stream = stream
        self.eta = Eta(total)

    def _terminal(self) -> bool:
        if self.stream is not None:
            return False
        if self.console is not None:
            return bool(self.console.is_terminal)
        return sys.stdout.isatty()

    def __enter__(self):
        if not self.enabled:
            return lambda text, done: None
        if not self._terminal():
            return self._lines
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                  console=self.console, transient=False)
        self._progress.__enter__()
        task = self._progress.add_task("measuring", total=self.total)

        def advance(text: str, done: bool) -> None:
            self._progress.update(task, description=text, advance=1 if done else 0)

        return advance

    def _lines(self, text: str, done: bool) -> None:
        if done:
            self.eta.finish_one()
            where = f"[{self.eta.done}/{self.total}]"
        else:
            where = f"[{self.eta.done + 1}/{self.total}]"
        line = (f"{where} {text}{'' if done else ' ...'}  (elapsed {clock(self.eta.elapsed)}, "
                f"ETA {clock(self.eta.remaining)})")
        stream = self.stream or sys.stdout
        print(line, file=stream, flush=True)

    def __exit__(self, *exc):
        if self.enabled and hasattr(self, "_progress"):
            self._progress.__exit__(*exc)
        return False
