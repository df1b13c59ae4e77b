"""confsync's services composed from Settings: what ``confsync serve ROLE`` runs.

A role is one Cloud Run service (``ingest``, ``processor``, ``publisher``) or all three in
one process (``all``). The in-process transport (``CONFSYNC_TRANSPORT=memory``) only allows
``all``: its queues live in one process. Every role serves HTTP with ``GET /healthz`` (the
process is up) and ``GET /readyz`` (the store and the transport answered within 2 s, asked at
most every few seconds: 200 or 503, the reason in the logs; ``ingest.app.health_routes``), plus:

- ingest: the webhook, the add-on API and the scheduler's channel routes (``ingest.app``);
- processor / publisher with push delivery: their push routes; with pull delivery
  (``CONFSYNC_DELIVERY=pull``, the default) a streaming-pull worker instead.

``Service.stop`` drains: workers stop pulling and finish in-flight messages within the
deadline, then clients close.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from functools import partial
from typing import Protocol

import structlog
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from confsync.calendar import CalendarClients
from confsync.errors import ConfigError
from confsync.oidc import OidcVerifier
from confsync.ports import Publisher, Store
from confsync.provider import HttpConferenceProvider
from confsync.serving import ServedApp
from confsync.settings import Settings
from confsync.store import open_store
from confsync.transport.base import DeadLetter, Handler
from confsync.transport.memory import MemoryBroker, MemoryWorker
from confsync.transport.pubsub import PubSubWorker, open_publisher
from confsync.transport.pubsub.unary import PubSubUnaryWorker
from confsync.transport.push import push_verifier
from confsync.transport.runner import Stoppable, run_until_signalled
from confsync.transport.topology import topology
from ingest.app import IngestParts, health_routes, ingest_routes
from ingest.channels import ChannelManager
from ingest.lag import LagLoop, LagRepair
from ingest.webhook import WebhookStats
from processors.app import processor_push_route
from processors.worker import CalendarWorker
from publishers.app import build_applier, publisher_push_route

__all__ = ["Role", "Service", "build_service", "check_config", "run_service"]

log = structlog.get_logger(__name__)

READY_TIMEOUT_S = 2.0


class Role(StrEnum):
    INGEST = "ingest"
    PROCESSOR = "processor"
    PUBLISHER = "publisher"
    ALL = "all"

    def runs(self, role: Role) -> bool:
        return self in (role, Role.ALL)


@dataclass
class Service:
    """One running role: its HTTP app, its pull workers, and what to close after them."""

    app: Starlette
    workers: list[Stoppable] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def stop(self, deadline_s: float) -> bool:
        """Drain the workers within ``deadline_s`` in all, then close every client; True if all drained."""
        ends_at = time.monotonic() + deadline_s
        clean = all([worker.stop(max(ends_at - time.monotonic(), 0.0)) for worker in self.workers])  # noqa: C419 - stop every one
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                close()
        return clean


class _Transport(Protocol):
    """How a role's messages travel: Pub/Sub (emulator or Google) or in-process queues."""

    publisher: Publisher

    def worker(self, subscription: str, handler: Handler, dead_topic: str) -> Stoppable: ...

    def check(self) -> None:
        """Raise if the transport cannot be reached."""
        ...

    def close(self) -> None: ...


class _PubSub:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._publisher = open_publisher(settings)
        self.publisher: Publisher = self._publisher

    def worker(self, subscription: str, handler: Handler, dead_topic: str) -> Stoppable:
        dead = DeadLetter(self.publisher, dead_topic, subscription)
        kind = PubSubUnaryWorker if self._settings.pubsub_pull == "unary" else PubSubWorker
        return kind(self._settings, subscription, handler, dead_letter=dead).start()

    def check(self) -> None:
        self._publisher.check(self._settings.topic_calendar_changes, timeout_s=READY_TIMEOUT_S)

    def close(self) -> None:
        self._publisher.close()


# Handlers per in-process subscription: as many as a Pub/Sub worker's two streams run, since a
# processor waits out a calendar's minimum sync interval in its handler and fewer queue behind it.
_MEMORY_HANDLERS = 20


class _Memory:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        plan = topology(settings)
        worker_spec = plan.subscription(settings.sub_conference_commands)
        self._broker = MemoryBroker(  # redelivery paced like the Pub/Sub subscriptions' retry policy
            queue_limit=settings.memory_queue_limit,
            backoff_s=worker_spec.min_backoff_s or 0,  # None: no retry policy, back at once
            max_backoff_s=worker_spec.max_backoff_s or 0,
        )
        for topic in plan.topics:
            self._broker.create_topic(topic)
        for spec in plan.subscriptions:
            self._broker.create_subscription(spec.name, spec.topic)
        self.publisher: Publisher = self._broker

    def worker(self, subscription: str, handler: Handler, dead_topic: str) -> Stoppable:
        dead = DeadLetter(self._broker, dead_topic, subscription)
        max_attempts = self._settings.pubsub_max_delivery_attempts
        return MemoryWorker(
            self._broker,
            subscription,
            handler,
            dead_letter=dead,
            max_attempts=max_attempts,
            concurrency=_MEMORY_HANDLERS,
        ).start()

    def check(self) -> None:
        """In-process queues are always reachable."""

    def close(self) -> None:
        """Nothing to close: the queues go with the process."""


def build_service(settings: Settings, role: Role) -> Service:
    """Wire ``role`` from settings and start its pull workers (if any); ConfigError if it cannot run."""
    if settings.transport == "memory" and role is not Role.ALL:
        raise ConfigError(
            "the in-process transport cannot cross processes: run `confsync serve all`", variable="CONFSYNC_TRANSPORT"
        )
    push = check_config(settings, role)
    service = Service(Starlette())
    try:
        provider = None
        if role.runs(Role.INGEST) or role.runs(Role.PUBLISHER):  # first: a missing URL or key is named at once
            provider = HttpConferenceProvider.from_settings(settings)
            service.closers.append(provider.close)
        transport: _Transport = _Memory(settings) if settings.transport == "memory" else _PubSub(settings)
        service.closers.append(transport.close)
        store = open_store(settings.store_url)
        service.closers.append(store.close)
        routes = _role_routes(
            settings, role, push=push, store=store, transport=transport, provider=provider, into=service
        )
    except BaseException:
        service.stop(0)
        raise
    service.app = Starlette(routes=[*routes, *_health_routes(store, transport)])
    return service


def check_config(settings: Settings, role: Role) -> bool:
    """Refuse at start, naming the variable, what would otherwise fail on the first message;
    True if the processor and publisher serve push routes."""
    if role.runs(Role.INGEST):
        if not settings.webhook_url:
            raise ConfigError("ingest needs the address Calendar posts to", variable="CONFSYNC_WEBHOOK_URL")
        if not settings.local_mode and not settings.addon_audience:
            raise ConfigError("the add-on API needs its OAuth client id", variable="CONFSYNC_ADDON_AUDIENCE")
    push = settings.delivery == "push" and settings.transport == "pubsub" and role is not Role.INGEST
    if push:
        push_verifier(settings)  # the push routes' own check, made before anything connects
    return push


def _role_routes(  # noqa: PLR0913 - the role's parts, named
    settings: Settings,
    role: Role,
    *,
    push: bool,
    store: Store,
    transport: _Transport,
    provider: HttpConferenceProvider | None,
    into: Service,
) -> list[BaseRoute]:
    """The role's HTTP routes; its pull workers and clients go into ``into``."""
    routes: list[BaseRoute] = []
    clients = CalendarClients.from_settings(settings)
    into.closers.append(clients.close)
    if role.runs(Role.INGEST):
        assert provider is not None  # noqa: S101 - build_service made it for this role
        routes += _ingest(settings, store, transport=transport, clients=clients, provider=provider, into=into)
    if role.runs(Role.PROCESSOR):
        worker = CalendarWorker(
            store,
            clients.for_subject(None),
            transport.publisher,
            settings.topic_conference_commands,
            frozenset(settings.conference_solution_names),
            min_interval_s=settings.sync_min_interval_s,
            republish_after_s=settings.lag_repair_after_s,
            orphan_after_s=settings.orphan_after_s,
            calendar_for=clients.for_subject,
        )
        if push:
            routes.append(processor_push_route(worker, settings, transport.publisher))
        else:
            sub, dead = settings.sub_calendar_changes, settings.topic_calendar_changes_dead
            into.workers.append(transport.worker(sub, worker, dead))
    if role.runs(Role.PUBLISHER):
        assert provider is not None  # noqa: S101 - as above
        applier = build_applier(settings, store, provider)
        into.closers.append(applier.close)  # runs before the store closes: its last settlements
        if push:
            routes.append(publisher_push_route(applier, settings, transport.publisher))
        else:
            sub, dead = settings.sub_conference_commands, settings.topic_conference_commands_dead
            into.workers.append(transport.worker(sub, applier, dead))
    return routes


def _ingest(  # noqa: PLR0913 - the role's parts, named
    settings: Settings,
    store: Store,
    *,
    transport: _Transport,
    clients: CalendarClients,
    provider: HttpConferenceProvider,
    into: Service,
) -> list[BaseRoute]:
    publisher = transport.publisher  # on Pub/Sub, concurrent requests' messages share publish requests
    channels = ChannelManager(
        store,
        clients.for_subject(None),
        webhook_url=settings.webhook_url or "",
        ttl_s=settings.channel_ttl_s,
        publisher=publisher,
        changes_topic=settings.topic_calendar_changes,
        calendar_for=clients.for_subject,
    )
    addon = None if settings.addon_audience is None else OidcVerifier(audience=settings.addon_audience)
    scheduler = None
    if settings.scheduler_service_account:
        audience = settings.push_audience or settings.webhook_url or ""
        scheduler = OidcVerifier(audience=audience, email=settings.scheduler_service_account)
    lag = LagRepair(
        store,
        transport.publisher,
        settings.topic_calendar_changes,
        settings.topic_conference_commands,
        settings.topic_conference_commands_dead,
        older_than=timedelta(seconds=settings.lag_repair_after_s),
        max_republishes=settings.outbox_max_republishes,
    )
    if settings.lag_repair_interval_s > 0:
        repairs = partial(channels.renew, timedelta(0))  # due channels only: failed watches, lost openers
        into.workers.append(LagLoop(lag, settings.lag_repair_interval_s, channels=repairs).start())
    parts = IngestParts(settings, store, publisher, provider, channels, WebhookStats(), addon, scheduler, lag)
    return list(ingest_routes(parts))


def _health_routes(store: Store, transport: _Transport) -> list[BaseRoute]:
    checks = {"store": lambda: store.get_calendar("readyz-probe"), "transport": transport.check}
    return list(health_routes(checks, timeout_s=READY_TIMEOUT_S))


class _Running:
    """A started service and its HTTP server, stopped in that order's reverse on a signal."""

    def __init__(self, service: Service, served: ServedApp) -> None:
        self._service = service
        self._served = served

    def stop(self, deadline_s: float) -> bool:
        """Both within ``deadline_s``: Cloud Run kills the container when its grace ends."""
        ends_at = time.monotonic() + deadline_s
        self._served.stop(timeout_s=deadline_s)  # stop taking requests; uvicorn lets in-flight ones finish
        return self._service.stop(max(ends_at - time.monotonic(), 0.0))


def run_service(  # noqa: PLR0913 - where and how to serve, named
    settings: Settings,
    role: Role,
    *,
    host: str,
    port: int,
    stop: threading.Event | None = None,
    reuse_port: bool = False,
) -> bool:
    """Serve ``role`` until SIGTERM/SIGINT (or ``stop``), then drain; True if everything finished in time.

    The signals are caught from the start: a SIGTERM that comes while the service is still
    starting (its pull workers may already hold messages) drains it like any other."""
    stop = stop or threading.Event()
    early = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _run(settings, role, host=host, port=port, stop=stop, reuse_port=reuse_port)
    finally:
        for sig, handler in early.items():
            signal.signal(sig, handler)


def _run(  # noqa: PLR0913 - run_service's arguments
    settings: Settings, role: Role, *, host: str, port: int, stop: threading.Event, reuse_port: bool
) -> bool:
    service = build_service(settings, role)
    try:
        served = ServedApp(service.app, host=host, port=port, reuse_port=reuse_port).start()
    except BaseException:
        service.stop(0)
        raise
    # What start-up built lives as long as the process: frozen, a full collection walks only what
    # requests allocate, instead of stalling every request in flight.
    gc.freeze()
    log.info(
        "serving",
        role=role.value,
        url=served.url,
        pid=os.getpid(),
        transport=settings.transport,
        delivery="pull" if service.workers else "push" if role is not Role.INGEST else "http",
    )
    return run_until_signalled([_Running(service, served)], deadline_s=settings.shutdown_deadline_s, stop=stop)
