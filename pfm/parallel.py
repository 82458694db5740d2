"""Independent runs of one stage side by side, in forked single-thread workers.

DVC runs one stage at a time, and on the CPU profile the tiny models' matrices are too
small to keep two threads busy: a prompt-model training step takes 0.315 s on both of
this machine's 2 cores, 0.44 s on one, and still 0.44 s each with two such processes side
by side — two single-thread runs do 1.4× the work of one two-thread run in that
benchmark, ~1.25× in the pipeline's own training (14.6 s an epoch beside a neighbour,
9 s alone on both cores). A stage with
several independent runs (every unlearning method; the prompt model and its never-seen
reference) therefore spreads them over ``workers`` processes.

Workers are forked, so a job is any callable — nothing is pickled but its result — and
no worker pays the ~9 s import of torch, transformers and peft again. Every job seeds
itself and runs at one thread, so its numbers do not depend on which worker ran it or
in what order; they do differ in the last bits from a run with more threads, which is
why ``workers`` is a param of the stages that use it. On CUDA the jobs run in the stage's
own process, one after the other (a forked process cannot use its parent's CUDA context).
"""

import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

import torch

from pfm.stage_clock import charge

T = TypeVar("T")

_jobs: Sequence[Callable[[], object]] = ()  # what forked workers inherit; set by run_all


def _run_job(index: int) -> tuple[object, float]:
    torch.set_num_threads(1)
    return _timed(_jobs[index])


def _timed(job: Callable[[], T]) -> tuple[T, float]:
    """``job``'s result and the wall seconds it took where it ran."""
    start = time.perf_counter()
    result = job()
    return result, time.perf_counter() - start


class Progress:
    """A line on stderr each time another tenth of a stage's runs has finished, so a long
    stage (the attack: hundreds of runs, tens of minutes) says how far it is and at what
    pace, without a line per run."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.start = time.monotonic()

    def finished_one(self) -> None:
        self.done += 1
        if self.total > 1 and self.done * 10 // self.total > (self.done - 1) * 10 // self.total:
            elapsed = time.monotonic() - self.start
            print(f"runs: {self.done}/{self.total} done, {elapsed:.0f} s", file=sys.stderr)


def run_all(
    jobs: Sequence[Callable[[], T]],
    workers: int,
    device: torch.device,
    parts: Sequence[str] | None = None,
) -> list[T]:
    """Every job's result, in job order: in ``workers`` forked single-thread processes on
    the CPU, in this process for one worker, one job or a CUDA device. A job's exception
    is raised here once the running jobs have ended; jobs not yet started then never
    start. Jobs that write a stage's outputs write them staged (``pfm.files.staged``), so
    that a failed job leaves every output as it was, its neighbours' included. Progress
    goes to stderr (``Progress``). ``parts`` names each job's part of the stage: the
    seconds each job ran are charged to its part (``pfm.stage_clock.charge``), so the
    stage's cost file says where its time went."""
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    if parts is not None and len(parts) != len(jobs):
        raise ValueError(f"{len(parts)} parts named for {len(jobs)} jobs")
    progress = Progress(len(jobs))
    if workers == 1 or len(jobs) < 2 or device.type != "cpu":
        timed = []
        for job in jobs:
            timed.append(_timed(job))
            progress.finished_one()
        return _charged(timed, parts)
    global _jobs
    _jobs = jobs
    sys.stdout.flush()  # a forked worker would print what is still buffered here again
    sys.stderr.flush()
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context)
    try:
        futures = [pool.submit(_run_job, index) for index in range(len(jobs))]
        for future in as_completed(futures):
            if future.exception() is not None:
                raise future.exception()
            progress.finished_one()
        return _charged([future.result() for future in futures], parts)
    finally:
        pool.shutdown(cancel_futures=True)  # after a failure, run no job not yet started
        _jobs = ()


def _charged(timed: list[tuple[T, float]], parts: Sequence[str] | None) -> list[T]:
    """The results of ``timed``, their seconds charged to ``parts`` where named."""
    if parts is not None:
        for part, (_, seconds) in zip(parts, timed, strict=True):
            charge(part, seconds)
    return [result for result, _ in timed]
