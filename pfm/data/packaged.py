"""Locating data files inside an installed distribution without importing its package: the
converters' weights (``pfm.models.convert``), the text tokenizer (``pfm.data.tokens``)
and the BBC News articles (``pfm.data.bbc_news``)."""

from importlib import metadata
from pathlib import Path


def _entries(distribution: str, what: str) -> list[metadata.PackagePath]:
    """The files installed ``distribution`` lists in its RECORD; ``what`` it is needed for."""
    try:
        return list(metadata.files(distribution) or [])
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"{distribution} is not installed: bash setup.sh installs it (it ships {what})"
        ) from None


def packaged_file(distribution: str, relative: str) -> Path:
    """``relative`` (as listed in the wheel's RECORD) inside installed ``distribution``."""
    for entry in _entries(distribution, relative):
        if str(entry) == relative:
            return Path(entry.locate()).resolve()
    raise FileNotFoundError(f"{distribution} is installed but holds no {relative}")


def packaged_files(distribution: str, folder: str, suffix: str) -> list[Path]:
    """Every ``suffix`` file below ``folder`` inside installed ``distribution``, sorted."""
    found = sorted(
        Path(entry.locate()).resolve()
        for entry in _entries(distribution, f"{folder}/*{suffix}")
        if str(entry).startswith(f"{folder}/") and str(entry).endswith(suffix)
    )
    if not found:
        raise FileNotFoundError(f"{distribution} is installed but holds no {folder}/*{suffix}")
    return found
