"""Calendar's batch endpoint, ``POST /batch/calendar/v3``: many API calls in one HTTP request.

As Google documents it (https://developers.google.com/calendar/api/guides/batch): the body is
``multipart/mixed``; each part is ``Content-Type: application/http`` with an optional
``Content-ID`` and holds one whole HTTP request (method, path, headers, body). The answer is
``multipart/mixed`` too, one ``application/http`` part per call in the same order, its
``Content-ID`` the request's prefixed with ``response-``. At most 1,000 calls per batch; each
counts (and is journaled, faulted and notified) as the request it wraps, so the sandbox runs
every part through its own routes. An inner request without an ``Authorization`` header uses
the outer one. google-api-python-client's ``BatchHttpRequest`` works against it unchanged
(give it ``batch_uri``: the discovery document names Google's host).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

__all__ = ["MAX_CALLS", "batch_route_handler"]

MAX_CALLS = 1000
MAX_BATCH_BODY = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Call:
    content_id: str | None
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def batch_route_handler(app: Callable[[], ASGIApp]) -> Callable[[Request], object]:
    """The endpoint; ``app`` returns the sandbox's own ASGI app (built after the routes)."""

    async def endpoint(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/mixed"):
            return _bad("a batch request is multipart/mixed")
        body = await request.body()
        if len(body) > MAX_BATCH_BODY:
            return _bad(f"a batch request is at most {MAX_BATCH_BODY} bytes", status=413)
        parts = _parts(content_type, body)
        if parts is None:
            return _bad("the multipart/mixed body could not be read")
        if not parts:
            return _bad("a batch request holds at least one call")
        if len(parts) > MAX_CALLS:
            return _bad(f"a batch request holds at most {MAX_CALLS} calls")
        outer_auth = request.headers.get("authorization")
        answers: list[tuple[str | None, bytes]] = []
        transport = httpx.ASGITransport(app=app())
        async with httpx.AsyncClient(transport=transport, base_url=str(request.base_url).rstrip("/")) as client:
            for part in parts:
                call = _call(part)
                if call is None:
                    answers.append((part.get("Content-ID"), _http_answer(400, {}, b'{"error": "not an HTTP request"}')))
                    continue
                headers = dict(call.headers)
                if outer_auth and not any(k.lower() == "authorization" for k in headers):
                    headers["Authorization"] = outer_auth
                inner = await client.request(call.method, call.path, headers=headers, content=call.body or None)
                answers.append((call.content_id, _http_answer(inner.status_code, dict(inner.headers), inner.content)))
        boundary = f"batch_{uuid.uuid4().hex}"
        return Response(_multipart(boundary, answers), media_type=f"multipart/mixed; boundary={boundary}")

    return endpoint


def _parts(content_type: str, body: bytes) -> list[Message] | None:
    message = BytesParser().parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        return None
    payload = message.get_payload()
    return [part for part in payload if isinstance(part, Message)] if isinstance(payload, list) else None


def _call(part: Message) -> _Call | None:
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return None
    text = raw.replace(b"\r\n", b"\n")
    head, _, body = text.partition(b"\n\n")
    lines = head.decode("utf-8", "replace").split("\n")
    request_line = lines[0].split(" ")
    if len(request_line) < 2 or not request_line[1].startswith("/"):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() not in ("host", "content-length"):
            headers[name.strip()] = value.strip()
    return _Call(part.get("Content-ID"), request_line[0].upper(), request_line[1], headers, body)


def _http_answer(status: int, headers: dict[str, str], body: bytes) -> bytes:
    reason = httpx.codes.get_reason_phrase(status) or "Unknown"
    kept = {k: v for k, v in headers.items() if k.lower() in ("content-type", "retry-after", "etag")}
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in kept.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _multipart(boundary: str, answers: list[tuple[str | None, bytes]]) -> bytes:
    chunks: list[bytes] = []
    for content_id, answer in answers:
        chunks.append(f"--{boundary}\r\nContent-Type: application/http\r\n".encode())
        if content_id:
            inner = content_id.strip().removeprefix("<").removesuffix(">")
            chunks.append(f"Content-ID: <response-{inner}>\r\n".encode())
        chunks.append(b"\r\n" + answer + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)


def _bad(reason: str, status: int = 400) -> Response:
    return JSONResponse({"error": {"code": status, "message": reason, "errors": [{"reason": "badRequest"}]}}, status)
