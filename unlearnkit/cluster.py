"""Where units of work run: in this process, one after another (the default, no Ray needed), or
as Ray tasks on a local cluster (`workers`) or on an existing one (`address`).

A unit of work is a `Job`: a module-level function and keyword arguments that pickle (paths,
names, numbers, dicts), so that any worker can run it. Every job that makes a model goes through
the content-addressed store (one lock per entry), so two workers asking for the same model never
train it twice, a job retried after its worker died resumes from its checkpoint, and a rerun
reuses every finished piece.

Both paths run each job with `torch.set_num_threads(cpus_per_task)`: the same kernels with the
same thread count, hence bitwise the same results in process and on Ray.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from rich.live import Live
from rich.table import Table

from unlearnkit.errors import UnlearnkitError
from unlearnkit.progress import console, quiet, say

RAY_HINT = "pip install 'unlearnkit[ray]' (or -e '.[ray]' in a checkout)"
CONNECT_TIMEOUT_S = 10.0
RETRIES = 3  # a job whose worker process or node died runs again, from its checkpoint


@dataclass(frozen=True)
class Job:
    """One unit of work, named for the progress view and for errors."""

    name: str
    fn: Callable[..., Any]
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class JobError:
    """What a job that failed with a user error returns when the batch tolerates errors."""

    message: str


def run_job(fn: Callable[..., Any], kwargs: dict, threads: int) -> tuple[str, Any]:
    """("ok", result) or ("error", the one-line message of a user error). A user error comes
    back as a value, so that Ray neither retries it nor wraps it in a traceback."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return "ok", fn(**kwargs)
    except UnlearnkitError as error:
        return "error", str(error)
    finally:
        torch.set_num_threads(previous)


class Board:
    """The live view of a batch of jobs: queued, running, done, failed, and the time left."""

    def __init__(self, title: str, total: int, slots: int):
        self.title, self.total, self.slots = title, total, max(slots, 1)
        self.done = self.failed = 0
        self.started = time.perf_counter()
        self.live = Live(self.render(), console=console, refresh_per_second=2) if console.is_terminal and not quiet() else None

    def counts(self) -> dict[str, int]:
        in_flight = self.total - self.done - self.failed
        running = min(in_flight, self.slots)
        return {"queued": in_flight - running, "running": running, "done": self.done, "failed": self.failed}

    def eta(self) -> str:
        if not self.done:
            return "…"
        elapsed = time.perf_counter() - self.started
        left = elapsed / self.done * (self.total - self.done - self.failed)
        return f"{left:.0f}s"

    def render(self) -> Table:
        table = Table(title=self.title, title_justify="left")
        for column in ("queued", "running", "done", "failed", "left"):
            table.add_column(column, justify="right")
        table.add_row(*map(str, self.counts().values()), self.eta())
        return table

    def update(self, finished: int = 0, failed: int = 0) -> None:
        self.done += finished
        self.failed += failed
        if self.live is not None:
            self.live.update(self.render())
        elif finished or failed:  # logs and pipes: one line per finished job
            say(f"{self.title}: " + ", ".join(f"{k} {v}" for k, v in self.counts().items()) + f", left {self.eta()}")

    def __enter__(self) -> "Board":
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.update(self.render())
            self.live.__exit__(*exc)


def reachable(address: str, timeout: float) -> str | None:
    """None when something listens at `address` (host:port, optionally ray://), else why not."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return f"'{address}' is not HOST:PORT"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return None
    except OSError as error:
        return error.strerror or type(error).__name__


class Executor:
    """Runs jobs and returns their results in the jobs' order. The first job that fails with a
    user error stops the batch: its one line is raised, prefixed with the job's name."""

    def __init__(self, *, workers: int | None = None, address: str | None = None, cpus_per_task: int = 1, gpus_per_task: float | None = None):
        if workers is not None and workers < 1:
            raise UnlearnkitError(f"--workers {workers} is invalid; give 1 or more, or leave it out to run in this process")
        if cpus_per_task < 1:
            raise UnlearnkitError(f"--cpus-per-task {cpus_per_task} is invalid; give 1 or more")
        address = address or (os.environ.get("RAY_ADDRESS") if workers is None else None)
        self.cpus_per_task, self.ray = cpus_per_task, None
        self.gpus_per_task = 0.0
        if workers is None and not address:
            return
        try:
            import ray
        except ImportError:
            raise UnlearnkitError(f"--workers/--address need Ray, which is not installed; {RAY_HINT}") from None
        if address and address != "auto" and (why := reachable(address, CONNECT_TIMEOUT_S)):
            raise UnlearnkitError(f"no Ray cluster answers at {address} ({why}); start one with `ray start --head` and give the address it prints, or use --workers N for a local one")
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
                else:
                    ray.init(num_cpus=workers * cpus_per_task, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise UnlearnkitError(f"cannot start or join Ray ({str(error).splitlines()[0]}); check --address, or use --workers N") from None
        self.ray = ray
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        self.gpus_per_task = gpus_per_task if gpus_per_task is not None else (1.0 if has_gpus else 0.0)

    @property
    def slots(self) -> int:
        if self.ray is None:
            return 1
        return max(int(self.ray.cluster_resources().get("CPU", 1) // self.cpus_per_task), 1)

    def describe(self) -> str:
        if self.ray is None:
            return f"in this process, {self.cpus_per_task} thread(s) per job"
        resources = self.ray.cluster_resources()
        return f"Ray: {len(self.ray.nodes())} node(s), {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; {self.cpus_per_task} CPU(s) per job"

    def map(self, jobs: list[Job], title: str, tolerate_errors: bool = False) -> list[Any]:
        """Results in the jobs' order. A user error stops the batch with its one line, or, with
        `tolerate_errors`, is returned as a `JobError` in that job's place."""
        if not jobs:
            return []
        with Board(title, len(jobs), self.slots) as board:
            if self.ray is None:
                return [self._check(job, run_job(job.fn, job.kwargs, self.cpus_per_task), board, tolerate_errors) for job in jobs]
            return self._on_ray(jobs, board, tolerate_errors)

    @staticmethod
    def _check(job: Job, outcome: tuple[str, Any], board: Board, tolerate_errors: bool) -> Any:
        status, value = outcome
        if status == "error":
            board.update(failed=1)
            if tolerate_errors:
                return JobError(value)
            raise UnlearnkitError(f"{job.name}: {value}")
        board.update(finished=1)
        return value

    def _on_ray(self, jobs: list[Job], board: Board, tolerate_errors: bool) -> list[Any]:
        ray = self.ray
        remote = ray.remote(run_job).options(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task, max_retries=RETRIES, retry_exceptions=False)
        index = {remote.remote(job.fn, job.kwargs, self.cpus_per_task): i for i, job in enumerate(jobs)}
        results: list[Any] = [None] * len(jobs)
        pending = list(index)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                for ref in ready:
                    job = jobs[index[ref]]
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as error:  # failed past its retries: the first line says why
                        outcome = ("error", f"failed on Ray after {RETRIES} retries ({str(error).strip().splitlines()[0]})")
                    results[index[ref]] = self._check(job, outcome, board, tolerate_errors)
                board.update()
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
        return results
