"""``/healthz`` and ``/readyz``: anyone can ask, so they say ok or not ok and nothing else;
readiness is cached, so asking often costs the store and Pub/Sub nothing more."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette
from structlog.testing import capture_logs

from confsync.serving import ServedApp
from ingest.app import READY_CACHE_S, health_routes


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Dependency:
    """A store or topic that answers, or fails with the detail a real one gives."""

    failure: Exception | None = None
    calls: int = 0

    def check(self) -> None:
        self.calls += 1
        if self.failure is not None:
            raise self.failure


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    running: list[ServedApp] = []

    def start(clock: Clock, **checks: Dependency) -> str:
        app = Starlette(routes=health_routes({name: d.check for name, d in checks.items()}, clock=clock))
        running.append(ServedApp(app).start())
        return running[-1].url

    yield start
    for served in running:
        served.stop()


def test_healthz_says_ok_and_nothing_else(serve: Callable[..., str]) -> None:
    url = serve(Clock(), store=Dependency())
    assert httpx.get(f"{url}/healthz").json() == {"ok": True}


def test_readyz_says_not_ready_without_the_reason_which_goes_to_the_logs(serve: Callable[..., str]) -> None:
    refused = ConnectionRefusedError("pubsub.internal:8085 refused the connection")
    url = serve(Clock(), store=Dependency(), transport=Dependency(refused))
    with capture_logs() as logs:
        answer = httpx.get(f"{url}/readyz")
    assert answer.status_code == 503
    assert answer.json() == {"ready": False}
    (line,) = [line for line in logs if line["event"] == "not ready"]
    assert line["dependency"] == "transport"
    assert "pubsub.internal:8085 refused the connection" in line["error"]
    assert httpx.get(f"{url}/readyz").json() == {"ready": False}


def test_readiness_is_checked_at_most_once_per_few_seconds(serve: Callable[..., str]) -> None:
    clock, store, topic = Clock(), Dependency(), Dependency()
    url = serve(clock, store=store, transport=topic)
    answers = [httpx.get(f"{url}/readyz") for _ in range(5)]
    assert [a.json() for a in answers] == [{"ready": True}] * 5
    assert (store.calls, topic.calls) == (1, 1), "five requests, one round of checks"
    clock.now += READY_CACHE_S - 0.01
    assert httpx.get(f"{url}/readyz").status_code == 200
    assert (store.calls, topic.calls) == (1, 1)
    clock.now += 0.01
    assert httpx.get(f"{url}/readyz").status_code == 200
    assert (store.calls, topic.calls) == (2, 2), "checked again once the answer is a few seconds old"


def test_a_dependency_that_comes_back_is_seen_once_the_cached_answer_expires(serve: Callable[..., str]) -> None:
    clock, store = Clock(), Dependency(TimeoutError("store did not answer"))
    url = serve(clock, store=store)
    assert httpx.get(f"{url}/readyz").status_code == 503
    store.failure = None
    assert httpx.get(f"{url}/readyz").status_code == 503, "not ready is cached too"
    clock.now += READY_CACHE_S
    assert httpx.get(f"{url}/readyz").json() == {"ready": True}
    assert store.calls == 2
