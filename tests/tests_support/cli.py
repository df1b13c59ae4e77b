"""The ``confsync`` command as tests run it: a real subprocess, ``python -m stack.cli``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["confsync_argv", "confsync_env", "run_confsync", "start_confsync"]


def confsync_argv(*args: str) -> list[str]:
    """The command line of ``confsync ARGS...`` with this interpreter."""
    return [sys.executable, "-m", "stack.cli", *args]


def confsync_env(*, store: Path | None = None, **settings: str) -> dict[str, str]:
    """This environment without its CONFSYNC_ variables (a developer's own must not leak in), plus
    ``settings`` and, given ``store``, a SQLite store at that path."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONFSYNC_")}
    if store is not None:
        env["CONFSYNC_STORE_URL"] = f"sqlite:///{store}"
    env.update(settings)
    return env


def run_confsync(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``confsync ARGS...`` to its end (``env`` defaults to ``confsync_env()``); its output is
    captured as text and its exit code is the caller's to check."""
    return subprocess.run(
        confsync_argv(*args), env=_or_clean(env), capture_output=True, text=True, timeout=timeout, check=False
    )


def start_confsync(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdout: int | None = subprocess.PIPE,
    stderr: int | None = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """Start ``confsync ARGS...`` in the background (``env`` as for ``run_confsync``; stdout and
    stderr are text pipes unless told otherwise); the caller stops it."""
    return subprocess.Popen(confsync_argv(*args), env=_or_clean(env), stdout=stdout, stderr=stderr, text=True)


def _or_clean(env: Mapping[str, str] | None) -> dict[str, str]:
    return confsync_env() if env is None else dict(env)
