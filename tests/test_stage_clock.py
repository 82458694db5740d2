"""A stage's own cost file (``pfm.stage_clock`` through ``pfm.cli.run_stage``) and the
report's table of them (``pfm.reporting.stage_times``)."""

import multiprocessing
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import torch

from pfm.cli import EXIT_BAD_INPUT, run_stage
from pfm.files import read_json, write_json
from pfm.parallel import run_all
from pfm.reporting.stage_times import read_stage_times, stage_time_lines
from pfm.stage_clock import charge, stage_cost


def busy(seconds: float, mib: int) -> None:
    """Hold ``mib`` MiB resident and spin the CPU for ``seconds``."""
    block = bytearray(mib * 2**20)
    block[::4096] = b"\1" * len(block[::4096])  # touch every page: resident, not just mapped
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_children_count_once_joined() -> None:
    """A forked worker's CPU and memory are the stage's (``pfm.parallel`` forks its workers)."""
    before = stage_cost()
    mib = int(before["peak_rss_mib"]) + 100  # more than this process has ever held
    child = multiprocessing.get_context("fork").Process(target=busy, args=(0.5, mib))
    child.start()
    child.join()
    after = stage_cost()
    assert after["cpu_seconds"] - before["cpu_seconds"] >= 0.45
    assert after["peak_rss_mib"] >= mib
    assert after["wall_seconds"] >= before["wall_seconds"] + 0.45


def test_run_stage_writes_the_cost_after_main(tmp_path: Path, monkeypatch) -> None:
    seen: list[list[str]] = []
    out = tmp_path / "times" / "train" / "digits" / "seed0.json"
    monkeypatch.setattr(sys, "argv", ["train.py", "--seed", "0", "--times", str(out), "-v"])

    def main() -> None:
        seen.append(list(sys.argv))
        assert not out.exists()  # written once main has returned, its outputs committed

    run_stage(main, "train")
    assert seen == [["train.py", "--seed", "0", "-v"]]  # the stage's own parser never sees it
    cost = read_json(out)
    assert set(cost) == {
        "stage.train.wall_seconds",
        "stage.train.cpu_seconds",
        "stage.train.peak_rss_mib",
        "machine.cpu",
        "machine.torch",
        "machine.torch_cpu_capability",
    }
    assert cost["stage.train.wall_seconds"] > 0 and cost["stage.train.peak_rss_mib"] > 0
    assert cost["machine.torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert cost["machine.torch"] == torch.__version__ and cost["machine.cpu"]


def _recorded_machine(tmp_path: Path, code: str, **env: str) -> dict[str, str]:
    """The machine keys a fresh interpreter running ``code`` then writing its cost records."""
    out = tmp_path / "seed0.json"
    script = (
        f"{code}\nfrom pfm.stage_clock import write_stage_cost\nwrite_stage_cost({str(out)!r}, 's')"
    )
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ, **env})
    return {k: v for k, v in read_json(out).items() if k.startswith("machine.")}


def test_the_cpu_kernels_torch_was_held_to_are_recorded(tmp_path: Path) -> None:
    """The digits seed that trained another model under AVX2 kernels: the file says which."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("an x86-64 CPU with AVX2 is needed to hold torch to AVX2")
    recorded = _recorded_machine(tmp_path, "import torch", ATEN_CPU_CAPABILITY="avx2")
    assert recorded["machine.torch_cpu_capability"] == "AVX2"


def test_a_stage_without_torch_records_the_cpu_alone(tmp_path: Path) -> None:
    assert set(_recorded_machine(tmp_path, "import json")) == {"machine.cpu"}


def test_a_failed_stage_writes_no_cost(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "seed0.json"
    monkeypatch.setattr(sys, "argv", ["train.py", "--times", str(out)])

    def main() -> None:
        raise ValueError("bad input")

    with pytest.raises(SystemExit) as exit_:
        run_stage(main, "train")
    assert exit_.value.code == EXIT_BAD_INPUT
    assert list(tmp_path.iterdir()) == []


def write_cost(root: Path, rel: str, stage: str, wall: float, cpu: float, mib: float) -> None:
    write_json(
        root / rel,
        {
            f"stage.{stage}.wall_seconds": wall,
            f"stage.{stage}.cpu_seconds": cpu,
            f"stage.{stage}.peak_rss_mib": mib,
        },
    )


def test_table_totals_each_stage_longest_first(tmp_path: Path) -> None:
    write_cost(tmp_path, "prepare/digits.json", "prepare", 5.0, 4.0, 300)
    write_cost(tmp_path, "train/digits/seed0.json", "train", 100.0, 180.0, 900)
    write_cost(tmp_path, "train/digits/seed1.json", "train", 110.0, 190.0, 950)
    runs = read_stage_times(tmp_path)
    assert [(r.stage, r.name, r.seed) for r in runs] == [
        ("prepare", "digits", None),
        ("train", "digits", 0),
        ("train", "digits", 1),
    ]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in stage_time_lines(runs)]
    assert rows[0] == ["stage", "dataset / model", "seed", "wall s", "CPU s", "peak RSS MiB"]
    assert rows[2:] == [
        ["train", "digits", "0", "100.0", "180.0", "900"],
        ["train", "digits", "1", "110.0", "190.0", "950"],
        ["**train**", "total", "", "210.0", "370.0", "950"],  # seconds add, memory peaks
        ["prepare", "digits", "", "5.0", "4.0", "300"],
        ["**prepare**", "total", "", "5.0", "4.0", "300"],
        ["**total**", "", "", "215.0", "374.0", "950"],
        [""],
        ["Stage runs by machine:"],
        [""],
        ["- not recorded (files written before machines were): 3 runs"],
    ]


def test_the_machines_that_ran_the_stages_are_named_with_their_runs(tmp_path: Path) -> None:
    write_cost(tmp_path, "train/digits/seed0.json", "train", 1.0, 1.0, 1)
    write_cost(tmp_path, "train/digits/seed1.json", "train", 1.0, 1.0, 1)
    write_cost(tmp_path, "prepare/digits.json", "prepare", 1.0, 1.0, 1)
    machines = {"seed0": "AVX512", "seed1": "AVX2"}
    for seed, capability in machines.items():
        path = tmp_path / "train" / "digits" / f"{seed}.json"
        write_json(
            path,
            {**read_json(path), "machine.cpu": "X", "machine.torch_cpu_capability": capability},
        )
    write_json(
        tmp_path / "hand-recipes" / "digits.json",
        {"stage.hand-recipes.wall_seconds": 1, "stage.hand-recipes.cpu_seconds": 1,
         "stage.hand-recipes.peak_rss_mib": 1, "machine.cpu": "X"},
    )  # fmt: skip
    lines = stage_time_lines(read_stage_times(tmp_path))
    start = lines.index("Stage runs by machine:")
    assert lines[start + 2 :] == [
        "- cpu X; torch_cpu_capability AVX512: train digits seed 0",
        "- cpu X; torch_cpu_capability AVX2: train digits seed 1",
        "- not recorded (files written before machines were): 1 run",
    ]
    one = tmp_path / "one"
    write_json(
        one / "train" / "digits" / "seed0.json",
        read_json(tmp_path / "train" / "digits" / "seed0.json"),
    )
    assert stage_time_lines(read_stage_times(one))[-1] == (
        "Every stage run on one machine: cpu X; torch_cpu_capability AVX512."
    )


def test_no_files_no_table(tmp_path: Path) -> None:
    assert stage_time_lines(read_stage_times(tmp_path)) == []


@pytest.mark.parametrize(
    ("rel", "keys", "message"),
    [
        ("digits.json", {"stage.prepare.wall_seconds": 1.0}, "not <stage>/"),
        ("train/digits/seed0.json", {"stage.train.wall_seconds": 1.0}, "missing"),
        ("train/digits/seed0.json", {"wall_seconds": 1.0}, "keys of one stage"),
    ],
)
def test_a_file_outside_the_layout_is_an_error(
    tmp_path: Path, rel: str, keys: dict[str, float], message: str
) -> None:
    write_json(tmp_path / rel, keys)
    with pytest.raises(ValueError, match=message):
        read_stage_times(tmp_path)


def test_runs_are_charged_to_their_parts_in_the_cost_file(tmp_path: Path, monkeypatch) -> None:
    """Where a stage's time went, by part: each job's own seconds (not the pool's), the
    same whether the jobs ran in forked workers or in this process."""
    out = tmp_path / "attack" / "digits" / "seed0.json"
    monkeypatch.setattr(sys, "argv", ["attack.py", "--times", str(out)])
    jobs = [partial(time.sleep, 0.3), partial(time.sleep, 0.1), partial(time.sleep, 0.1)]

    def main() -> None:
        run_all(jobs, 2, torch.device("cpu"), ["slow", "fast", "fast"])
        run_all(jobs[1:], 1, torch.device("cpu"), ["fast", "fast"])

    charge("left over from another stage", 5.0)
    run_stage(main, "attack")
    cost = read_json(out)
    parts = {k: v for k, v in cost.items() if ".part." in k}
    assert set(parts) == {
        f"stage.attack.part.{p}.{m}" for p in ("slow", "fast") for m in ("seconds", "runs")
    }
    assert (parts["stage.attack.part.slow.runs"], parts["stage.attack.part.fast.runs"]) == (1, 4)
    assert 0.3 <= parts["stage.attack.part.slow.seconds"] < 0.3 + 0.2
    assert 0.4 <= parts["stage.attack.part.fast.seconds"] < 0.4 + 0.2
    write_json(
        tmp_path / "attack" / "digits" / "seed1.json",
        {**cost, "stage.attack.part.slow.seconds": 9.7, "stage.attack.part.slow.runs": 3},
    )  # another seed: the parts add up over the stage's runs
    runs = read_stage_times(tmp_path)
    assert [r.parts["slow"][1] for r in runs] == [1, 3]
    lines = stage_time_lines(runs)
    start = lines.index("| stage   | part   | runs   | run s (sum)   | s / run   | share   |")
    slow, fast = (line.split("|")[2:-1] for line in lines[start + 2 : start + 4])
    seconds = cost["stage.attack.part.slow.seconds"] + 9.7
    share = seconds / (seconds + 2 * parts["stage.attack.part.fast.seconds"])
    expected = ["slow", "4", f"{seconds:.0f}", f"{seconds / 4:.1f}", f"{share:.0%}"]
    assert [c.strip() for c in slow] == expected
    assert [c.strip() for c in fast][:2] == ["fast", "8"]


def test_parts_must_name_every_job() -> None:
    with pytest.raises(ValueError, match="2 parts named for 3 jobs"):
        run_all([int, int, int], 1, torch.device("cpu"), ["a", "b"])
