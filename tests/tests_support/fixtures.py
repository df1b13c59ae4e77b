"""Shared fixtures (loaded by tests/conftest.py): the sandboxes, each served over real HTTP on a free loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from confsync.serving import ServedApp
from sandbox.calendar import CalendarSandbox, create_app
from sandbox.calendar.server import build_sandbox
from sandbox.provider import create_app as create_provider_app
from sandbox.provider.server import build_sandbox as build_provider
from tests_support import FAST_RETRY, PROVIDER_KEY, RunningCalendar, RunningProvider, Webhook


def serve_calendar(sandbox: CalendarSandbox) -> Iterator[RunningCalendar]:
    sandbox.retry = FAST_RETRY
    with ServedApp(create_app(sandbox)) as served:
        running = RunningCalendar(sandbox, served.url)
        try:
            yield running
        finally:
            running.close()


@pytest.fixture
def calendar_sandbox() -> Iterator[RunningCalendar]:
    yield from serve_calendar(build_sandbox())


@pytest.fixture
def calendar(calendar_sandbox: RunningCalendar) -> Any:
    """A Calendar service (google-api-python-client) on the sandbox."""
    return calendar_sandbox.service()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()

    async def receive(request: Request) -> Response:
        body = await request.body()
        if hook.gate is not None:
            await asyncio.to_thread(hook.gate.wait, 30)
        with hook._lock:
            status = hook.answers.pop(0) if hook.answers else 200
            hook.received.append(
                {**{k.lower(): v for k, v in request.headers.items()}, "_body": body.decode(), "_status": str(status)}
            )
        return Response(status_code=status)

    with ServedApp(Starlette(routes=[Route("/notifications", receive, methods=["POST"])])) as served:
        hook.url = f"{served.url}/notifications"
        yield hook


@pytest.fixture
def provider_sandbox() -> Iterator[RunningProvider]:
    with ServedApp(create_provider_app(build_provider(api_key=PROVIDER_KEY))) as served:
        yield RunningProvider(served.url)
