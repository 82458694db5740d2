"""Each stage of dvc.yaml depends on the modules it imports, and on no other part of
``pfm``: a change reruns the stages that run the changed code, and only those.

The imports are read from the source (``ast``), not by running it, at test time: a module
added anywhere in ``pfm`` is checked as soon as some stage imports it. Every import
counts, those inside functions too (``python -m pfm.models.convert`` imports its
converter in a branch), and so does each package ``__init__.py`` Python runs on the way
to a module. A stage script's code is the closure of its ``pfm`` imports, itself
included."""

import ast
import re
from pathlib import Path

import pytest
import yaml

from pfm.attacks.probes import ood_candidates
from pfm.derive import RETRAIN_FROM_PLAIN
from tests.conftest import PROFILES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "pfm"
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
ENTRY = re.compile(r"\bpython (?:-m (?P<module>[\w.]+)|(?P<script>\S+\.py))")


def module_file(root: Path, name: str) -> Path | None:
    """The file Python runs for module ``name`` below ``root``; ``None`` for a name that is
    not a module there (a function or class imported by name, a namespace package)."""
    base = root.joinpath(*name.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def with_parents(root: Path, name: str) -> set[str]:
    """``name`` and every package above it that is a module of ``PACKAGE`` under ``root``:
    importing ``pfm.a.b`` runs ``pfm/__init__.py`` and ``pfm/a/__init__.py`` first."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return set()
    names = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {n for n in names if module_file(root, n) is not None}


def imports(root: Path, path: Path, name: str) -> set[str]:
    """The ``PACKAGE`` modules that module ``name`` (source ``path``) imports anywhere in
    its body; ``from m import x`` imports ``m.x`` when that is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found |= with_parents(root, alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([module] if module else [])])
            found |= with_parents(root, module)
            for alias in node.names:
                found |= with_parents(root, f"{module}.{alias.name}")
    return found


def closure(root: Path, path: Path, name: str) -> set[Path]:
    """Every file of ``PACKAGE`` that running module ``name`` (source ``path``) runs,
    ``path`` included, relative to ``root``."""
    seen = with_parents(root, name)
    todo = [(path, name), *((module_file(root, n), n) for n in seen if n != name)]
    files = {path.relative_to(root)}
    while todo:
        source, module = todo.pop()
        assert source is not None
        files.add(source.relative_to(root))
        for imported in imports(root, source, module) - seen:
            seen.add(imported)
            todo.append((module_file(root, imported), imported))
    return files


def stage_code(cmd: str) -> set[Path]:
    """The files of ``PACKAGE`` (and the script) that a stage's command runs."""
    entry = ENTRY.search(" ".join(cmd.split()))
    assert entry is not None, f"no python entry point in {cmd!r}"
    if entry.group("script"):
        return closure(ROOT, ROOT / entry.group("script"), "__main__")
    module = f"{entry.group('module')}.__main__"
    path = module_file(ROOT, module)
    assert path is not None, f"{module}: no such module"
    return closure(ROOT, path, module)


def covers(dep: str, file: Path) -> bool:
    """Whether DVC dependency ``dep`` (a file or a folder) holds ``file``."""
    return file.as_posix() == dep or file.as_posix().startswith(f"{dep.rstrip('/')}/")


def code_deps(stage: dict) -> list[str]:
    """A stage's deps that are code: the ``PACKAGE`` folder's and the stage scripts'."""
    return [d for d in stage["deps"] if d.split("/")[0] in (PACKAGE, "stages")]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_deps_cover_every_imported_module(name: str) -> None:
    stage = STAGES[name]
    missing = sorted(
        f.as_posix()
        for f in stage_code(stage["cmd"])
        if not any(covers(d, f) for d in stage["deps"])
    )
    assert not missing, f"stage {name} runs these files but does not depend on them: {missing}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_deps_name_no_code_the_stage_does_not_run(name: str) -> None:
    """A file or folder of code nothing imports would rerun the stage for nothing; the
    whole package is one such dependency."""
    stage = STAGES[name]
    code = stage_code(stage["cmd"])
    unused = [d for d in code_deps(stage) if not any(covers(d, f) for f in code)]
    assert not unused, f"stage {name} depends on code it does not run: {unused}"
    assert PACKAGE not in code_deps(stage), f"stage {name} depends on all of {PACKAGE}/"


def test_closure_follows_every_kind_of_import(tmp_path: Path) -> None:
    files = {
        "pfm/__init__.py": "",
        "pfm/a/__init__.py": "from pfm.a import b\n",
        "pfm/a/b.py": "from .c import thing\n",
        "pfm/a/c.py": "def thing():\n    import pfm.d.e\n",
        "pfm/d/e.py": "import numpy\nfrom pfm.f import name\n",  # pfm/d: namespace package
        "pfm/f.py": "name = 1\n",
        "pfm/unused.py": "",
        "main.py": "from pfm.a.b import thing\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = {p.as_posix() for p in closure(tmp_path, tmp_path / "main.py", "__main__")}
    assert found == set(files) - {"pfm/unused.py"}
    entry = tmp_path / "pfm/a/c.py"  # run as a module, its packages' __init__ run first
    found = {p.as_posix() for p in closure(tmp_path, entry, "pfm.a.c")}
    assert found == set(files) - {"pfm/unused.py", "main.py"}


@pytest.mark.parametrize("name", ["train", "unlearn"])
def test_training_and_unlearning_run_no_attack_code(name: str) -> None:
    """Only the attacks import ``pfm.attacks``: an attack's edit reruns no model's training."""
    code = stage_code(STAGES[name]["cmd"])
    assert not [f for f in code if covers(f"{PACKAGE}/attacks", f)]


def listed_params(stage: dict) -> list[str]:
    """A stage's params entries from params.yaml (a file's own entries aside)."""
    return [p for p in stage.get("params", []) if isinstance(p, str)]


def reads(listed: list[str], key: str) -> bool:
    """Whether params entries ``listed`` cover ``key``: the key itself or a section above it."""
    return any(key == entry or key.startswith(f"{entry}.") for entry in listed)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_stage_reading_a_derived_recipe_depends_on_what_it_is_derived_from(name: str) -> None:
    """``unlearn.retrain``'s unset keys follow ``train_base``, whose follow ``train``
    (``pfm.derive``): a stage reading it and not them is served from DVC's run-cache with
    the old source's values (stage hand-recipes was: ``-S train_base.epochs=3`` left
    retrain's recipe at 10 epochs)."""
    listed = listed_params(STAGES[name])
    if not reads(listed, "unlearn.retrain"):
        return
    sources = [
        f"{section}.{key}" for key in RETRAIN_FROM_PLAIN for section in ("train_base", "train")
    ]
    assert not [s for s in sources if not reads(listed, s)], f"{name} misses some of {sources}"


def ood_probe_datasets() -> set[str]:
    """Every dataset ``attacks.recovery.ood_datasets`` names, in params.yaml or a profile."""
    names: set[str] = set()
    for path in (ROOT / "params.yaml", *PROFILES):
        recovery = (yaml.safe_load(path.read_text()).get("attacks") or {}).get("recovery") or {}
        for choice in (recovery.get("ood_datasets") or {}).values():
            names.update(ood_candidates(choice))
    return names


def test_the_attack_depends_on_the_data_params_of_every_ood_probe_it_can_build() -> None:
    """The attack builds its OOD probe from ``data.<name>`` (``pfm.attacks.probes``)."""
    listed = listed_params(STAGES["attack"])
    probes = ood_probe_datasets()
    assert {"fashion-mnist", "bbc-news", "digits"} <= probes
    assert not [n for n in sorted(probes) if not reads(listed, f"data.{n}")]
