"""Structured logging for every confsync entry point, configured once.

``configure_logging`` is called by an entry point (the CLI, a server) and nowhere else.
Modules log through ``log = structlog.get_logger(__name__)`` and bind context
(calendar_id, channel_id, message_id, conference_id, command_id) with
``structlog.contextvars``. Third-party loggers (uvicorn, google-cloud, httpx) go through the
same pipeline, so every line looks alike.

Output is either one JSON object per line in the shape Cloud Logging reads from Cloud Run
(``severity``, ``message``, ``time``, and, for a line written inside a span of a change's trace
(confsync/tracing.py), ``logging.googleapis.com/trace``, ``spanId`` and ``trace_sampled``;
https://cloud.google.com/logging/docs/structured-logging), or a console renderer for people at
a terminal.

Secrets never reach a line: every configured ``Secret`` setting's value is masked wherever it
appears, and so are values under secret-looking keys (token, authorization, api_key, password,
secret..., in snake_case, camelCase or header form), ``Secret`` objects, and secret-shaped text
anywhere else (``Bearer ...``, Google API keys, OAuth access and refresh tokens, OAuth client
secrets, JWTs, PEM private keys, ``access_token=...`` and the like in URLs and JSON), in the
message, in any value however nested, and in formatted tracebacks. Exceptions that escape a
thread go through the same pipeline (``threading.excepthook``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import re
import sys
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import TextIO

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

from confsync.settings import Secret, Settings

__all__ = [
    "REDACTED",
    "SAMPLED_FIELD",
    "SPAN_FIELD",
    "TRACE_FIELD",
    "configure_logging",
    "redact_secrets",
]

REDACTED = "[REDACTED]"
TRACE_FIELD = "logging.googleapis.com/trace"
SPAN_FIELD = "logging.googleapis.com/spanId"
SAMPLED_FIELD = "logging.googleapis.com/trace_sampled"

# Keys whose values are credentials. Matched case-insensitively on the normalised key
# (camelCase split, dashes as underscores), as a whole word or a suffix: "channel_token",
# "channelToken", "X-Goog-Channel-Token".
_SECRET_KEY = re.compile(
    r"(^|_)(token|authorization|api_?key|password|passwd|secret|client_secret|private_key|"
    r"credentials?|cookie|set_cookie|passcode|pin|code_verifier)$",
)
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# Cursors, not credentials: useful when debugging a sync, useless without credentials.
_NOT_SECRET_KEYS = frozenset({"sync_token", "next_sync_token", "page_token", "next_page_token"})
# Secret values shorter than this are masked only as a whole word: "dev" must not eat "several".
_MIN_SUBSTRING_SECRET = 8
# Names of credentials in "name=value" (URLs, forms, text) and '"name": "value"' (JSON, reprs).
_KV_NAMES = (
    r"(?:access|refresh|id|channel|auth)?[_-]?token|api[_-]?key|apikey|client[_-]?secret|secret|"
    r"password|passwd|private[_-]?key|code[_-]?verifier"
)
# Query parameters too generic to mask in prose, but credentials in a URL.
_URL_NAMES = r"key|code|sig|signature|x-(?:goog|amz)-(?:signature|credential)"
_KV_VALUE = r"[^\s&#\"',;<>()\[\]{}]+"
# (pattern, replacement, hints): each runs over the text in this order, after the configured
# secrets, and only when the lower-cased text holds one of its hints (a test far cheaper than a
# regex search, so the usual line, which holds no secret, costs a few substring checks).
_SECRET_TEXT: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # a PEM private key, or what is left of one that was cut short
    (
        r"-----BEGIN[A-Z0-9 ]* PRIVATE KEY-----(?s:.*?)(?:-----END[A-Z0-9 ]* PRIVATE KEY-----|\Z)",
        REDACTED,
        ("private key-----",),
    ),
    (r"\b((?i:bearer|basic))\s+[A-Za-z0-9._~+/=-]+", rf"\1 {REDACTED}", ("bearer", "basic")),
    (r"\bAIza[0-9A-Za-z_-]{35}\b", REDACTED, ("aiza",)),  # Google API keys
    (r"\bya29\.[0-9A-Za-z_-]+", REDACTED, ("ya29.",)),  # Google OAuth access tokens
    (r"\b1//[0-9A-Za-z_-]{16,}", REDACTED, ("1//",)),  # Google OAuth refresh tokens
    (r"\bGOCSPX-[0-9A-Za-z_-]+", REDACTED, ("gocspx-",)),  # Google OAuth client secrets
    (r"\beyJ[0-9A-Za-z_-]{4,}\.[0-9A-Za-z_-]{4,}\.[0-9A-Za-z_-]*", REDACTED, ("eyj",)),  # JWTs (ID tokens)
    (
        rf"(?<![\w.-])((?i:{_KV_NAMES})=|[\"'](?i:{_KV_NAMES})[\"']\s*:\s*[\"']?){_KV_VALUE}",
        rf"\1{REDACTED}",
        ("token", "key", "secret", "passw", "verifier"),
    ),
    (
        rf"(?<=[?&])((?i:{_URL_NAMES})=){_KV_VALUE}",
        rf"\1{REDACTED}",
        ("key=", "code=", "sig=", "signature=", "credential="),
    ),
)
# Keys the redactor leaves alone: the formatter's, and those the processors before it set from
# the logger's name, the level and the clock (over any caller's extra of the same name).
_FORMATTER_KEYS = frozenset({"_record", "_from_structlog", "logger", "level", "timestamp"})
_SEVERITY = {
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARNING",
    "warn": "WARNING",
    "error": "ERROR",
    "exception": "ERROR",
    "critical": "CRITICAL",
}


class _Redactor:
    """structlog processor: mask every secret in the event, however deeply nested, leaving every
    value JSON-safe (text, numbers, booleans, None, lists and text-keyed mappings: any other
    object becomes its text, so that text is what gets masked and what the line shows).

    ``secrets`` are values masked verbatim wherever they appear (the configured ``Secret``
    settings). Every pattern is compiled once, here.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        passes = [(re.compile(pattern), replacement, hints) for pattern, replacement, hints in _SECRET_TEXT]
        forms = _secret_forms(secrets)
        if forms:
            verbatim = "|".join(
                re.escape(form) if len(form) >= _MIN_SUBSTRING_SECRET else rf"(?<![\w-]){re.escape(form)}(?![\w-])"
                for form in forms
            )
            passes.insert(0, (re.compile(verbatim), REDACTED, tuple({form.lower() for form in forms})))
        self._passes = tuple(passes)
        hints = {hint for _, _, pass_hints in passes for hint in pass_hints}
        # The first check needs no hint that contains a shorter one: the shorter finds it too.
        self._hints = tuple(sorted(hint for hint in hints if not any(h != hint and h in hint for h in hints)))

    def __call__(self, _logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        item = self._item
        return {key: value if key in _FORMATTER_KEYS else item(key, value) for key, value in event_dict.items()}

    def _item(self, key: object, value: object) -> object:
        if value not in (None, "") and _is_secret_key(str(key)):
            return REDACTED
        return self._value(value)

    def _value(self, value: object) -> object:
        if isinstance(value, str):  # most values: tested first
            return self._text(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, Secret):
            return REDACTED
        if isinstance(value, Mapping):
            return {str(k): self._item(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._value(item) for item in value]
        # Any other object is rendered as its text, so that text is what gets masked.
        return self._text(value.decode(errors="replace") if isinstance(value, bytes) else str(value))

    def _text(self, text: str) -> str:
        lowered = text.lower()
        for hint in self._hints:  # a plain loop: the usual text holds none, and this is the hot path
            if hint in lowered:
                break
        else:
            return text
        for pattern, replacement, hints in self._passes:
            if any(hint in lowered for hint in hints):
                text = pattern.sub(replacement, text)
        return text


def _secret_forms(secrets: Iterable[str]) -> list[str]:
    """Each secret as written, JSON-escaped and URL-encoded, longest first (so none masks half of another)."""
    forms = {
        form
        for secret in secrets
        if secret
        for form in (secret, json.dumps(secret)[1:-1], urllib.parse.quote(secret, safe=""))
    }
    return sorted(forms, key=len, reverse=True)


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    normalised = _CAMEL_HUMP.sub("_", key).lower().replace("-", "_")
    return normalised not in _NOT_SECRET_KEYS and _SECRET_KEY.search(normalised) is not None


redact_secrets = _Redactor()
"""The redaction processor for patterns and secret-looking keys, with no configured secrets."""


def _secret_values(settings: Settings) -> list[str]:
    """The text of every ``Secret`` setting that is set."""
    values = (getattr(settings, field.name) for field in dataclasses.fields(settings))
    return [value.reveal() for value in values if isinstance(value, Secret)]


class _Lines:
    """structlog's logger: each rendered line to ``handler``'s stream, as the handler would write it."""

    def __init__(self, handler: logging.StreamHandler[TextIO], name: str = "", *_: object) -> None:
        self._handler = handler
        self.name = name  # structlog.stdlib.add_logger_name reads it

    def msg(self, line: str) -> None:
        handler = self._handler
        with handler.lock or contextlib.nullcontext():
            try:
                handler.stream.write(line + handler.terminator)
                handler.flush()
            except (OSError, ValueError):  # a closed stream: as the handler would, the caller carries on
                return

    debug = info = warning = warn = error = exception = critical = fatal = log = msg


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """``threading.excepthook``: an exception that ends a thread is logged like any other line."""
    if args.exc_type is SystemExit:  # a thread asked to exit; the default hook is silent too
        return
    structlog.get_logger("confsync.threads").error(
        "uncaught exception in a thread",
        thread=args.thread.name if args.thread is not None else None,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def _cloud_logging_shape(_logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Rename structlog's keys to the ones Cloud Logging reads from a JSON line."""
    event_dict.pop("color_message", None)  # uvicorn's ANSI-coloured twin of the message
    level = str(event_dict.pop("level", method)).lower()
    event_dict["severity"] = _SEVERITY.get(level, "DEFAULT")
    event_dict["message"] = str(event_dict.pop("event", ""))
    if "timestamp" in event_dict:
        event_dict["time"] = event_dict.pop("timestamp")
    return event_dict


def _trace_fields(project_id: str) -> Processor:
    """A processor that puts the current span's trace on the line, as Cloud Logging reads it."""
    traces = f"projects/{project_id}/traces/"

    def add(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            event_dict[TRACE_FIELD] = traces + format(context.trace_id, "032x")
            event_dict[SPAN_FIELD] = format(context.span_id, "016x")
            event_dict[SAMPLED_FIELD] = context.trace_flags.sampled
        return event_dict

    return add


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library's logging for one entry point.

    Lines go to ``stream`` (default standard error, so a command's own output on standard
    output stays clean for pipes). Every ``Secret`` in ``settings`` is masked on every line.
    Exceptions that end a thread are logged through the same pipeline (it sets
    ``threading.excepthook``). Calling it again replaces the previous configuration.
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
        _Redactor(_secret_values(settings)),
    ]
    renderer: list[Processor] = (
        [
            _trace_fields(settings.project_id),
            _cloud_logging_shape,
            structlog.processors.JSONRenderer(),  # the redactor left every value JSON-safe
        ]
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
    # No line shows the caller's file, thread or process: skip looking them up for every record
    # (the logging HOWTO's "Optimization" switches; findCaller alone walks the stack per line).
    logging._srcfile = None  # noqa: SLF001
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO: a line per conferencing call (and per probe) that our own
    # per-command summary already carries, and CPU on the publisher's hot path.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
    # Google's clients cut the "google" logger off from the root when they find it unconfigured,
    # and their records then reach stderr raw, unredacted: configured here, it keeps propagating.
    google = logging.getLogger("google")
    google.setLevel(level)
    google.propagate = True
    # Our own lines skip the standard library's records (two per line, and a lock): rendered by
    # the same processors, they are written to the handler's stream under the handler's lock.
    structlog.configure(
        processors=[*shared, *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=functools.partial(_Lines, handler),
        cache_logger_on_first_use=False,
    )
    threading.excepthook = _log_thread_exception
