"""One trace per change: where a change's trace begins, how it crosses Pub/Sub, and how it
reaches the conferencing API.

- **At the door.** The webhook and the add-on API run each request in a ``span`` that
  continues the caller's trace (W3C ``traceparent``, https://www.w3.org/TR/trace-context/, else
  ``X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS``, which Cloud Run adds to every
  request; https://cloud.google.com/trace/docs/trace-context) or begins a new one. A malformed
  header is ignored: the request gets a new trace, never an error.
- **Across Pub/Sub.** Both transports' publishers put the current trace in each message's
  ``traceparent`` attribute (``inject``; one the caller set is kept, so a dead letter keeps
  its change's trace), and every delivered message is handled in a span continued from it
  (``confsync.transport.base.process``, for pull, push and the in-process transport alike).
- **To the provider.** Each conferencing API call is a client span whose ``traceparent`` is
  sent with the request (``confsync.provider``), so the provider's side can join the trace.

Every log line written inside a span carries Cloud Logging's ``logging.googleapis.com/trace``,
``spanId`` and ``trace_sampled`` (confsync/logs.py), so one change's lines, from the webhook
to the provider's PATCH, share one trace.

Spans are recorded and exported only where ``CONFSYNC_TRACING`` says (``configure_tracing``,
once per service process): ``gcp`` sends them to Cloud Trace through its OTLP endpoint
(https://cloud.google.com/trace/docs/migrate-to-otlp-endpoints) with the service's Google
credentials, ``otlp`` to an OpenTelemetry collector over OTLP/HTTP (``CONFSYNC_OTLP_ENDPOINT``).
``off`` (the default) records nothing and imports neither OpenTelemetry's SDK nor an exporter:
trace ids are still made and carried, so the logs join up all the same. Sampling is the SDK's
(parent-based: a caller's "not sampled" is kept; ``OTEL_TRACES_SAMPLER`` changes it).
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from confsync.errors import ConfigError
from confsync.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = [
    "CLOUD_TRACE_CONTEXT",
    "GCP_OTLP_ENDPOINT",
    "OTLP_DEFAULT_ENDPOINT",
    "TRACEPARENT",
    "SpanKind",
    "Tracing",
    "configure_tracing",
    "continued",
    "failed",
    "inject",
    "span",
]

TRACEPARENT = "traceparent"
CLOUD_TRACE_CONTEXT = "x-cloud-trace-context"
GCP_OTLP_ENDPOINT = "https://telemetry.googleapis.com/v1/traces"
OTLP_DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"  # a collector beside the service
_GCP_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# TRACE_ID (32 hex) / SPAN_ID (an unsigned 64-bit decimal) ; o=OPTIONS (1: sampled)
_CLOUD_TRACE = re.compile(r"([0-9a-fA-F]{32})/([0-9]{1,20})(?:;o=([0-9]+))?")
_MAX_SPAN_ID = 2**64 - 1
_W3C = TraceContextTextMapPropagator()
_TRACER = trace.get_tracer("confsync")  # the SDK's once configure_tracing sets one, a no-op before


class _AnyCase(Getter[Mapping[str, str]]):
    """Reads a header whatever its case (message attributes and plain dicts keep theirs)."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = _lookup(carrier, key)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier.keys())


_ANY_CASE = _AnyCase()


def _lookup(carrier: Mapping[str, str], key: str) -> str | None:
    value = carrier.get(key)
    if value is not None:
        return value
    return next((value for name, value in carrier.items() if name.lower() == key), None)


def _cloud_trace_context(value: str | None) -> SpanContext | None:
    """X-Cloud-Trace-Context as a remote span context; None if absent or malformed."""
    match = _CLOUD_TRACE.fullmatch(value.strip()) if value else None
    if match is None:
        return None
    trace_id, span_id = int(match.group(1), 16), int(match.group(2))
    if trace_id == 0 or not 0 < span_id <= _MAX_SPAN_ID:
        return None
    sampled = TraceFlags.SAMPLED if match.group(3) == "1" else TraceFlags.DEFAULT
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(sampled))


def _remote(carrier: Mapping[str, str] | None) -> otel_context.Context | None:
    """The trace ``carrier`` (headers or message attributes) continues; None if it names none."""
    if not carrier:
        return None
    extracted = _W3C.extract(carrier, getter=_ANY_CASE)
    if trace.get_current_span(extracted).get_span_context().is_valid:
        return extracted
    cloud = _cloud_trace_context(_lookup(carrier, CLOUD_TRACE_CONTEXT))
    return None if cloud is None else trace.set_span_in_context(NonRecordingSpan(cloud))


def _new_trace() -> SpanContext:
    """A trace of our own, when nothing records spans: its ids still join the logs up."""
    # Ids, not secrets: drawn as OpenTelemetry's RandomIdGenerator draws them, not from os.urandom per message.
    trace_id, span_id = random.getrandbits(128), random.getrandbits(64)
    return SpanContext(trace_id or 1, span_id or 1, is_remote=False)


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent: Mapping[str, str] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int | bool] | None = None,
) -> Iterator[Span]:
    """Run the block in a span of the trace ``parent`` names (headers or message attributes),
    else of the current trace, else of a new one. An exception escaping the block marks the
    span failed and goes on."""
    context = _remote(parent)  # None: the current context
    current = _TRACER.start_span(name, context=context, kind=kind, attributes=attributes)
    if not current.get_span_context().is_valid:  # nothing records spans, and no trace to continue
        current = NonRecordingSpan(_new_trace())
    # trace.use_span's work, without its cost on every message when nothing records
    token = otel_context.attach(trace.set_span_in_context(current))
    try:
        yield current
    except BaseException as err:
        failed(current, err)
        raise
    finally:
        otel_context.detach(token)
        current.end()


@contextlib.contextmanager
def continued(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Make the trace ``carrier`` names (if any) the current one for the block, without a span of
    its own: what a span started inside falls back to when it has no parent of its own."""
    context = _remote(carrier)
    if context is None:
        yield
        return
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def failed(current: Span, error: BaseException) -> None:
    """Mark ``current`` failed by ``error``'s type only: an error's text may quote what the
    provider or Calendar answered (attendees' addresses), which the logs redact and spans would not."""
    if current.is_recording():
        current.set_status(StatusCode.ERROR, type(error).__name__)
        current.add_event("exception", {"exception.type": type(error).__name__})


def inject(carrier: Mapping[str, str] | None = None) -> dict[str, str]:
    """``carrier`` plus the current trace's ``traceparent``; a ``traceparent`` already there is
    kept. Outside any trace, ``carrier`` as it was. A caller's ``tracestate`` is not passed on:
    up to 8 KB of a stranger's text, over Pub/Sub's attribute limit and on to the provider."""
    out = dict(carrier or {})
    if TRACEPARENT not in out:
        _W3C.inject(out)
        out.pop("tracestate", None)
    return out


@dataclass(frozen=True, slots=True)
class Tracing:
    """What ``configure_tracing`` set up; ``close`` sends the spans still held (call it once,
    when the service stops: a forked child leaves with ``os._exit``, past ``atexit``)."""

    provider: TracerProvider | None = None

    @property
    def recording(self) -> bool:
        return self.provider is not None

    def close(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


def configure_tracing(settings: Settings, *, service: str) -> Tracing:
    """Record spans and export them as ``settings.tracing`` says, for this process (``service``
    names it in the traces). ``off`` changes nothing; call it once per process."""
    if settings.tracing == "off":
        return Tracing()
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415 - off imports no SDK
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    exporter = _exporter(settings)
    resource = Resource.create({"service.name": service, "gcp.project_id": settings.project_id})
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)  # Tracing.close flushes
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return Tracing(provider)


def _exporter(settings: Settings) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

    if settings.tracing == "otlp":
        return OTLPSpanExporter(endpoint=settings.otlp_endpoint or OTLP_DEFAULT_ENDPOINT)
    import google.auth  # noqa: PLC0415
    from google.auth.exceptions import DefaultCredentialsError  # noqa: PLC0415
    from google.auth.transport.requests import AuthorizedSession  # noqa: PLC0415

    try:
        credentials, _ = google.auth.default(scopes=_GCP_SCOPES)
    except DefaultCredentialsError as err:
        raise ConfigError(
            f"gcp tracing sends spans with the service's Google credentials, and there are none: {err}",
            variable="CONFSYNC_TRACING",
        ) from err
    session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]  # google-auth types no __init__ here
    return OTLPSpanExporter(endpoint=GCP_OTLP_ENDPOINT, session=session)
