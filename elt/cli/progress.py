"""Progress on the terminal: one bar per phase while tasks run, one summary line per iteration."""

from __future__ import annotations

from elt.engine.runner import Outcome, Reporter, summary_line


class RichReporter(Reporter):
    def __init__(self, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
                                 console=console, transient=True,
                                 disable=not console.is_terminal)
        self.task = None
        self.failed = 0

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()
        return False

    def phase_start(self, name, total, reused):
        self.failed = 0
        note = f"({reused} reused)" if reused else ""
        self.total = total
        self.task = self.progress.add_task(name, total=total, note=note)
        if not self.console.is_terminal:
            self.console.print(f"{name}: {total} tasks" + (f", {reused} reused" if reused else ""))

    def advance(self, outcome: Outcome):
        if outcome.status != "done":
            self.failed += 1
        if self.task is not None:
            self.progress.update(self.task, advance=1, note=f"{self.failed} failed" if self.failed else "")

    def phase_grow(self, n):
        if self.task is not None:
            self.total += n
            self.progress.update(self.task, total=self.total)

    def phase_end(self, name):
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None

    def message(self, text):
        self.console.print(text)

    def iteration_summary(self, record):
        self.console.print(summary_line(record))
