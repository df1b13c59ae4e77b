"""Imports point one way: stages import ``confsync``, never each other; ``stack``, the
composition root and the ``confsync`` command, composes the stages and nothing imports it;
``confsync`` imports no stage and not ``stack`` (docs/ARCHITECTURE.md, "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("ingest", "processors", "publishers", "accounts", "sandbox")
PACKAGES = ("confsync", *STAGES, "stack")


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_no_other_stage(stage: str) -> None:
    for path in sources(stage):
        forbidden = imported_top_levels(path) & (set(STAGES) - {stage} | {"stack"})
        assert not forbidden, f"{path.relative_to(ROOT)} imports {sorted(forbidden)}"


def test_the_kernel_imports_no_stage_and_not_the_composition_root() -> None:
    for path in sources("confsync"):
        forbidden = imported_top_levels(path) & {*STAGES, "stack"}
        assert not forbidden, f"{path.relative_to(ROOT)} imports {sorted(forbidden)}"


def test_the_scan_sees_every_package() -> None:
    for package in PACKAGES:
        assert sources(package), f"no sources found for {package}"


def test_the_scan_would_catch_a_violation(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import ingest.webhook\nfrom processors import sync\nfrom . import local\n")
    assert imported_top_levels(module) == {"ingest", "processors"}
