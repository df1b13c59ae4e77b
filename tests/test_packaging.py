"""The built distribution carries every package and works from outside the source tree; what the
code imports is declared, locked with hashes, and the image installs the production lock only."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "confsync",
    "confsync.store",
    "accounts",
    "ingest",
    "processors",
    "publishers",
    "sandbox",
    "stack",
    "stack.cli",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("confsync-*.whl")
    return built


def test_the_wheel_holds_every_package_with_its_type_marker(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in PACKAGES:
        folder = package.replace(".", "/")
        assert f"{folder}/__init__.py" in names
    for top in ("confsync", "accounts", "ingest", "processors", "publishers", "sandbox", "stack"):
        assert f"{top}/py.typed" in names
    assert not any(name.startswith("tests/") for name in names)


def test_the_wheel_declares_the_console_script(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    (entry_points,) = (name for name in archive.namelist() if name.endswith("entry_points.txt"))
    assert "confsync = stack.cli:main" in archive.read(entry_points).decode()


def test_every_package_imports_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    probe = (
        "import importlib, sys\n"
        f"sys.path.insert(0, {str(target)!r})\n"
        f"for name in {PACKAGES!r}:\n"
        "    module = importlib.import_module(name)\n"
        f"    assert module.__file__.startswith({str(target)!r}), (name, module.__file__)\n"
        "from stack.cli import app\n"
        "print('ok')\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_dockerfile_copies_every_package_and_runs_confsync_by_argument() -> None:
    """The image builds from a clean checkout: what it copies exists and is all the wheel needs;
    the role is the container's argument (no docker daemon here, so the build itself is not run)."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    copies = [line.split()[1:-1] for line in lines if line.startswith("COPY ") and "--from" not in line]
    copied = {source for sources in copies for source in sources}
    for source in copied:
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which the checkout lacks"
    tops = {package.split(".")[0] for package in PACKAGES}
    assert tops <= copied, f"the image misses {sorted(tops - copied)}"
    assert '["confsync"]' in next(line for line in lines if line.startswith("ENTRYPOINT"))
    command = next(line for line in lines if line.startswith("CMD"))
    assert '"serve", "all"' in command
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not tops & set(ignored), "a package the image needs is docker-ignored"


# -- dependencies: declared, locked with hashes, and the image without the sandboxes' ---------------

LOCKS = ROOT / "requirements"
PRODUCTION_CODE = ("confsync", "accounts", "ingest", "processors", "publishers", "stack")
SANDBOX_ONLY = {
    "fastapi",
    "pydantic",
    "python-dateutil",
}  # what the sandboxes add, by distribution (authlib and joserfc are confsync's own: accounts/)
FIRST_PARTY = {
    "confsync",
    "accounts",
    "ingest",
    "processors",
    "publishers",
    "stack",
    "sandbox",
    "bench",
    "tests",
    "tests_support",
}
FIRST_PARTY |= {script.stem for script in (ROOT / "bench").glob("*.py")}  # a benchmark imports its neighbours
LOCK_ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?:\s*;\s*([^\\]+?))?\s*\\?$")


def declared() -> dict[str, list[Requirement]]:
    """[project] dependencies and each extra, with the extras that name confsync itself expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups = {"": project["dependencies"], **project["optional-dependencies"]}
    parsed = {name: [Requirement(text) for text in texts] for name, texts in groups.items()}
    for requirements in parsed.values():
        for own in [r for r in requirements if r.name == "confsync"]:
            requirements.remove(own)
            requirements.extend(r for extra in own.extras for r in parsed[extra])
    return parsed


def read_lock(name: str) -> dict[str, tuple[str, Marker | None, int]]:
    """name -> (version, marker, number of hashes) for each pin of requirements/NAME.txt."""
    pins: dict[str, tuple[str, Marker | None, int]] = {}
    current = ""
    for line in (LOCKS / f"{name}.txt").read_text(encoding="utf-8").splitlines():
        if match := LOCK_ENTRY.match(line):
            current = canonicalize_name(match.group(1))
            marker = Marker(match.group(3)) if match.group(3) else None
            pins[current] = (match.group(2), marker, 0)
        elif line.strip().startswith("--hash=sha256:"):
            version, marker, hashes = pins[current]
            pins[current] = (version, marker, hashes + 1)
        else:
            assert not line.strip() or line.lstrip().startswith("#"), f"{name}.txt: unexpected line {line!r}"
    return pins


def applicable(pins: dict[str, tuple[str, Marker | None, int]]) -> dict[str, str]:
    """The pins this interpreter installs (their markers evaluated here), name -> version."""
    return {name: version for name, (version, marker, _) in pins.items() if marker is None or marker.evaluate()}


def closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution the requirements pull in on this interpreter, from installed metadata."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [r for r in requirements if r.marker is None or r.marker.evaluate()]
    while todo:
        requirement = todo.pop()
        name, extras = canonicalize_name(requirement.name), frozenset(requirement.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for text in importlib.metadata.requires(name) or []:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in extras | {""}):
                todo.append(child)
    return {name for name, _ in seen}


def test_the_locks_pin_every_package_with_hashes_and_cover_what_pyproject_declares() -> None:
    groups = declared()
    wanted = {
        "production": groups[""],
        "dev": groups[""] + groups["sandbox"] + groups["dev"],
        "build": [Requirement("pip"), Requirement("setuptools>=68")],
    }
    for lock, requirements in wanted.items():
        pins = read_lock(lock)
        assert all(hashes for _, _, hashes in pins.values()), f"{lock}.txt: a pin without --hash"
        for requirement in requirements:
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{lock}.txt does not pin {requirement.name} (run scripts/lock)"
            assert requirement.specifier.contains(pins[name][0], prereleases=True), (
                f"{lock}.txt pins {name}=={pins[name][0]}, outside pyproject's {requirement} (run scripts/lock)"
            )


def test_the_locks_hold_exactly_what_their_requirements_pull_in() -> None:
    """Nothing missing (an install with --require-hashes would fail) and nothing stale, judged by
    the metadata of what this venv installed, which must be the dev lock's pins."""
    dev = applicable(read_lock("dev"))
    installed = {name: importlib.metadata.version(name) for name in dev}
    assert installed == dev, "this venv is not what requirements/dev.txt pins: run scripts/setup-venv dev"
    groups = declared()
    assert set(dev) == closure(groups[""] + groups["sandbox"] + groups["dev"])
    production = applicable(read_lock("production"))
    assert set(production) == closure(groups[""])
    assert production.items() <= dev.items(), "the image would run other versions than the tests ran"
    build = applicable(read_lock("build"))
    assert build["setuptools"] == dev["setuptools"]


def test_the_production_lock_leaves_out_what_only_the_sandboxes_need() -> None:
    groups = declared()
    assert {canonicalize_name(r.name) for r in groups["sandbox"]} == SANDBOX_ONLY
    assert not SANDBOX_ONLY & {canonicalize_name(r.name) for r in groups[""]}
    production = set(read_lock("production"))
    # pydantic stays: typer (from 0.29) parses command-line values with it
    assert production & SANDBOX_ONLY == {"pydantic"}
    assert "pydantic" in closure([Requirement("typer")])


def module_owners() -> dict[str, set[str]]:
    """Dotted module name -> the installed distributions whose files provide it."""
    owners: dict[str, set[str]] = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or []:
            parts = file.parts
            if not parts or parts[0].endswith((".dist-info", ".data")) or parts[0] == "..":
                continue
            stem = parts[-1].split(".")[0]
            if parts[-1].endswith((".py", ".so", ".pyd")):
                module = parts[:-1] if stem == "__init__" else (*parts[:-1], stem)
                owners.setdefault(".".join(module), set()).add(canonicalize_name(dist.metadata["Name"]))
    return owners


def imported_modules(folder: Path) -> set[str]:
    """Absolute imports anywhere in the folder's Python files (inside functions too), with
    `from X import Y` also seen as X.Y so namespace packages (google.cloud) resolve."""
    found: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return {name for name in found if name.split(".")[0] not in sys.stdlib_module_names | FIRST_PARTY}


def owner_of(module: str, owners: dict[str, set[str]]) -> set[str]:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if found := owners.get(".".join(parts[:end])):
            return found
    return set()


def test_every_third_party_import_is_declared() -> None:
    groups = declared()
    names = {key: {canonicalize_name(r.name) for r in value} for key, value in groups.items()}
    allowed = dict.fromkeys(PRODUCTION_CODE, names[""])
    allowed["sandbox"] = names[""] | names["sandbox"]
    allowed["bench"] = allowed["tests"] = names[""] | names["sandbox"] | names["dev"]
    owners = module_owners()
    undeclared: dict[str, str] = {}
    checked = 0
    for folder, declared_names in allowed.items():
        modules = imported_modules(ROOT / folder)
        for module in sorted(modules):
            dists = owner_of(module, owners)
            if not dists and any(other.startswith(f"{module}.") for other in modules):
                continue  # a namespace package (google.cloud): its modules are checked one by one
            checked += 1
            if not dists & declared_names:
                undeclared.setdefault(f"{folder}: {' or '.join(sorted(dists)) or 'nothing installed'}", module)
    assert checked > 40, "the import reader found too few imports to be reading the code"
    assert not undeclared, "imported but not declared in pyproject.toml:\n" + "\n".join(
        f"{where} (import {module})" for where, module in sorted(undeclared.items())
    )


BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not in the production image")
sys.meta_path.insert(0, Block())
"""


def test_the_services_import_nothing_of_the_sandboxes_extra() -> None:
    """Every module of the production packages imports, and a service's command line parses,
    with fastapi, pydantic and dateutil unimportable (the image has neither fastapi nor dateutil;
    pydantic it has for typer, which imports it only to parse arguments)."""
    probe = BLOCKER.format(blocked={"fastapi", "pydantic", "pydantic_core", "dateutil"}) + (
        "import importlib, pkgutil\n"
        f"for top in {PRODUCTION_CODE!r}:\n"
        "    package = importlib.import_module(top)\n"
        "    for info in pkgutil.walk_packages(package.__path__, top + '.'):\n"
        "        if not info.name.endswith('__main__'):\n"
        "            importlib.import_module(info.name)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
    cli = BLOCKER.format(blocked={"fastapi", "dateutil"}) + (
        "import sys\nfrom stack.cli import main\nsys.argv = ['confsync', *sys.argv[1:]]\nmain()\n"
    )
    for args in (["serve", "ingest", "--help"], ["serve", "processor", "--help"], ["serve", "all", "--help"]):
        done = subprocess.run(
            [sys.executable, "-c", cli, *args], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"confsync {' '.join(args)}: {done.stderr[-3000:]}"


def test_the_image_installs_the_production_lock_with_hashes_on_a_base_pinned_by_digest() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    logical = re.sub(r"\\\n\s*", " ", text).splitlines()
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.MULTILINE)
    assert re.fullmatch(r"python:3\.11[\w.-]*@sha256:[0-9a-f]{64}", base), "tag and digest, both"
    froms = [line for line in logical if line.startswith("FROM ")]
    assert froms, "no FROM"
    assert all(line.split()[1] == "${PYTHON_IMAGE}" for line in froms)
    installs = [part for line in logical if line.startswith("RUN ") for part in line.split("&&") if "pip " in part]
    assert installs
    for command in installs:
        assert "--upgrade" not in command, f"an unpinned upgrade: {command}"
        local_wheels = "--no-deps" in command and ("/wheels" in command or command.rstrip().endswith(" ."))
        assert local_wheels or "--require-hashes" in command, f"installs without hashes: {command}"
    required = [m for command in installs for m in re.findall(r"--requirement (\S+)", command)]
    assert sorted(Path(r).name for r in required) == ["build.txt", "build.txt", "production.txt"]
    assert "dev.txt" not in text


def test_setup_venv_installs_from_the_locks_and_again_only_when_they_change(tmp_path: Path) -> None:
    """The script runs in a copy of the tree whose .venv/bin/python only records its arguments."""
    for name in ("pyproject.toml", "requirements/build.txt", "requirements/dev.txt", "scripts/setup-venv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    calls = tmp_path / "calls.log"
    fake = tmp_path / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n', encoding="utf-8")
    fake.chmod(0o755)

    def run() -> list[str]:
        calls.unlink(missing_ok=True)
        env = {**os.environ, "PYTHON": sys.executable}
        subprocess.run(["bash", "scripts/setup-venv"], cwd=tmp_path, env=env, check=True, capture_output=True)
        return calls.read_text(encoding="utf-8").splitlines() if calls.exists() else []

    first = run()
    assert first == [
        "-m pip install --quiet --require-hashes --requirement requirements/build.txt",
        "-m pip install --quiet --require-hashes --requirement requirements/dev.txt",
        "-m pip install --quiet --no-deps --no-build-isolation --editable .",
    ]
    assert run() == []
    with (tmp_path / "requirements" / "dev.txt").open("a", encoding="utf-8") as lock:
        lock.write("# relocked\n")
    assert run() == first
    assert run() == []
