"""The ingest service: everything that enters confsync from Google, as one ASGI app.

Routes: ``POST /notifications`` (Calendar's watch notifications), ``POST /v1/conferences``
(the add-on), ``DELETE /v1/me`` (the add-on's user disconnects; with users' accounts on, when
``stack.services`` also mounts the connect pages of accounts/routes.py), ``GET /healthz`` and
``GET /readyz`` (``health_routes``), and for Cloud
Scheduler (OIDC-authenticated like the push routes): ``POST
/tasks/renew-channels?before=SECONDS`` and ``POST /tasks/reconcile-channels`` (each fans out
the first page of a channel pass: ingest/channels.py), ``POST /tasks/channels/ensure?calendar=ID``,
``POST /tasks/channels/stop?calendar=ID|channel=ID``, ``GET /tasks/channels?expiring_within=SECONDS``,
``POST /tasks/repair-lag[?dry_run=1]`` (ingest/lag.py), ``GET /v1/status[?calendar=ID]``
(read-only: what ``confsync status --json`` prints, ingest/status.py). The channel-work topic's
push route, ``POST /pubsub/<channel-work topic>`` (``channel_work_push_route``), handles what the
channel passes fan out.

Each notification is one publish, but a calendar's within ``CONFSYNC_NOTIFY_FOLD_S`` of the last
(ingest/fold.py); ``PubSubPublisher`` puts concurrent requests' messages in one Publish request,
which is what keeps the webhook's throughput up (bench/ingesting.py).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

import structlog
from google.api_core.exceptions import GoogleAPIError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from confsync.contracts import ChannelSweep
from confsync.errors import ConfsyncError, NotFound
from confsync.oidc import OidcVerifier, TokenRejected
from confsync.ports import ConferenceProvider, Publisher, Store, UserAccounts
from confsync.settings import Settings
from confsync.store.keys import document_id_fits
from confsync.transport.base import DeadLetter
from confsync.transport.push import push_route, push_verifier
from ingest.addon_access import AddonGuard
from ingest.api import AddonAuth, create_conference_route, me_route
from ingest.channels import ChannelFanout, ChannelManager
from ingest.fold import NotificationFold
from ingest.lag import LagRepair
from ingest.status import StatusReader
from ingest.webhook import WebhookStats, webhook_route

__all__ = [
    "READY_CACHE_S",
    "READY_TIMEOUT_S",
    "IngestParts",
    "channel_work_push_route",
    "health_routes",
    "ingest_routes",
]

log = structlog.get_logger(__name__)

READY_CACHE_S = 5.0
READY_TIMEOUT_S = 2.0
_SECONDS = re.compile(r"[0-9]{1,10}")  # ASCII digits (isdigit() admits '²'), few enough for a timedelta


@dataclass(frozen=True, slots=True)
class IngestParts:
    settings: Settings
    store: Store
    publisher: Publisher
    provider: ConferenceProvider
    channels: ChannelManager
    stats: WebhookStats
    addon_verifier: OidcVerifier | None = None
    scheduler_verifier: OidcVerifier | None = None
    lag: LagRepair | None = None
    accounts: UserAccounts | None = None
    status: StatusReader | None = None
    fanout: ChannelFanout | None = None  # None: one over ``channels`` and ``publisher``
    fold: NotificationFold | None = None  # None: every notification published as it comes

    def channel_fanout(self) -> ChannelFanout:
        if self.fanout is not None:
            return self.fanout
        return ChannelFanout(self.channels, self.store, self.publisher, self.settings.topic_channel_work)


def channel_work_push_route(fanout: ChannelFanout, settings: Settings, dead_letters: Publisher) -> Route:
    """``POST /pubsub/<channel-work topic>``: one channel work item or page per push request."""
    return push_route(
        f"/pubsub/{settings.topic_channel_work}",
        fanout,
        verifier=push_verifier(settings),
        dead_letter=DeadLetter(dead_letters, settings.topic_channel_work_dead, "push:channel-work"),
        max_attempts=settings.pubsub_max_delivery_attempts,
    )


def health_routes(
    checks: Mapping[str, Callable[[], object]],
    *,
    clock: Callable[[], float] = time.monotonic,
    cache_s: float = READY_CACHE_S,
    timeout_s: float = READY_TIMEOUT_S,
) -> list[Route]:
    """``GET /healthz`` (the process answers) and ``GET /readyz`` (every check passed within
    ``timeout_s``). Anyone can ask, so the answers say ok or not ok only and what failed goes
    to the logs; readiness is checked at most once per ``cache_s``, so a flood of requests
    never becomes a flood of calls to the store or Pub/Sub."""
    readiness = _Readiness(dict(checks), clock=clock, cache_s=cache_s, timeout_s=timeout_s)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(_request: Request) -> Response:
        ready = await readiness.ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]


class _Readiness:
    def __init__(
        self, checks: dict[str, Callable[[], object]], *, clock: Callable[[], float], cache_s: float, timeout_s: float
    ) -> None:
        self._checks, self._clock, self._cache_s, self._timeout_s = checks, clock, cache_s, timeout_s
        self._ready = False
        self._checked_at = -math.inf
        self._lock = asyncio.Lock()

    async def ready(self) -> bool:
        async with self._lock:  # requests that come while a round runs share its answer
            if self._clock() - self._checked_at >= self._cache_s:
                passed = await asyncio.gather(*(self._passes(name, check) for name, check in self._checks.items()))
                self._ready, self._checked_at = all(passed), self._clock()
            return self._ready

    async def _passes(self, name: str, check: Callable[[], object]) -> bool:
        started = self._clock()
        try:
            await asyncio.wait_for(run_in_threadpool(check), self._timeout_s)
        except Exception as err:  # noqa: BLE001 - any failure means not ready; the log says which
            error = f"{type(err).__name__}: {err}"[:300]
            log.warning("not ready", dependency=name, error=error, after_s=round(self._clock() - started, 3))
            return False
        return True


class _BadQuery(Exception):
    """A scheduler route's query parameter the route cannot use: a 400 with this reason."""


def _seconds(request: Request, name: str, default: int) -> timedelta:
    text = request.query_params.get(name, str(default))
    if not _SECONDS.fullmatch(text):
        raise _BadQuery(f"{name}: a number of seconds")
    return timedelta(seconds=int(text))


def _addon_routes(parts: IngestParts, auth: AddonAuth) -> list[Route]:
    """The add-on's: ``POST /v1/conferences``, and ``DELETE /v1/me`` with users' accounts on."""
    guard = AddonGuard.from_settings(parts.store, parts.settings, parts.accounts)
    create = create_conference_route(
        parts.store,
        parts.provider,
        auth=auth,
        guard=guard,
        ensure_channel=parts.channels.ensure,
        accounts=parts.accounts,
    )
    return [create] if parts.accounts is None else [create, me_route(auth, guard, parts.accounts)]


def _status_answer(reader: StatusReader | None) -> Callable[[Request], Awaitable[Response]]:
    """``GET /v1/status[?calendar=ID]``: what ``confsync status --json`` prints."""

    async def status(request: Request) -> Response:
        if reader is None:
            return JSONResponse({"error": "the status view is not configured"}, status_code=404)
        calendar_id = request.query_params.get("calendar")
        if calendar_id is not None and not calendar_id:
            raise _BadQuery("calendar: a calendar id (leave it out for the whole installation)")
        if calendar_id is not None and not document_id_fits(calendar_id):
            raise _BadQuery("calendar: longer than any calendar id")
        try:
            if calendar_id is None:
                return JSONResponse((await run_in_threadpool(reader.overview)).to_json())
            return JSONResponse((await run_in_threadpool(reader.calendar, calendar_id)).to_json())
        except NotFound as err:
            return JSONResponse({"error": str(err)}, status_code=404)
        except (ConfsyncError, GoogleAPIError) as err:  # the store is out of reach: say so, and try again later
            log.warning("status view unavailable", error=str(err))
            return JSONResponse({"error": "the store could not be read; try again later"}, status_code=503)

    return status


def ingest_routes(parts: IngestParts) -> list[Route]:
    """The webhook, the add-on API and the scheduler's channel routes."""
    settings = parts.settings
    if settings.local_mode:
        log.warning("ingest runs in LOCAL MODE: the dev token is accepted and scheduler routes are not verified")
    auth = AddonAuth(parts.addon_verifier, settings.dev_token if settings.local_mode else None)

    async def refused(request: Request) -> Response | None:
        """Scheduler routes: the scheduler's OIDC token, as for push routes (local mode: none)."""
        if parts.scheduler_verifier is not None:
            try:  # in a thread: it may fetch Google's certificates
                await run_in_threadpool(parts.scheduler_verifier.verify, request.headers.get("authorization"))
            except TokenRejected as rejected:
                return JSONResponse({"error": rejected.reason}, status_code=rejected.status)
        elif not settings.local_mode:
            return JSONResponse({"error": "scheduler authentication is not configured"}, status_code=401)
        return None

    def scheduled(work: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """A scheduler route: ``work`` runs only for a request that ``refused`` lets through."""

        async def guarded(request: Request) -> Response:
            answer = await refused(request)
            if answer is not None:
                return answer
            try:
                return await work(request)
            except _BadQuery as bad:
                return JSONResponse({"error": str(bad)}, status_code=400)
            except ConfsyncError as err:  # the store or Pub/Sub failed us: the scheduler tries again
                return JSONResponse({"error": str(err)}, status_code=503)

        return guarded

    fanout = parts.channel_fanout()

    async def renew(request: Request) -> Response:
        page = await run_in_threadpool(fanout.start, ChannelSweep.RENEW, _seconds(request, "before", 24 * 3600))
        return JSONResponse(page.to_json())

    async def reconcile(_request: Request) -> Response:
        page = await run_in_threadpool(fanout.start, ChannelSweep.WATCH)
        return JSONResponse(page.to_json())

    async def ensure(request: Request) -> Response:
        calendar_id = request.query_params.get("calendar")
        if not calendar_id:
            raise _BadQuery("calendar: the calendar id is required")
        try:
            channel = await run_in_threadpool(parts.channels.ensure, calendar_id)
        except ConfsyncError as err:
            return JSONResponse({"error": str(err)}, status_code=502)
        return JSONResponse({"channel_id": channel.channel_id, "expiration": channel.expiration.isoformat()})

    async def stop(request: Request) -> Response:
        calendar_id, channel_id = request.query_params.get("calendar"), request.query_params.get("channel")
        if (calendar_id is None) == (channel_id is None):
            raise _BadQuery("give calendar or channel")
        stopped = await run_in_threadpool(lambda: parts.channels.stop(calendar_id=calendar_id, channel_id=channel_id))
        return JSONResponse({"stopped": stopped})

    async def listing(request: Request) -> Response:
        within = _seconds(request, "expiring_within", 3650 * 86400)
        channels = await run_in_threadpool(parts.channels.expiring_within, within)
        return JSONResponse(
            [
                {"channel_id": c.channel_id, "calendar_id": c.calendar_id, "expiration": c.expiration.isoformat()}
                for c in channels
            ]
        )

    async def repair_lag(request: Request) -> Response:
        if parts.lag is None:
            return JSONResponse({"error": "sync-lag repair is not configured"}, status_code=404)
        dry_run = request.query_params.get("dry_run") == "1"
        report = await run_in_threadpool(parts.lag.run_once, dry_run=dry_run)
        body = report.to_json()
        if not dry_run:  # the same tick retries failed watches, as the in-process loop does
            page = await run_in_threadpool(fanout.start, ChannelSweep.RENEW)
            body["channels_due"] = page.to_json()
        return JSONResponse(body)

    return [
        webhook_route(
            parts.store, parts.publisher, topic=settings.topic_calendar_changes, stats=parts.stats, fold=parts.fold
        ),
        *_addon_routes(parts, auth),
        Route("/tasks/renew-channels", scheduled(renew), methods=["POST"]),
        Route("/tasks/reconcile-channels", scheduled(reconcile), methods=["POST"]),
        Route("/tasks/channels/ensure", scheduled(ensure), methods=["POST"]),
        Route("/tasks/channels/stop", scheduled(stop), methods=["POST"]),
        Route("/tasks/channels", scheduled(listing), methods=["GET"]),
        Route("/tasks/repair-lag", scheduled(repair_lag), methods=["POST"]),
        Route("/v1/status", scheduled(_status_answer(parts.status)), methods=["GET"]),
    ]
