"""Locating a data file inside an installed distribution without importing its package."""

from importlib import metadata
from pathlib import Path


def packaged_file(distribution: str, relative: str) -> Path:
    """``relative`` (as listed in the wheel's RECORD) inside installed ``distribution``."""
    try:
        files = metadata.files(distribution) or []
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"{distribution} is not installed: bash setup.sh installs it (it ships {relative})"
        ) from None
    for entry in files:
        if str(entry) == relative:
            return Path(entry.locate()).resolve()
    raise FileNotFoundError(f"{distribution} is installed but holds no {relative}")
