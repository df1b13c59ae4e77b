"""One trace per change: which trace a span continues, what goes on to the next hop, and
where spans go when CONFSYNC_TRACING asks for them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from confsync.errors import ConfigError
from confsync.settings import Settings
from confsync.tracing import TRACEPARENT, configure_tracing, inject, span

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"
CLOUD_RUN_TRACE = "105445aa7843bc8bf206b12000100000"


def sent_on(parent: dict[str, str] | None = None) -> tuple[str, str, str]:
    """(trace id, span id, flags) of the traceparent a span continuing ``parent`` sends on."""
    with span("request", parent=parent):
        traceparent = inject()[TRACEPARENT]
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00"
    return trace_id, span_id, flags


def test_a_callers_traceparent_is_continued() -> None:
    assert sent_on({"traceparent": CALLER}) == (CALLER_TRACE, "00f067aa0ba902b7", "01")


def test_cloud_runs_trace_header_is_continued_when_there_is_no_traceparent() -> None:
    trace_id, _, flags = sent_on({"X-Cloud-Trace-Context": f"{CLOUD_RUN_TRACE.upper()}/1;o=1"})
    assert (trace_id, flags) == (CLOUD_RUN_TRACE, "01")
    assert sent_on({"x-cloud-trace-context": f"{CLOUD_RUN_TRACE}/12345"})[0] == CLOUD_RUN_TRACE


def test_the_w3c_header_wins_over_cloud_runs() -> None:
    headers = {"traceparent": CALLER, "x-cloud-trace-context": f"{CLOUD_RUN_TRACE}/1;o=1"}
    assert sent_on(headers)[0] == CALLER_TRACE


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": "garbage"},
        {"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"},  # an all-zero trace id is invalid
        {"traceparent": f"00-{CALLER_TRACE}-{'0' * 16}-01"},  # so is an all-zero parent id
        {"traceparent": f"ff-{CALLER_TRACE}-00f067aa0ba902b7-01"},  # version ff is forbidden
        {"traceparent": CALLER + "x" * 600},  # longer than the header may be
        {"x-cloud-trace-context": "not-a-trace"},
        {"x-cloud-trace-context": CLOUD_RUN_TRACE},  # no span id
        {"x-cloud-trace-context": f"{CLOUD_RUN_TRACE}/0;o=1"},
        {"x-cloud-trace-context": f"{CLOUD_RUN_TRACE}/{2**64};o=1"},  # past 64 bits
        {},
    ],
)
def test_a_malformed_or_missing_header_starts_a_new_trace(headers: dict[str, str]) -> None:
    first, second = sent_on(headers), sent_on(headers)
    assert first[0] != second[0], "each request gets a trace of its own"
    for trace_id, span_id, _ in (first, second):
        assert len(trace_id) == 32
        assert int(trace_id, 16) != 0
        assert len(span_id) == 16
        assert int(span_id, 16) != 0
        assert trace_id not in (CALLER_TRACE, CLOUD_RUN_TRACE)


def test_a_span_without_a_parent_of_its_own_stays_in_the_current_trace() -> None:
    with span("webhook", parent={"traceparent": CALLER}), span("provider call"):
        assert inject()[TRACEPARENT].split("-")[1] == CALLER_TRACE


def test_a_messages_own_traceparent_is_kept_and_none_is_added_outside_a_trace() -> None:
    assert inject({"kind": "x"}) == {"kind": "x"}
    with span("dead-lettering"):
        kept = inject({"traceparent": CALLER, "dead_letter_reason": "gone"})
    assert kept == {"traceparent": CALLER, "dead_letter_reason": "gone"}


def test_a_callers_tracestate_is_not_passed_on() -> None:
    """Up to 8 KB of a stranger's text: over Pub/Sub's attribute limit, and the provider's business."""
    with span("webhook", parent={"traceparent": CALLER, "tracestate": "vendor=" + "x" * 4000}):
        sent = inject()
    assert set(sent) == {TRACEPARENT}
    assert sent[TRACEPARENT].split("-")[1] == CALLER_TRACE


# -- exporting ----------------------------------------------------------------------------------

_IN_A_SERVICE = """
import sys
from confsync.errors import ConfigError
from confsync.settings import Settings
from confsync.tracing import configure_tracing, inject, span

tracing = configure_tracing(Settings(tracing={mode!r}, otlp_endpoint={endpoint!r}), service="confsync-test")
with span("POST /notifications", parent={{"traceparent": {caller!r}}}):
    with span("PATCH"):
        print(inject()["traceparent"])
tracing.close()
print(sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))))
"""


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP traces endpoint that keeps what it is sent."""

    received: list[bytes]

    def do_POST(self) -> None:
        self.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        """Quiet: the test reads what arrived."""


@pytest.fixture
def collector() -> Iterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", received
    server.shutdown()
    server.server_close()


def _run_service(mode: str, endpoint: str | None = None) -> list[str]:
    script = _IN_A_SERVICE.format(mode=mode, endpoint=endpoint, caller=CALLER)
    done = subprocess.run(  # a process of its own: the tracer provider is set once per process
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_with_otlp_the_spans_of_a_change_reach_the_collector_in_the_callers_trace(
    collector: tuple[str, list[bytes]],
) -> None:
    endpoint, received = collector
    traceparent, _ = _run_service("otlp", endpoint)
    assert received, "nothing was exported"
    spans = []
    for body in received:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource.resource.attributes}
            assert attributes["service.name"] == "confsync-test"
            spans += [s for scope in resource.scope_spans for s in scope.spans]
    by_name = {s.name: s for s in spans}
    assert set(by_name) == {"POST /notifications", "PATCH"}
    assert {s.trace_id.hex() for s in spans} == {CALLER_TRACE}
    assert by_name["POST /notifications"].parent_span_id.hex() == "00f067aa0ba902b7"
    assert by_name["PATCH"].parent_span_id == by_name["POST /notifications"].span_id
    assert traceparent.split("-")[2] == by_name["PATCH"].span_id.hex(), "the provider hears the PATCH span"


def test_off_records_nothing_and_loads_no_sdk() -> None:
    traceparent, loaded = _run_service("off")
    assert traceparent.split("-")[1] == CALLER_TRACE
    assert loaded == "[]"


def test_the_setting_takes_gcp_otlp_or_off_and_nothing_else() -> None:
    assert Settings.from_env({}).tracing == "off"
    assert Settings.from_env({"CONFSYNC_TRACING": "OTLP"}).tracing == "otlp"
    with pytest.raises(ConfigError, match="CONFSYNC_TRACING"):
        Settings.from_env({"CONFSYNC_TRACING": "jaeger"})


def test_gcp_without_google_credentials_is_a_configuration_error_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="CONFSYNC_TRACING: gcp tracing sends spans with the service's Google"):
        configure_tracing(Settings(tracing="gcp"), service="confsync-test")
