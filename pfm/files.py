"""Atomic writes: a stage killed half-way must never leave a file that looks finished;
staged outputs: a stage whose runs write several outputs changes none of them unless
every run succeeded."""

import errno
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STAGED = ".staged-"  # in the name of a staging folder, beside the output it stands for
# a write refused for want of room: a full disk, a file-size limit (ulimit -f), a quota
NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
# the note a convert stage leaves in place of a model no backbone param selects; loading
# that folder reports it (pfm.models.backbones), so both read the name from here
NOT_CONVERTED = "NOT_CONVERTED.txt"


def not_written(error: OSError, path: str | Path) -> OSError:
    """``error``, a write refused for want of room, as one naming ``path``: the write
    itself raises it without a file name (numpy, torch and json write to an open file)."""
    return OSError(error.errno, f"not written ({os.strerror(error.errno)})", str(path))


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename the result onto ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    except OSError as error:
        if error.errno in NO_SPACE:
            raise not_written(error, path) from None
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


def write_atomic_dir(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_dir)`` then swap the finished folder in for ``path``: the old
    folder is renamed aside first, so ``path`` is never a half-written folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    old = tmp.with_suffix(".old")
    try:
        write(tmp)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    except OSError as error:
        if error.errno in NO_SPACE:
            raise not_written(error, path) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


Place = Callable[[Path], Path]  # an output's final path → where to write it for now (Staging.path)


class Staging:
    """A stage's outputs, written aside and moved into place together.

    Runs side by side (``pfm.parallel``) each write their own outputs; written in place,
    one failing run left its neighbours' new files beside the old files of the rest, so
    the stage's outputs were half new, half old. Each output is written to ``path(final)``
    instead, a fresh folder beside ``final`` (the same file system: moving it is a
    rename), and ``commit`` moves every one into place once all runs have returned.
    Checkpoints are not outputs: they are written in place, so a failed stage still
    resumes.

    ``roots`` are the stage's output folders (DVC's ``outs``). A file below one is written
    into that folder's staging copy, not into a staging folder beside the file: a run
    killed before ``commit`` then leaves its staging beside the output, never inside it,
    where DVC would see the output changed."""

    def __init__(self, roots: Sequence[str | Path] = ()) -> None:
        self._staged: dict[Path, Path] = {}  # final path → where it is written for now
        self._made: list[Path] = []  # folders made to hold staging folders, outermost first
        self._roots = [Path(root) for root in roots]

    def _root_of(self, final: Path) -> Path | None:
        """The output folder ``final`` lies below, however either path is spelled."""
        inside = final.resolve()
        return next((r for r in self._roots if r.resolve() in inside.parents), None)

    def path(self, final: str | Path) -> Path:
        """Where to write ``final`` until ``commit`` (its folder exists). Staging folders a
        killed run left beside it, or beside its output folder, are removed first."""
        final = Path(final)
        if final in self._staged:
            return self._staged[final]
        root = self._root_of(final)
        if root is not None:
            below = self.path(root) / final.resolve().relative_to(root.resolve())
            below.parent.mkdir(parents=True, exist_ok=True)
            return below
        missing = [p for p in (final.parent, *final.parent.parents) if not p.exists()]
        self._made += reversed(missing)
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in glob.glob(glob.escape(str(final.parent / f".{final.name}{STAGED}")) + "*"):
            shutil.rmtree(stale, ignore_errors=True)
        folder = tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}{STAGED}")
        self._staged[final] = Path(folder) / final.name
        return self._staged[final]

    def commit(self) -> None:
        """Move every staged output that was written onto its final path (a folder
        replaces the old folder whole), then remove the staging folders."""
        for final, staged in self._staged.items():
            if staged.exists():
                if final.exists() and (final.is_dir() or staged.is_dir()):
                    os.replace(final, staged.with_name(f"{staged.name}.old"))
                os.replace(staged, final)
        self.discard()

    def final(self, path: str | Path) -> Path:
        """The final path a path below a staged output stands for (others: as given)."""
        path = Path(path)
        for final, staged in self._staged.items():
            if path == staged or staged in path.parents:
                return final / path.relative_to(staged)
        return path

    def discard(self) -> None:
        """Remove every staged output, and the folders made for them that stayed empty:
        the final paths stay as they were."""
        for staged in self._staged.values():
            shutil.rmtree(staged.parent, ignore_errors=True)
        for folder in reversed(self._made):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        self._staged.clear()
        self._made.clear()


@contextmanager
def staged(*roots: str | Path) -> Iterator[Staging]:
    """A ``Staging`` of the output folders ``roots``, committed when the block ends
    normally and discarded when it raises."""
    staging = Staging(roots)
    try:
        yield staging
    except OSError as error:
        named = error.filename is not None and error.errno in NO_SPACE
        final = staging.final(error.filename) if named else None
        staging.discard()
        if final is not None:
            raise not_written(error, final) from None
        raise
    except BaseException:
        staging.discard()
        raise
    staging.commit()


def write_json(path: str | Path, payload: Mapping[str, Any]) -> None:
    def dump(tmp: Path) -> None:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")

    write_atomic(path, dump)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in chunks (prepared data can be gigabytes)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
