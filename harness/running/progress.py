"""Progress over entries for the backends."""
from __future__ import annotations


class progress_bar:
    """A rich progress bar over entries (a no-op when disabled)."""

    def __init__(self, total: int, console=None, enabled: bool = True):
        self.total, self.console, self.enabled = total, console, enabled and total > 0

    def __enter__(self):
        if not self.enabled:
            return lambda text, done: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=self.console, transient=False)
        self._progress.__enter__()
        task = self._progress.add_task("measuring", total=self.total)

        def advance(text: str, done: bool) -> None:
            self._progress.update(task, description=text, advance=1 if done else 0)

        return advance

    def __exit__(self, *exc):
        if self.enabled:
            self._progress.__exit__(*exc)
        return False
