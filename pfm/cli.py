"""What every stage script shares: progress printed as it happens, one clear error line
and a non-zero exit on bad input, and the run's cost recorded (``--times``)."""

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pfm.files import NO_SPACE, write_json
from pfm.stage_clock import reset_parts, write_stage_cost

# bad params or input files, and paths that cannot be read as asked: what a user fixes
USER_ERRORS = (
    ValueError,
    KeyError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
EXIT_BAD_INPUT = 2


def error_line(error: BaseException) -> str:
    """``error`` as one line. An OSError raised by ``open`` carries its errno as its
    first argument (``error: 2``, for a missing file): it is shown as path and reason;
    a KeyError's message is shown without the quotes ``str`` would add."""
    if isinstance(error, OSError) and error.filename is not None:
        message = f"{error.filename}: {error.strerror or error}"
    elif error.args and isinstance(error.args[0], str):
        message = error.args[0]
    else:
        message = str(error) or type(error).__name__
    return " ".join(message.split())


def take_times_option(argv: list[str]) -> Path | None:
    """Remove ``--times PATH`` from ``argv`` (a stage's command line) and return PATH:
    every stage takes it, so it is parsed here once rather than by each stage's parser."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--times", type=Path)
    known, rest = parser.parse_known_args(argv[1:])
    argv[1:] = rest
    return known.times


def run_stage(main: Callable[[], None], stage: str) -> None:
    """Run ``main``; a user error prints ``error: …`` (no traceback) and exits 2.

    Under ``dvc repro`` stdout is a pipe, which Python buffers in blocks: the per-epoch
    lines of a 4-minute training would all appear at its end. Line buffering prints
    each as it comes, and keeps the lines of side-by-side workers whole.

    With ``--times PATH`` on the command line, ``stage``'s wall seconds, CPU seconds and
    peak memory (``pfm.stage_clock``), and the parts its runs were charged to, are
    written to PATH once ``main`` has returned, its outputs committed: a failed run
    writes none."""
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    times = take_times_option(sys.argv)
    reset_parts()
    try:
        main()
        if times is not None:
            write_stage_cost(times, stage)
    except USER_ERRORS as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except OSError as error:  # a full disk: freeing room is the user's fix too
        if error.errno not in NO_SPACE:
            raise
        print(f"error: {error_line(error)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def write_run_metrics(
    path: Path, metrics: Mapping[str, Any], label: str, shown: str = "acc.mean"
) -> None:
    """Write one (method, seed) run's metrics file and print its line of progress: the
    label and every key ending in ``shown``."""
    write_json(path, metrics)
    values = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.endswith(shown))
    print(f"{label}: {values}", flush=True)
