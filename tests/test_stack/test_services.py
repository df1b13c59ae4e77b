"""``confsync serve ROLE``: health and readiness routes, and clear refusals at start."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs
from tests_support import PROVIDER_KEY, RunningCalendar, RunningProvider
from tests_support.cli import confsync_env, run_confsync

from confsync.errors import ConfigError
from confsync.serving import ServedApp, free_port
from confsync.settings import Secret, Settings
from confsync.store import ChannelState
from stack.root import Stack
from stack.services import Role, Service, build_service


@pytest.fixture
def settings_for(
    tmp_path: Path, calendar_sandbox: RunningCalendar, provider_sandbox: RunningProvider
) -> Callable[..., Settings]:
    """Settings for a service on both sandboxes and a SQLite store, with ``extra`` on top."""

    def settings(**extra: object) -> Settings:
        values: dict[str, object] = {
            "project_id": "confsync-test",
            "store_url": f"sqlite:///{tmp_path / 'state.sqlite'}",
            "local_mode": True,
            "dev_token": Secret("dev"),
            "calendar_api_endpoint": calendar_sandbox.api_endpoint,
            "provider_url": provider_sandbox.url,
            "provider_api_key": Secret(PROVIDER_KEY),
            "webhook_url": "http://127.0.0.1:9/notifications",
            "pubsub_timeout_s": 2,
        }
        values.update(extra)
        return Settings(**values)  # type: ignore[arg-type]

    return settings


@pytest.fixture
def served() -> Iterator[list[tuple[Service, ServedApp]]]:
    running: list[tuple[Service, ServedApp]] = []
    yield running
    for service, app in running:
        app.stop()
        service.stop(5)


def serve(running: list[tuple[Service, ServedApp]], settings: Settings, role: Role) -> str:
    service = build_service(settings, role)
    app = ServedApp(service.app).start()
    running.append((service, app))
    return app.url


def test_serve_all_in_process_is_healthy_and_ready(
    settings_for: Callable[..., Settings], served: list[tuple[Service, ServedApp]]
) -> None:
    url = serve(served, settings_for(transport="memory"), Role.ALL)
    assert httpx.get(f"{url}/healthz").json() == {"ok": True}, "public: no pid, no role"
    assert httpx.get(f"{url}/readyz").json() == {"ready": True}
    assert httpx.post(f"{url}/notifications").status_code == 400, "the ingest routes are mounted"


def test_serve_all_fans_channel_renewal_out_over_its_own_queues(
    settings_for: Callable[..., Settings], served: list[tuple[Service, ServedApp]], calendar_sandbox: RunningCalendar
) -> None:
    """The local stack's renewal tick is the scheduler's: it publishes, and the same process's
    channel-work worker renews."""
    settings = settings_for(transport="memory", channel_ttl_s=86400)
    calendar_sandbox.admin("POST", "/_sandbox/calendars", {"id": "alice@example.com"})
    with Stack(replace(settings, channel_ttl_s=3600)) as stack:  # a channel expiring within the hour
        old = stack.channels.ensure("alice@example.com")
    url = serve(served, settings, Role.ALL)

    answer = httpx.post(f"{url}/tasks/renew-channels", params={"before": 7200}, timeout=10)

    assert answer.json() == {"calendars": 1, "more": False}
    with Stack(settings) as stack:
        deadline = time.monotonic() + 20
        while stack.store.get_channel(old.channel_id).state is ChannelState.LIVE:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the channel-work worker never renewed it"
            time.sleep(0.05)
        (new,) = stack.store.live_channels("alice@example.com")
        assert new.expiration > old.expiration


def test_readyz_is_not_ready_without_pubsub_and_only_the_logs_say_why(
    settings_for: Callable[..., Settings], served: list[tuple[Service, ServedApp]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nothing listens there
    settings = settings_for(delivery="push")
    url = serve(served, settings, Role.PUBLISHER)
    with capture_logs() as logs:
        answer = httpx.get(f"{url}/readyz", timeout=10)
    assert answer.status_code == 503
    assert answer.json() == {"ready": False}
    assert {line["dependency"] for line in logs if line["event"] == "not ready"} == {"transport"}
    assert httpx.get(f"{url}/healthz").status_code == 200, "alive, just not ready"


def test_readyz_is_ready_when_pubsub_answers(
    settings_for: Callable[..., Settings], served: list[tuple[Service, ServedApp]], pubsub_emulator_host: str
) -> None:
    from google.cloud import pubsub_v1  # noqa: PLC0415 - only this test talks to the emulator itself

    settings = settings_for(delivery="push")
    admin = pubsub_v1.PublisherClient()
    admin.create_topic(name=admin.topic_path(settings.project_id, settings.topic_calendar_changes))
    admin.transport.close()
    url = serve(served, settings, Role.INGEST)
    assert httpx.get(f"{url}/readyz", timeout=10).json() == {"ready": True}
    assert pubsub_emulator_host


def test_a_role_that_cannot_run_is_refused_naming_the_setting(settings_for: Callable[..., Settings]) -> None:
    base = settings_for()
    with pytest.raises(ConfigError, match="serve all"):
        build_service(replace(base, transport="memory"), Role.PROCESSOR)
    with pytest.raises(ConfigError, match="CONFSYNC_WEBHOOK_URL"):
        build_service(replace(base, webhook_url=None), Role.INGEST)
    with pytest.raises(ConfigError, match="CONFSYNC_ADDON_AUDIENCE"):
        build_service(replace(base, local_mode=False), Role.INGEST)
    on_cloud_run = replace(
        base, local_mode=False, addon_audience="addon", push_auth="platform", cloud_run_service="ingest"
    )
    with pytest.raises(ConfigError, match="CONFSYNC_PUSH_AUTH"):  # ingest is public: it checks signatures itself
        build_service(on_cloud_run, Role.INGEST)


def test_the_cli_says_what_is_wrong_and_exits_2(tmp_path: Path) -> None:
    env = confsync_env(store=tmp_path / "s.sqlite", CONFSYNC_TRANSPORT="memory")
    done = run_confsync("serve", "ingest", env=env)
    assert done.returncode == 2
    assert "serve all" in done.stderr
    assert "Traceback" not in done.stderr


class _SlowToDrain:
    """A worker whose in-flight message needs ``need_s`` to finish."""

    def __init__(self, need_s: float) -> None:
        self.need_s = need_s
        self.given: float | None = None

    def stop(self, deadline_s: float) -> bool:
        self.given = deadline_s
        time.sleep(min(deadline_s, self.need_s))
        return deadline_s >= self.need_s


def test_a_service_drains_within_one_deadline_however_many_workers_it_has() -> None:
    """Cloud Run kills the instance when its SIGTERM grace ends: the deadline is for all the
    workers together, not for each in turn."""
    from starlette.applications import Starlette  # noqa: PLC0415

    workers = [_SlowToDrain(5.0), _SlowToDrain(5.0), _SlowToDrain(5.0)]
    service = Service(Starlette(), workers=list(workers))
    started = time.monotonic()
    assert service.stop(0.6) is False, "they did not finish: said so"
    assert time.monotonic() - started < 1.2
    assert workers[-1].given is not None
    assert workers[-1].given < 0.1, "the last worker gets what the first ones left"
