"""The push endpoint: OIDC tokens we sign ourselves are checked like Google's, envelopes are
validated, outcomes become status codes; and a real emulator push subscription drives it."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from google.api_core.retry import Retry
from google.cloud import pubsub_v1
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from tests_support.oidc import GOOGLE_CERT, IMPOSTOR_KEY, sign
from tests_support.transport import Recorder, wait_until

from confsync.errors import PermanentError, TransientError
from confsync.serving import ServedApp
from confsync.settings import PushAuth, Settings
from confsync.tracing import TRACEPARENT, inject
from confsync.transport.base import DeadLetter, Message
from confsync.transport.memory import MemoryBroker
from confsync.transport.push import OidcVerifier, push_route, push_verifier

AUDIENCE = "https://processor.example.run.app/pubsub/calendar-changes"
PUSHER = "pubsub-push@confsync-prod.iam.gserviceaccount.com"


def token(private_key: str | None = None, **overrides: object) -> str:
    claims: dict[str, object] = {"aud": AUDIENCE, "email": PUSHER, **overrides}
    return sign(private_key, **claims)


def envelope(payload: bytes = b"hello", **message: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "data": base64.b64encode(payload).decode(),
        "attributes": {"kind": "test"},
        "messageId": "m-1",
        "publishTime": "2026-11-24T18:00:00.123Z",
    }
    body.update(message)
    return {"message": body, "subscription": "projects/p/subscriptions/s", "deliveryAttempt": 2}


class PushServer:
    def __init__(self, verifier: OidcVerifier | None, recorder: Recorder, *extra: BaseRoute) -> None:
        self.broker = MemoryBroker()
        self.broker.create_topic("dead")
        self.broker.create_subscription("dead-sub", "dead")
        self.recorder = recorder
        route = push_route(
            "/pubsub/test",
            recorder,
            verifier=verifier,
            dead_letter=DeadLetter(self.broker, "dead", "push:/pubsub/test"),
            max_attempts=5,
        )
        self.served = ServedApp(Starlette(routes=[route, *extra])).start()
        self.url = f"{self.served.url}/pubsub/test"

    def post(self, body: Any, bearer: str | None = None, raw: bytes | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        content = raw if raw is not None else json.dumps(body).encode()
        return httpx.post(
            self.url, content=content, headers={**headers, "Content-Type": "application/json"}, timeout=10
        )


@pytest.fixture
def server(recorder: Recorder) -> Iterator[PushServer]:
    verifier = OidcVerifier(audience=AUDIENCE, email=PUSHER, fetch_certs=lambda: {"google-kid": GOOGLE_CERT})
    push = PushServer(verifier, recorder)
    yield push
    push.served.stop()


def test_a_valid_push_is_handled_and_acked(server: PushServer, recorder: Recorder) -> None:
    answer = server.post(envelope(b"payload"), token())
    assert answer.status_code == 204
    (message,) = recorder.seen
    assert message.data == b"payload"
    assert message.attributes == {"kind": "test"}
    assert message.message_id == "m-1"
    assert message.delivery_attempt == 2
    assert message.publish_time == dt.datetime(2026, 11, 24, 18, 0, 0, 123000, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("bearer", "status"),
    [  # signed when the test runs: a token signed at collection expires before a long run reaches it
        (lambda: None, 401),
        (lambda: "not-a-jwt", 401),
        (lambda: token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200), 401),
        (lambda: token(IMPOSTOR_KEY), 401),
        (lambda: token(iss="https://evil.example.com"), 401),
        (lambda: token(aud="https://someone-else.example.com"), 403),
        (lambda: token(email="attacker@evil.example.com"), 403),
        (lambda: token(email_verified=False), 403),
    ],
    ids=["missing", "garbage", "expired", "forged", "issuer", "audience", "email", "unverified"],
)
def test_a_bad_token_is_refused_and_the_handler_is_not_called(
    server: PushServer, recorder: Recorder, bearer: Callable[[], str | None], status: int
) -> None:
    answer = server.post(envelope(), bearer())
    assert answer.status_code == status
    assert recorder.seen == []


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (json.dumps({"nomessage": True}).encode(), "no message object"),
        (json.dumps(envelope(data="***")).encode(), "not base64"),
        (json.dumps(envelope(attributes={"n": 1})).encode(), "attributes"),
        (json.dumps(envelope(messageId="")).encode(), "messageId"),
        (json.dumps({**envelope(), "deliveryAttempt": "two"}).encode(), "deliveryAttempt"),
    ],
)
def test_a_malformed_envelope_is_a_400_with_the_reason(
    server: PushServer, recorder: Recorder, raw: bytes, reason: str
) -> None:
    answer = server.post(None, token(), raw=raw)
    assert answer.status_code == 400
    assert reason in answer.json()["error"]
    assert recorder.seen == []


def test_transient_failure_asks_pubsub_to_retry(server: PushServer, recorder: Recorder) -> None:
    def busy(_message: Message) -> None:
        raise TransientError("try later")

    recorder.fail = busy
    assert server.post(envelope(), token()).status_code == 503


def test_permanent_failure_is_dead_lettered_then_acked(server: PushServer, recorder: Recorder) -> None:
    def refuse(_message: Message) -> None:
        raise PermanentError("unusable")

    recorder.fail = refuse
    assert server.post(envelope(b"poison"), token()).status_code == 204
    ((ack_id, dead),) = server.broker.pull("dead-sub", 5, 1.0)
    assert dead.data == b"poison"
    assert dead.attributes["dead_letter_reason"] == "unusable"
    assert dead.attributes["dead_letter_source"] == "push:/pubsub/test"
    server.broker.ack("dead-sub", ack_id)


CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLOUD_RUN_TRACE = "105445aa7843bc8bf206b12000100000"


class TraceRecorder(Recorder):
    """Also records the trace each message was handled in: the traceparent it would send on."""

    def __init__(self) -> None:
        super().__init__()
        self.traces: list[str] = []

    def __call__(self, message: Message) -> None:
        self.traces.append(inject()[TRACEPARENT].split("-")[1])
        super().__call__(message)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({TRACEPARENT: f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"}, CALLER_TRACE),  # the change's trace wins
        ({}, CLOUD_RUN_TRACE),  # none: the push request's own
        ({TRACEPARENT: "01-garbage"}, CLOUD_RUN_TRACE),  # malformed: ignored
    ],
    ids=["message", "request", "malformed"],
)
def test_a_push_is_handled_in_the_trace_its_message_names_else_the_requests(
    attributes: dict[str, str], expected: str
) -> None:
    recorder = TraceRecorder()
    push = PushServer(None, recorder)
    try:
        answer = httpx.post(
            push.url,
            json=envelope(attributes=attributes),
            headers={"X-Cloud-Trace-Context": f"{CLOUD_RUN_TRACE}/7;o=1"},
            timeout=10,
        )
    finally:
        push.served.stop()
    assert answer.status_code == 204
    assert recorder.traces == [expected]


def test_certificates_are_fetched_once_and_cached(recorder: Recorder) -> None:
    fetches: list[int] = []

    def fetch() -> dict[str, str]:
        fetches.append(1)
        return {"google-kid": GOOGLE_CERT}

    verifier = OidcVerifier(audience=AUDIENCE, email=PUSHER, fetch_certs=fetch)
    for _ in range(3):
        verifier.verify(f"Bearer {token()}")
    assert len(fetches) == 1


def test_a_real_emulator_push_subscription_drives_the_route(pubsub_emulator_host: str, recorder: Recorder) -> None:
    push = PushServer(None, recorder)  # local mode: the emulator sends no token
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    try:
        topic = publisher.topic_path("confsync-test", f"push-{uuid.uuid4().hex[:8]}")
        publisher.create_topic(name=topic, retry=Retry(timeout=20), timeout=20)
        subscriber.create_subscription(
            request={
                "name": subscriber.subscription_path("confsync-test", f"push-sub-{uuid.uuid4().hex[:8]}"),
                "topic": topic,
                "push_config": {"push_endpoint": push.url},
            },
            retry=Retry(timeout=20),
            timeout=20,
        )
        publisher.publish(topic, b"pushed for real", origin="emulator").result(timeout=20)
        wait_until(lambda: b"pushed for real" in recorder.datas(), what="the emulator's push")
        (message,) = recorder.seen
        assert message.attributes == {"origin": "emulator"}
        assert message.message_id
    finally:
        subscriber.close()
        publisher.transport.close()
        push.served.stop()


def test_concurrent_pushes_are_all_handled(server: PushServer, recorder: Recorder) -> None:
    bearer = token()
    threads = [
        threading.Thread(target=server.post, args=(envelope(f"m{n}".encode(), messageId=f"id-{n}"), bearer))
        for n in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(recorder.datas()) == sorted(f"m{n}".encode() for n in range(20))


def test_a_slow_certificate_fetch_does_not_stall_other_requests(recorder: Recorder) -> None:
    fetching, other_answered = threading.Event(), threading.Event()
    answered_during_fetch: list[bool] = []

    def slow_google() -> dict[str, str]:
        fetching.set()
        answered_during_fetch.append(other_answered.wait(5))  # returns as soon as the other request is answered
        return {"google-kid": GOOGLE_CERT}

    async def other(_request: Request) -> Response:
        other_answered.set()
        return Response("ok")

    verifier = OidcVerifier(audience=AUDIENCE, email=PUSHER, fetch_certs=slow_google)
    push = PushServer(verifier, recorder, Route("/other", other))
    try:
        pushing = threading.Thread(target=push.post, args=(envelope(b"first"), token()))
        pushing.start()
        assert fetching.wait(30)
        assert httpx.get(f"{push.served.url}/other", timeout=30).status_code == 200
        pushing.join(30)
    finally:
        push.served.stop()
    assert answered_during_fetch == [True]
    assert recorder.datas() == [b"first"]


def stripped(signed: str) -> str:
    """A token as Cloud Run hands it to an IAM-protected service: checked, then its signature removed."""
    header, payload, _ = signed.split(".")
    return f"{header}.{payload}.SIGNATURE_REMOVED_BY_GOOGLE"


@pytest.fixture(params=["platform", "verify"])
def mode_server(request: pytest.FixtureRequest, recorder: Recorder) -> Iterator[tuple[PushAuth, PushServer]]:
    """A push route as Settings builds it in each CONFSYNC_PUSH_AUTH mode."""
    mode: PushAuth = request.param
    if mode == "platform":
        settings = Settings(
            push_audience=AUDIENCE, push_service_account=PUSHER, push_auth="platform", cloud_run_service="publisher"
        )
        verifier = push_verifier(settings)
    else:  # as push_verifier builds it, with our test key standing in for Google's certificates
        verifier = OidcVerifier(audience=AUDIENCE, email=PUSHER, fetch_certs=lambda: {"google-kid": GOOGLE_CERT})
    push = PushServer(verifier, recorder)
    yield mode, push
    push.served.stop()


def test_a_token_whose_signature_cloud_run_removed_is_accepted_only_behind_cloud_run_iam(
    mode_server: tuple[PushAuth, PushServer], recorder: Recorder
) -> None:
    mode, server = mode_server
    answer = server.post(envelope(b"through IAM"), stripped(token()))
    if mode == "platform":
        assert answer.status_code == 204
        assert recorder.datas() == [b"through IAM"]
    else:
        assert answer.status_code == 401
        assert recorder.seen == []


@pytest.mark.parametrize(
    ("make", "status"),
    [  # made when the test runs: a time read at collection is stale minutes later in a full run
        (lambda: token(aud="https://someone-else.example.com"), 403),
        (lambda: token(email="attacker@evil.example.com"), 403),
        (lambda: token(email_verified=False), 403),
        (lambda: token(iss="https://evil.example.com"), 401),
        (lambda: token(exp=int(time.time()) - 120, iat=int(time.time()) - 720), 401),
        (lambda: token(iat=int(time.time()) + 120), 401),
        (lambda: "header.payload", 401),
    ],
    ids=["audience", "email", "unverified", "issuer", "expired", "future", "garbage"],
)
def test_a_stripped_token_for_someone_else_is_refused_in_both_modes(
    mode_server: tuple[PushAuth, PushServer], recorder: Recorder, make: Callable[[], str], status: int
) -> None:
    mode, server = mode_server
    bearer = make()
    answer = server.post(envelope(), bearer if bearer.count(".") < 2 else stripped(bearer))
    assert answer.status_code == (status if mode == "platform" else 401)  # verify mode: the signature is missing
    assert recorder.seen == []


def test_platform_mode_still_accepts_a_token_cloud_run_left_signed(
    mode_server: tuple[PushAuth, PushServer], recorder: Recorder
) -> None:
    _, server = mode_server
    assert server.post(envelope(b"signed"), token()).status_code == 204
    assert recorder.datas() == [b"signed"]


def test_behind_cloud_run_a_second_credential_header_is_refused(
    mode_server: tuple[PushAuth, PushServer], recorder: Recorder
) -> None:
    """Cloud Run IAM checks X-Serverless-Authorization when present and passes Authorization on
    unchecked: with it, a stripped-looking token in Authorization proves nothing."""
    _, server = mode_server
    forged = stripped(token())
    answer = httpx.post(
        server.url,
        content=json.dumps(envelope(b"forged")).encode(),
        headers={"Authorization": f"Bearer {forged}", "X-Serverless-Authorization": "Bearer x.y.z"},
        timeout=10,
    )
    assert answer.status_code == 401
    assert recorder.seen == []
