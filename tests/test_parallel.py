"""pfm.parallel: jobs run side by side in single-thread forked workers, results in job
order, failures raised; one worker, one job or a CUDA device keep them in-process."""

import os
from functools import partial

import pytest
import torch

from pfm.parallel import run_all

CPU = torch.device("cpu")


def where(index: int) -> tuple[int, int, int]:
    return index, os.getpid(), torch.get_num_threads()


def fail(index: int) -> None:
    raise RuntimeError(f"job {index} failed")


def test_jobs_run_in_single_thread_workers_and_return_in_order() -> None:
    threads = torch.get_num_threads()
    results = run_all([partial(where, i) for i in range(5)], 2, CPU)
    assert [index for index, _, _ in results] == list(range(5))
    assert os.getpid() not in {pid for _, pid, _ in results}
    assert len({pid for _, pid, _ in results}) <= 2
    assert {n for _, _, n in results} == {1}
    assert torch.get_num_threads() == threads  # the stage's own process is untouched


def test_closures_need_no_pickling() -> None:
    """Workers are forked: a job may close over anything (a model, a dataset)."""
    model = torch.nn.Linear(3, 1)
    jobs = [lambda: float(model.weight.detach().sum()), lambda: float(model.bias.detach().sum())]
    assert run_all(jobs, 2, CPU) == [
        float(model.weight.detach().sum()),
        float(model.bias.detach().sum()),
    ]


@pytest.mark.parametrize(
    ("workers", "count", "device"),
    [(1, 3, CPU), (2, 1, CPU), (2, 3, torch.device("cuda"))],
)
def test_one_worker_one_job_or_cuda_run_in_this_process(
    workers: int, count: int, device: torch.device
) -> None:
    results = run_all([partial(where, i) for i in range(count)], workers, device)
    assert results == [(i, os.getpid(), torch.get_num_threads()) for i in range(count)]


def test_a_failing_job_is_raised() -> None:
    with pytest.raises(RuntimeError, match="job 1 failed"):
        run_all([partial(where, 0), partial(fail, 1), partial(where, 2)], 2, CPU)


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers must be ≥ 1"):
        run_all([partial(where, 0)], 0, CPU)


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_is_a_line_per_tenth_of_the_runs(
    workers: int, capsys: pytest.CaptureFixture[str]
) -> None:
    run_all([partial(where, i) for i in range(20)], workers, CPU)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == [f"runs: {n}/20 done" for n in range(2, 21, 2)]
