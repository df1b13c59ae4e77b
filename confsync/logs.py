"""Structured logging for every confsync entry point, configured once.

``configure_logging`` is called by an entry point (the CLI, a server) and nowhere else.
Modules log through ``log = structlog.get_logger(__name__)`` and bind context
(calendar_id, channel_id, message_id, conference_id, command_id) with
``structlog.contextvars``. Third-party loggers (uvicorn, google-cloud, httpx) go through the
same pipeline, so every line looks alike.

Output is either one JSON object per line in the shape Cloud Logging reads from Cloud Run
(``severity``, ``message``, ``time``, and ``logging.googleapis.com/trace`` when a trace header
was bound; https://cloud.google.com/logging/docs/structured-logging), or a console renderer
for people at a terminal.

Secrets never reach a line: ``redact_secrets`` masks values under secret-looking keys
(token, authorization, api_key, password, secret...), ``Secret`` objects, and secret-shaped
text anywhere else (``Bearer ...``, Google API keys, OAuth access tokens, JWTs), including
inside formatted tracebacks.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from confsync.settings import Secret, Settings

__all__ = [
    "REDACTED",
    "TRACE_FIELD",
    "bind_trace",
    "configure_logging",
    "redact_secrets",
    "trace_from_headers",
]

REDACTED = "[REDACTED]"
TRACE_FIELD = "logging.googleapis.com/trace"

# Keys whose values are credentials. Matched case-insensitively on the normalised key
# (dashes as underscores), as a whole word or a suffix: "channel_token", "x_goog_channel_token".
_SECRET_KEY = re.compile(
    r"(^|_)(token|authorization|api_?key|password|passwd|secret|client_secret|private_key|"
    r"credentials?|cookie|set_cookie|passcode|pin)$",
)
# Cursors, not credentials: useful when debugging a sync, useless without credentials.
_NOT_SECRET_KEYS = frozenset({"sync_token", "next_sync_token", "page_token", "next_page_token"})
_SECRET_TEXT = (
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),  # Google API keys
    re.compile(r"\bya29\.[0-9A-Za-z_-]+"),  # Google OAuth access tokens
    re.compile(r"\beyJ[0-9A-Za-z_-]{4,}\.[0-9A-Za-z_-]{4,}\.[0-9A-Za-z_-]*"),  # JWTs (ID tokens)
)
_SEVERITY = {
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARNING",
    "warn": "WARNING",
    "error": "ERROR",
    "exception": "ERROR",
    "critical": "CRITICAL",
}
_TRACE_CONTEXT = re.compile(r"^([0-9a-fA-F]{32})(?:/\d+)?(?:;o=[01])?$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask every secret in the event, however deeply nested."""
    return {key: _redact_item(key, value) for key, value in event_dict.items()}


def _redact_item(key: object, value: object) -> object:
    normalised = str(key).lower().replace("-", "_")
    if normalised not in _NOT_SECRET_KEYS and _SECRET_KEY.search(normalised) and value not in (None, ""):
        return REDACTED
    return _redact_value(value)


def _redact_value(value: object) -> object:
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, Mapping):
        return {k: _redact_item(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item) for item in value]
    return value


def _redact_text(text: str) -> str:
    for pattern in _SECRET_TEXT:
        text = pattern.sub(_mask_match, text)
    return text


def _mask_match(match: re.Match[str]) -> str:
    scheme = match.group(1) if match.re.groups else None
    return f"{scheme} {REDACTED}" if scheme else REDACTED


def _cloud_logging_shape(_logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Rename structlog's keys to the ones Cloud Logging reads from a JSON line."""
    event_dict.pop("color_message", None)  # uvicorn's ANSI-coloured twin of the message
    level = str(event_dict.pop("level", method)).lower()
    event_dict["severity"] = _SEVERITY.get(level, "DEFAULT")
    event_dict["message"] = str(event_dict.pop("event", ""))
    if "timestamp" in event_dict:
        event_dict["time"] = event_dict.pop("timestamp")
    return event_dict


def _render_non_strings(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Make every value JSON-safe before rendering (objects become their str())."""
    return {key: _json_safe(value) for key, value in event_dict.items()}


def _json_safe(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return str(value)


def trace_from_headers(headers: Mapping[str, str], project_id: str) -> str | None:
    """The Cloud Logging trace name for a request, from X-Cloud-Trace-Context or traceparent."""
    lowered = {key.lower(): value for key, value in headers.items()}
    for header, pattern in (("x-cloud-trace-context", _TRACE_CONTEXT), ("traceparent", _TRACEPARENT)):
        match = pattern.match(lowered.get(header, "").strip())
        if match:
            return f"projects/{project_id}/traces/{match.group(1).lower()}"
    return None


def bind_trace(headers: Mapping[str, str], project_id: str) -> None:
    """Bind the request's trace (if any) so every line logged while handling it carries it."""
    trace = trace_from_headers(headers, project_id)
    if trace:
        structlog.contextvars.bind_contextvars(**{TRACE_FIELD: trace})


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library's logging for one entry point.

    Lines go to ``stream`` (default standard error, so a command's own output on standard
    output stays clean for pipes). Calling it again replaces the previous configuration.
    """
    out = sys.stderr if stream is None else stream
    use_json = settings.log_format == "json" or (settings.log_format == "auto" and not out.isatty())
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    renderer: list[Processor] = (
        [_cloud_logging_shape, _render_non_strings, structlog.processors.JSONRenderer()]
        if use_json
        else [structlog.dev.ConsoleRenderer(colors=out.isatty())]
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO: a line per conferencing call (and per probe) that our own
    # per-command summary already carries, and CPU on the publisher's hot path.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
