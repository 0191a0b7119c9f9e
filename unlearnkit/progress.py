"""Progress that people can follow: a live bar on a terminal, one line per epoch elsewhere
(CI logs, pipes). `UNLEARNKIT_QUIET=1` silences both."""

from __future__ import annotations

import os
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, soft_wrap=True)


def quiet() -> bool:
    return os.environ.get("UNLEARNKIT_QUIET", "") not in ("", "0")


def say(message: str) -> None:
    if not quiet():
        console.print(message, highlight=False)


def elapsed_and_eta(started: float, done: int, total: int) -> str:
    """'elapsed 12s  ETA 30s' for `done` of `total` equal steps begun at `started` (perf_counter)."""
    elapsed = time.perf_counter() - started
    return f"elapsed {elapsed:.0f}s  ETA {elapsed / done * (total - done):.0f}s"


def with_progress(items, description: str, label=str):
    """Yields each of `items`, then says how many are done, which, the time elapsed and an ETA:
    for loops of a few dozen slow steps (the audits' models), one line each."""
    items, started = list(items), time.perf_counter()
    for index, item in enumerate(items):
        yield item
        say(f"{description} {index + 1}/{len(items)}  {label(item)}  {elapsed_and_eta(started, index + 1, len(items))}")


class EpochProgress:
    """Reports steps of one epoch at a time; `fields` (loss, acc, img/s) are shown beside it."""

    def __init__(self, description: str, steps_per_epoch: int, epochs: int):
        self.description, self.steps_per_epoch, self.epochs = description, steps_per_epoch, epochs
        self.live = not quiet() and console.is_terminal
        self.progress = None
        self.started = time.perf_counter()

    def __enter__(self):
        if self.live:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self.progress.__enter__()
        return self

    def start_epoch(self, epoch: int) -> None:
        if self.progress is not None:
            self.task = self.progress.add_task(f"{self.description} {epoch + 1}/{self.epochs}", total=self.steps_per_epoch, stats="")

    def step(self, stats: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, stats=stats)

    def end_epoch(self, epoch: int, stats: str) -> None:
        if self.progress is None and not quiet():
            console.print(f"{self.description} {epoch + 1}/{self.epochs}  {stats}  {elapsed_and_eta(self.started, epoch + 1, self.epochs)}", highlight=False)

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)
