"""What one run of a stage cost, as its own process measured it: wall seconds, CPU seconds
and peak memory, written as a flat metrics file that ``dvc metrics diff`` compares.

- Wall seconds count from the process's start, so the interpreter start and the imports
  (about 9 s of torch and transformers on 2 cores) are in them: they are paid per stage
  run.
- CPU seconds are user + system time of the process and of every child it waited for:
  ``pfm.parallel``'s forked workers are joined before a stage returns, so their work
  counts; threads' work is the process's own.
- Peak RSS is the largest resident set any one process of the stage reached (the stage
  process or its largest worker). Forked workers share the parent's pages copy-on-write
  and each counts them as resident, so a sum would count those pages once per worker;
  with ``workers`` processes the stage may hold up to about ``workers`` times this.
- Parts: a stage whose work is many runs (the attack: hundreds of them) charges each run's
  wall seconds to a named part (``charge``; ``pfm.parallel.run_all`` does it for jobs it
  is told the parts of), written as ``stage.<stage>.part.<part>.{seconds,runs}``. Runs
  side by side overlap, so parts sum to about ``workers`` × the wall time they span.
- Machine: the ``machine.*`` strings say what ran the stage, as far as its numbers can
  depend on it. A seed does not fix a model across machines: torch picks its CPU kernels
  by the instruction set, and the same code and seed trained three different DINOv2-S
  prompt models on AVX-512, on AVX2 and on another machine (reports/evidence/README.md).
"""

import platform
import resource
import sys
import time
from pathlib import Path

import psutil

from pfm.files import write_json

MEASURES = ("wall_seconds", "cpu_seconds", "peak_rss_mib")  # a metric file's keys, per stage
_parts: dict[str, list[float]] = {}  # part → seconds of each run charged to it, this process
# ru_maxrss is in KiB on Linux and in bytes on macOS
RSS_UNIT_MIB = 1 / 2**20 if sys.platform == "darwin" else 1 / 2**10


def metric_key(stage: str, measure: str) -> str:
    """``stage.<stage>.<measure>``: named by stage, so one stage's keys stay apart from
    another's where ``dvc metrics show`` lists files side by side."""
    return f"stage.{stage}.{measure}"


def stage_cost() -> dict[str, float]:
    """This process's cost so far (module docstring), keyed by ``MEASURES``."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    peak = max(own.ru_maxrss, children.ru_maxrss) * RSS_UNIT_MIB
    wall = time.time() - psutil.Process().create_time()
    return {"wall_seconds": wall, "cpu_seconds": cpu, "peak_rss_mib": peak}


def cpu_model() -> str:
    """The CPU's model name with its family and model numbers where Linux gives them
    (``AMD EPYC (family 25, model 17)``): a name alone can cover several generations."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.machine()
    if "cpu family" in fields and "model" in fields:
        return f"{name} (family {fields['cpu family']}, model {fields['model']})"
    return name


def machine() -> dict[str, str]:
    """``machine.*``: the CPU, and where the stage loaded torch (stages that do not, the
    report's, are torch-free) its version, the CPU kernels it dispatches to and the GPU it
    used."""
    out = {"machine.cpu": cpu_model()}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["machine.torch"] = str(torch.__version__)
        out["machine.torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        if torch.cuda.is_initialized():
            out["machine.gpu"] = torch.cuda.get_device_name()
    return out


def reset_parts() -> None:
    """Forget every charged part: a stage's cost file holds its own runs only."""
    _parts.clear()


def charge(part: str, seconds: float) -> None:
    """Count one run of ``seconds`` toward ``part`` of this process's stage."""
    _parts.setdefault(part, []).append(seconds)


def part_keys(stage: str) -> dict[str, float]:
    """``stage.<stage>.part.<part>.seconds`` and ``.runs`` of every charged part."""
    keys: dict[str, float] = {}
    for part, runs in sorted(_parts.items()):
        keys[f"stage.{stage}.part.{part}.seconds"] = round(sum(runs), 2)
        keys[f"stage.{stage}.part.{part}.runs"] = len(runs)
    return keys


def write_stage_cost(path: Path, stage: str) -> None:
    """Write the cost of ``stage``'s run so far to ``path`` (atomically) and print it.
    Called once the stage has succeeded: a failed run leaves no file that looks like one
    finished."""
    cost = stage_cost()
    measured = {metric_key(stage, measure): round(cost[measure], 2) for measure in MEASURES}
    write_json(path, {**measured, **part_keys(stage), **machine()})
    print(
        f"stage {stage}: {cost['wall_seconds']:.1f} s wall, {cost['cpu_seconds']:.1f} s CPU, "
        f"peak {cost['peak_rss_mib']:.0f} MiB → {path}"
    )
