"""confsync's services composed from Settings: what ``confsync serve ROLE`` runs.

A role is one Cloud Run service (``ingest``, ``processor``, ``publisher``) or all three in
one process (``all``). The in-process transport (``CONFSYNC_TRANSPORT=memory``) only allows
``all``: its queues live in one process. Every role serves HTTP with ``GET /healthz`` (the
process is up) and ``GET /readyz`` (the store and the transport answered within 2 s, asked at
most every few seconds: 200 or 503, the reason in the logs; ``ingest.app.health_routes``), plus:

- ingest: the webhook, the add-on API and the scheduler's channel routes (``ingest.app``), and
  the channel work they fan out (ingest/channels.py);
- processor / publisher, and ingest's channel work, with push delivery: their push routes; with
  pull delivery (``CONFSYNC_DELIVERY=pull``, the default) a streaming-pull worker instead.

``Service.stop`` drains: workers stop pulling and finish in-flight messages within the
deadline, then clients close. ``run_service`` records and exports spans as
``CONFSYNC_TRACING`` says, for the process it runs in (confsync/tracing.py).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from urllib.parse import urlsplit

import structlog
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from accounts.routes import connect_routes, settings_routes
from confsync.contracts import ChannelSweep
from confsync.errors import ConfigError
from confsync.serving import ServedApp
from confsync.settings import Settings
from confsync.tracing import configure_tracing
from confsync.transport.push import push_verifier
from confsync.transport.runner import Stoppable, run_until_signalled
from ingest.app import IngestParts, channel_work_push_route, health_routes, ingest_routes
from ingest.fold import NotificationFold
from ingest.lag import LagLoop
from processors.app import processor_push_route
from publishers.app import publisher_push_route
from stack.roles import Role
from stack.root import Stack

__all__ = ["Role", "Service", "build_service", "check_config", "run_service"]

log = structlog.get_logger(__name__)

READY_TIMEOUT_S = 2.0


@dataclass
class Service:
    """One running role: its HTTP app, its pull workers, and what to close after them."""

    app: Starlette
    workers: list[Stoppable] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)
    # Run on the app's event loop as it stops (lifespan shutdown), before the workers stop.
    on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        yield
        for shutdown in self.on_shutdown:
            await shutdown()

    def stop(self, deadline_s: float) -> bool:
        """Drain the workers within ``deadline_s`` in all, then close every client; True if all drained."""
        ends_at = time.monotonic() + deadline_s
        clean = all([worker.stop(max(ends_at - time.monotonic(), 0.0)) for worker in self.workers])  # noqa: C419 - stop every one
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                close()
        return clean


def build_service(settings: Settings, role: Role, *, stack: Stack | None = None) -> Service:
    """Wire ``role`` from ``stack`` (by default one built from settings) and start its pull
    workers (if any); ConfigError if it cannot run. The service closes the stack when it stops."""
    if settings.transport == "memory" and role is not Role.ALL:
        raise ConfigError(
            "the in-process transport cannot cross processes: run `confsync serve all`", variable="CONFSYNC_TRANSPORT"
        )
    push = check_config(settings, role)
    stack = stack or Stack(settings)
    service = Service(Starlette(), closers=[stack.close])
    try:
        if role.runs(Role.INGEST) or role.runs(Role.PUBLISHER):
            _ = stack.provider  # first: a missing URL or key is named at once
        stack.transport.connect()
        routes = _role_routes(stack, role, push=push, into=service)
    except BaseException:
        service.stop(0)
        raise
    service.app = Starlette(routes=[*routes, *_health_routes(stack)], lifespan=service.lifespan)
    return service


def check_config(settings: Settings, role: Role) -> bool:
    """Refuse at start, naming the variable, what would otherwise fail on the first message;
    True if the processor and publisher serve push routes."""
    if role.runs(Role.INGEST):
        if not settings.webhook_url:
            raise ConfigError("ingest needs the address Calendar posts to", variable="CONFSYNC_WEBHOOK_URL")
        if not settings.local_mode and not settings.addon_audience:
            raise ConfigError("the add-on API needs its OAuth client id", variable="CONFSYNC_ADDON_AUDIENCE")
        if settings.vendor_client_id and not settings.public_url:
            raise ConfigError("the connect pages need their public address", variable="CONFSYNC_PUBLIC_URL")
        if settings.push_auth == "platform":  # ingest is public: no Cloud Run IAM checks its callers
            raise ConfigError(
                "ingest is open to everyone (Calendar's webhook), so its channel-work push route must "
                "check each token's signature itself: use verify",
                variable="CONFSYNC_PUSH_AUTH",
            )
    push = settings.delivery == "push" and settings.transport == "pubsub"
    if push:
        push_verifier(settings)  # the push routes' own check, made before anything connects
    return push


def _role_routes(stack: Stack, role: Role, *, push: bool, into: Service) -> list[BaseRoute]:
    """The role's HTTP routes; its pull workers go into ``into``."""
    settings, transport = stack.settings, stack.transport
    routes: list[BaseRoute] = []
    if role.runs(Role.INGEST):
        routes += _ingest(stack, into=into)
        if push:
            routes.append(channel_work_push_route(stack.channel_fanout, settings, stack.publisher))
        else:
            sub, dead = settings.sub_channel_work, settings.topic_channel_work_dead
            into.workers.append(transport.worker(sub, stack.channel_fanout, dead))
    if role.runs(Role.PROCESSOR):
        if push:
            routes.append(processor_push_route(stack.worker, settings, stack.publisher))
        else:
            sub, dead = settings.sub_calendar_changes, settings.topic_calendar_changes_dead
            into.workers.append(transport.worker(sub, stack.worker, dead))
    if role.runs(Role.PUBLISHER):
        if push:
            routes.append(publisher_push_route(stack.applier, settings, stack.publisher))
        else:
            sub, dead = settings.sub_conference_commands, settings.topic_conference_commands_dead
            into.workers.append(transport.worker(sub, stack.applier, dead))
    return routes


def _ingest(stack: Stack, *, into: Service) -> list[BaseRoute]:
    settings = stack.settings
    lag = stack.lag_repair()
    if settings.lag_repair_interval_s > 0:
        # due channels only (failed watches, lost openers), fanned out as the scheduler's tick does
        repairs = partial(stack.channel_fanout.start, ChannelSweep.RENEW, timedelta(0))
        sweep = stack.retention_sweep().run_once
        into.workers.append(LagLoop(lag, settings.lag_repair_interval_s, channels=repairs, retention=sweep).start())
    # Never longer than the shortest listing interval: a calendar could be listed again sooner.
    fold = NotificationFold(
        stack.publisher,
        settings.topic_calendar_changes,
        window_s=min(settings.notify_fold_s, settings.sync_min_interval_s),
    )
    parts = IngestParts(
        settings,
        stack.store,
        stack.publisher,
        stack.provider,
        stack.channels,
        stack.webhook_stats,
        stack.addon_verifier,
        stack.scheduler_verifier,
        lag,
        stack.accounts,
        stack.status(serving=True),
        stack.channel_fanout,
        fold,
    )
    into.on_shutdown.append(fold.close)
    routes: list[BaseRoute] = list(ingest_routes(parts))
    accounts = stack.accounts
    if accounts is not None:
        secure = (settings.public_url or "").startswith("https://")
        connector = accounts.connector(on_connected=stack.resume)
        origin = _origin(settings.public_url or "")
        ttl = settings.connect_ttl_s
        routes += connect_routes(connector, secure_cookie=secure, cookie_max_age_s=ttl, origin=origin)
        pages = accounts.settings_pages()
        routes += settings_routes(pages, secure_cookie=secure, cookie_max_age_s=ttl, origin=origin)
    return routes


def _origin(url: str) -> str:
    """scheme://host[:port] of a URL: what a browser sends as ``Origin``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _health_routes(stack: Stack) -> list[BaseRoute]:
    store, transport = stack.store, stack.transport
    checks = {
        "store": lambda: store.get_calendar("readyz-probe"),
        "transport": lambda: transport.check(READY_TIMEOUT_S),
    }
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
    tracing = configure_tracing(settings, service=f"confsync-{role.value}")
    try:
        return _serve(settings, role, host=host, port=port, stop=stop, reuse_port=reuse_port)
    finally:
        tracing.close()  # the spans still held go out before the process ends


def _serve(  # noqa: PLR0913 - run_service's arguments
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
        delivery="pull" if service.workers else "push",
    )
    return run_until_signalled([_Running(service, served)], deadline_s=settings.shutdown_deadline_s, stop=stop)
