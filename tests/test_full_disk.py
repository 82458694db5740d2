"""A full disk: a stage that cannot write ends with one ``error:`` line naming the output it
could not write, exit status 2, the previous output as it was and no temporary file left.

A file-size limit (``RLIMIT_FSIZE``, with SIGXFSZ ignored so that a write raises EFBIG
instead of killing the process) stands in for a full disk in a real stage process; the
write helpers are also tried in this process with a write that raises ENOSPC half-way."""

import errno
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pfm.cli import EXIT_BAD_INPUT, run_stage
from pfm.data import load_prepared
from pfm.files import staged, write_atomic, write_atomic_dir, write_json

ROOT = Path(__file__).resolve().parents[1]
OLD = {"data.npz": b"earlier arrays", "counts.json": b'{"earlier": true}\n'}


def file_size_limit(limit: int) -> Callable[[], None]:
    """What a child process runs before the stage: files it writes stop at ``limit`` bytes."""

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_files


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def half_then_full(tmp: Path) -> None:
    """A write that runs out of room half-way, as ``write`` on a full disk does."""
    tmp.write_bytes(b"half")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_the_prepare_stage_on_a_full_disk_keeps_its_output_and_says_where(tmp_path: Path) -> None:
    out = tmp_path / "data" / "prepared" / "digits"
    out.mkdir(parents=True)
    for name, data in OLD.items():
        (out / name).write_bytes(data)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    before = files(tmp_path)
    command = [sys.executable, str(ROOT / "stages" / "prepare.py"), "--dataset", "digits",
               "--out", "data/prepared/digits"]  # fmt: skip
    run = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        preexec_fn=file_size_limit(16_384),  # data.npz of digits is ~50 kB
    )  # fmt: skip
    assert run.returncode == EXIT_BAD_INPUT and "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert lines == ["error: data/prepared/digits/data.npz: not written (File too large)"]
    assert files(tmp_path) == before  # the earlier output whole, no temporary file beside it

    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr  # room again: the rerun writes it whole
    assert load_prepared(out).num_classes == 10
    assert sorted(files(tmp_path)) == ["data/prepared/digits/counts.json",
                                       "data/prepared/digits/data.npz", "params.yaml"]  # fmt: skip


def test_an_atomic_write_that_runs_out_of_room_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text("earlier")
    with pytest.raises(OSError) as raised:
        write_atomic(path, half_then_full)
    assert (raised.value.filename, raised.value.strerror) == (
        str(path), "not written (No space left on device)",
    )  # fmt: skip
    assert files(tmp_path) == {"metrics.json": b"earlier"}
    folder = tmp_path / "model"
    with pytest.raises(OSError, match="not written") as raised:
        write_atomic_dir(folder, lambda tmp: half_then_full(tmp / "weights.bin"))
    assert raised.value.filename == str(folder) and not folder.exists()
    assert files(tmp_path) == {"metrics.json": b"earlier"}


def test_staged_outputs_on_a_full_disk_name_the_final_path_and_change_nothing(
    tmp_path: Path,
) -> None:
    """One run's output is written, the next runs out of room: neither moves in, and the
    error names the output as the stage's command line gave it, not its staging place."""
    write_json(tmp_path / "a.json", {"old": 1})
    write_json(tmp_path / "b" / "m.json", {"old": 1})
    before = files(tmp_path)
    with pytest.raises(OSError) as raised, staged() as stage:
        write_json(stage.path(tmp_path / "a.json"), {"new": 1})
        write_atomic(stage.path(tmp_path / "b") / "m.json", half_then_full)
    assert raised.value.filename == str(tmp_path / "b" / "m.json")
    assert files(tmp_path) == before


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG, errno.EDQUOT])
def test_a_stage_out_of_room_ends_with_one_line(code: int, capsys) -> None:
    def main() -> None:
        raise OSError(code, os.strerror(code), "out/m.json")

    with pytest.raises(SystemExit) as exit_:
        run_stage(main, "test")
    assert exit_.value.code == EXIT_BAD_INPUT
    assert capsys.readouterr().err == f"error: out/m.json: {os.strerror(code)}\n"


def test_another_os_error_is_not_taken_for_a_full_disk() -> None:
    def main() -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO), "out/m.json")

    with pytest.raises(OSError, match="Input/output error"):
        run_stage(main, "test")
