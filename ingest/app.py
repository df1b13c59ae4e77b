"""The ingest service: everything that enters confsync from Google, as one ASGI app.

Routes: ``POST /notifications`` (Calendar's watch notifications), ``POST /v1/conferences``
(the add-on), ``POST /tasks/renew-channels`` (Cloud Scheduler, OIDC-authenticated like the
push routes; ``?before=SECONDS``), ``GET /healthz``.

Give it a ``BatchingPubSubPublisher``: each notification is one publish, and batching them
across concurrent requests is what keeps the webhook's throughput up (bench/ingest.py).
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

from confsync.oidc import OidcVerifier, TokenRejected
from confsync.ports import ConferenceProvider, Publisher, Store
from confsync.settings import Settings
from ingest.api import AddonAuth, create_conference_route
from ingest.channels import ChannelManager
from ingest.webhook import WebhookStats, webhook_route

__all__ = ["IngestParts", "create_ingest_app"]

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


def create_ingest_app(parts: IngestParts) -> Starlette:
    settings = parts.settings
    if settings.local_mode:
        log.warning("ingest runs in LOCAL MODE: the dev token is accepted and scheduler routes are not verified")
    auth = AddonAuth(parts.addon_verifier, settings.dev_token if settings.local_mode else None)

    async def renew(request: Request) -> Response:
        if parts.scheduler_verifier is not None:
            try:
                parts.scheduler_verifier.verify(request.headers.get("authorization"))
            except TokenRejected as rejected:
                return JSONResponse({"error": rejected.reason}, status_code=rejected.status)
        elif not settings.local_mode:
            return JSONResponse({"error": "scheduler authentication is not configured"}, status_code=401)
        before_text = request.query_params.get("before", str(24 * 3600))
        if not before_text.isdigit():
            return JSONResponse({"error": "before: a number of seconds"}, status_code=400)
        report = await run_in_threadpool(parts.channels.renew, timedelta(seconds=int(before_text)))
        return JSONResponse(
            {
                "renewed": report.renewed,
                "gone": report.gone,
                "disconnected": report.disconnected,
                "failed": report.failed,
            }
        )

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    routes = [
        webhook_route(parts.store, parts.publisher, topic=settings.topic_calendar_changes, stats=parts.stats),
        create_conference_route(parts.store, parts.provider, auth=auth, ensure_channel=parts.channels.ensure),
        Route("/tasks/renew-channels", renew, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes)
