"""Pub/Sub push subscriptions: an ASGI route that verifies, decodes and handles push requests.

Pub/Sub POSTs ``{"message": {"data", "attributes", "messageId", "publishTime", "orderingKey"},
"subscription", "deliveryAttempt"}`` (https://cloud.google.com/pubsub/docs/push) with an OIDC
ID token in ``Authorization: Bearer``, signed by Google for the push subscription's service
account (https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions). The route:

1. verifies the token (signature against Google's certificates, expiry, issuer
   ``accounts.google.com``, audience, the expected service-account email, email verified):
   missing or invalid -> 401, valid but for someone else -> 403; the handler is not called.
   Behind Cloud Run IAM (``CONFSYNC_PUSH_AUTH=platform``) Cloud Run has checked the signature
   and stripped it, so only the claims are checked (confsync/oidc.py);
2. decodes the envelope: malformed -> 400 with the reason (Pub/Sub will retry, then
   dead-letter it by its own policy);
3. runs the handler through ``confsync.transport.base.process``: done -> 204 (ack); try again
   -> 503 (Pub/Sub redelivers with backoff); dead-lettered -> 204. The handler runs in the
   trace of the message's ``traceparent`` attribute; a message without one continues the push
   request's own trace (Cloud Run's ``X-Cloud-Trace-Context``), so its lines still join that
   request's log entry.

Verification is skipped only when ``Settings.local_mode`` is set (the emulator sends no
token), and the route says so in a warning when it is built.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from confsync.errors import ConfigError
from confsync.oidc import OidcVerifier, TokenRejected
from confsync.rfc3339 import parse_rfc3339
from confsync.settings import Settings
from confsync.tracing import continued
from confsync.transport.base import DeadLetter, Handler, Message, Outcome, process

__all__ = ["OidcVerifier", "PushRejected", "decode_envelope", "push_route", "push_verifier"]

log = structlog.get_logger(__name__)

MAX_ENVELOPE_BYTES = 11 * 1024 * 1024  # a 10 MB message, base64-encoded, plus the envelope


class PushRejected(TokenRejected):
    """A push request refused before its handler ran: ``status`` and ``reason`` say why."""


def push_verifier(settings: Settings) -> OidcVerifier | None:
    """The OIDC check for push routes: required outside local mode, absent inside it."""
    if settings.local_mode:
        return None
    if not settings.push_audience or not settings.push_service_account:
        raise ConfigError("push routes need CONFSYNC_PUSH_AUDIENCE and CONFSYNC_PUSH_SERVICE_ACCOUNT (or local mode)")
    return OidcVerifier(
        audience=settings.push_audience,
        email=settings.push_service_account,
        signature=settings.push_auth,
        certs_url=settings.google_certs_url,
    )


def decode_envelope(body: bytes) -> Message:
    """A push request body as a Message; PushRejected(400) with the reason if malformed."""
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise PushRejected(400, f"body is not JSON: {err}") from err
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message"), dict):
        raise PushRejected(400, "body has no message object")
    raw = envelope["message"]
    try:
        data = base64.b64decode(raw.get("data", ""), validate=True)
    except (binascii.Error, TypeError, ValueError) as err:
        raise PushRejected(400, f"message.data is not base64: {err}") from err
    attributes = raw.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        raise PushRejected(400, "message.attributes must map strings to strings")
    message_id = raw.get("messageId") or raw.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        raise PushRejected(400, "message.messageId is missing")
    attempt = envelope.get("deliveryAttempt")
    if attempt is not None and (isinstance(attempt, bool) or not isinstance(attempt, int)):
        raise PushRejected(400, "deliveryAttempt must be an integer")
    return Message(
        data=data,
        attributes=attributes,
        message_id=message_id,
        ordering_key=str(raw.get("orderingKey") or raw.get("ordering_key") or ""),
        delivery_attempt=attempt,
        publish_time=_publish_time(raw.get("publishTime") or raw.get("publish_time")),
    )


def _publish_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class _Config:
    handler: Handler
    verifier: OidcVerifier | None
    dead_letter: DeadLetter
    max_attempts: int


def push_route(
    path: str,
    handler: Handler,
    *,
    verifier: OidcVerifier | None,
    dead_letter: DeadLetter,
    max_attempts: int,
) -> Route:
    """A Starlette route serving one push subscription. ``verifier=None`` is local mode."""
    if verifier is None:
        log.warning("push route accepts requests WITHOUT verifying their OIDC token (local mode)", path=path)
    config = _Config(handler, verifier, dead_letter, max_attempts)

    async def endpoint(request: Request) -> Response:
        with continued(request.headers):
            return await handle(request)

    async def handle(request: Request) -> Response:
        try:
            if config.verifier is not None:  # in a thread: it may fetch Google's certificates
                _no_second_credential(config.verifier, request)
                await run_in_threadpool(config.verifier.verify, request.headers.get("authorization"))
            body = await _read(request)
            message = decode_envelope(body)
        except TokenRejected as rejected:  # PushRejected included
            log.warning("push request refused", path=path, status=rejected.status, reason=rejected.reason)
            return JSONResponse({"error": rejected.reason}, status_code=rejected.status)
        outcome = await run_in_threadpool(
            process, message, config.handler, dead_letter=config.dead_letter, max_attempts=config.max_attempts
        )
        if outcome is Outcome.NACK:
            return JSONResponse({"error": "try again later"}, status_code=503)
        return Response(status_code=204)

    return Route(path, endpoint, methods=["POST"])


def _no_second_credential(verifier: OidcVerifier, request: Request) -> None:
    """Cloud Run IAM checks X-Serverless-Authorization instead of Authorization when a request
    carries it, and passes Authorization on unchecked: trusting the platform then means trusting
    a token nobody verified. Pub/Sub never sends it."""
    if verifier.trusts_platform and "x-serverless-authorization" in request.headers:
        raise PushRejected(401, "X-Serverless-Authorization is not accepted on push routes")


async def _read(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_ENVELOPE_BYTES:
        raise PushRejected(413, "body too large")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_ENVELOPE_BYTES:
            raise PushRejected(413, "body too large")
    return body
