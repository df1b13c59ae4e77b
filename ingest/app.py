"""The ingest service: everything that enters confsync from Google, as one ASGI app.

Routes: ``POST /notifications`` (Calendar's watch notifications), ``POST /v1/conferences``
(the add-on), ``GET /healthz``, and for Cloud Scheduler (OIDC-authenticated like the push
routes): ``POST /tasks/renew-channels?before=SECONDS``, ``POST
/tasks/channels/ensure?calendar=ID``, ``POST /tasks/channels/stop?calendar=ID|channel=ID``,
``GET /tasks/channels?expiring_within=SECONDS``, ``POST /tasks/repair-lag[?dry_run=1]``
(ingest/lag.py).

Each notification is one publish; ``PubSubPublisher`` puts concurrent requests' messages in
one Publish request, which is what keeps the webhook's throughput up (bench/ingest.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from confsync.errors import ConfsyncError
from confsync.oidc import OidcVerifier, TokenRejected
from confsync.ports import ConferenceProvider, Publisher, Store
from confsync.settings import Settings
from ingest.api import AddonAuth, create_conference_route
from ingest.channels import ChannelManager
from ingest.lag import LagRepair
from ingest.webhook import WebhookStats, webhook_route

__all__ = ["IngestParts", "create_ingest_app", "ingest_routes"]

log = structlog.get_logger(__name__)


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


def create_ingest_app(parts: IngestParts) -> Starlette:
    async def healthz(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(routes=[*ingest_routes(parts), Route("/healthz", healthz, methods=["GET"])])


def ingest_routes(parts: IngestParts) -> list[Route]:
    """The webhook, the add-on API and the scheduler's channel routes."""
    settings = parts.settings
    if settings.local_mode:
        log.warning("ingest runs in LOCAL MODE: the dev token is accepted and scheduler routes are not verified")
    auth = AddonAuth(parts.addon_verifier, settings.dev_token if settings.local_mode else None)

    def refused(request: Request) -> Response | None:
        """Scheduler routes: the scheduler's OIDC token, as for push routes (local mode: none)."""
        if parts.scheduler_verifier is not None:
            try:
                parts.scheduler_verifier.verify(request.headers.get("authorization"))
            except TokenRejected as rejected:
                return JSONResponse({"error": rejected.reason}, status_code=rejected.status)
        elif not settings.local_mode:
            return JSONResponse({"error": "scheduler authentication is not configured"}, status_code=401)
        return None

    def seconds(request: Request, name: str, default: int) -> int | None:
        text = request.query_params.get(name, str(default))
        return int(text) if text.isdigit() else None

    async def renew(request: Request) -> Response:
        if (answer := refused(request)) is not None:
            return answer
        before = seconds(request, "before", 24 * 3600)
        if before is None:
            return JSONResponse({"error": "before: a number of seconds"}, status_code=400)
        report = await run_in_threadpool(parts.channels.renew, timedelta(seconds=before))
        return JSONResponse(
            {
                "renewed": report.renewed,
                "gone": report.gone,
                "disconnected": report.disconnected,
                "failed": report.failed,
            }
        )

    async def ensure(request: Request) -> Response:
        if (answer := refused(request)) is not None:
            return answer
        calendar_id = request.query_params.get("calendar")
        if not calendar_id:
            return JSONResponse({"error": "calendar: the calendar id is required"}, status_code=400)
        try:
            channel = await run_in_threadpool(parts.channels.ensure, calendar_id)
        except ConfsyncError as err:
            return JSONResponse({"error": str(err)}, status_code=502)
        return JSONResponse({"channel_id": channel.channel_id, "expiration": channel.expiration.isoformat()})

    async def stop(request: Request) -> Response:
        if (answer := refused(request)) is not None:
            return answer
        calendar_id, channel_id = request.query_params.get("calendar"), request.query_params.get("channel")
        if (calendar_id is None) == (channel_id is None):
            return JSONResponse({"error": "give calendar or channel"}, status_code=400)
        stopped = await run_in_threadpool(lambda: parts.channels.stop(calendar_id=calendar_id, channel_id=channel_id))
        return JSONResponse({"stopped": stopped})

    async def listing(request: Request) -> Response:
        if (answer := refused(request)) is not None:
            return answer
        within = seconds(request, "expiring_within", 3650 * 86400)
        if within is None:
            return JSONResponse({"error": "expiring_within: a number of seconds"}, status_code=400)
        channels = await run_in_threadpool(parts.channels.expiring_within, timedelta(seconds=within))
        return JSONResponse(
            [
                {"channel_id": c.channel_id, "calendar_id": c.calendar_id, "expiration": c.expiration.isoformat()}
                for c in channels
            ]
        )

    async def repair_lag(request: Request) -> Response:
        if (answer := refused(request)) is not None:
            return answer
        if parts.lag is None:
            return JSONResponse({"error": "sync-lag repair is not configured"}, status_code=404)
        report = await run_in_threadpool(parts.lag.run_once, dry_run=request.query_params.get("dry_run") == "1")
        return JSONResponse(report.to_json())

    return [
        webhook_route(parts.store, parts.publisher, topic=settings.topic_calendar_changes, stats=parts.stats),
        create_conference_route(parts.store, parts.provider, auth=auth, ensure_channel=parts.channels.ensure),
        Route("/tasks/renew-channels", renew, methods=["POST"]),
        Route("/tasks/channels/ensure", ensure, methods=["POST"]),
        Route("/tasks/channels/stop", stop, methods=["POST"]),
        Route("/tasks/channels", listing, methods=["GET"]),
        Route("/tasks/repair-lag", repair_lag, methods=["POST"]),
    ]
