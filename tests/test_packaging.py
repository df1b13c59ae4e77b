"""The built distribution carries every package and works from outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("confsync", "confsync.store", "ingest", "processors", "publishers", "sandbox", "stack")


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
    for top in ("confsync", "ingest", "processors", "publishers", "sandbox", "stack"):
        assert f"{top}/py.typed" in names
    assert not any(name.startswith("tests/") for name in names)


def test_the_wheel_declares_the_console_script(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    (entry_points,) = (name for name in archive.namelist() if name.endswith("entry_points.txt"))
    assert "confsync = confsync.cli:main" in archive.read(entry_points).decode()


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
        "from confsync.cli import app\n"
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
