"""The streaming-pull Pub/Sub worker (google-cloud-pubsub's subscriber), for Google's Pub/Sub.

``PubSubWorker`` runs ``PullOptions.streams`` streaming pulls on one subscription with flow
control, hands each message to the handler through ``confsync.transport.base.process``
(ack / nack / dead-letter with the reason), and on ``stop`` stops pulling, waits for
in-flight handlers up to a deadline, then cancels.

Emulator notes (DEVELOPERS brief): it drops a message after its last delivery attempt instead
of forwarding it, so the worker dead-letters on the last attempt itself; it reorders after a
nack; idempotency downstream, not delivery order, is what makes the pipeline correct. Messages
held by, or published towards, a killed worker's streams come back late or not at all
(bench/chaos.py), which is why the local stack pulls with ``unary`` instead; the store's traces
of such work (a notification no sync covered, an unsettled outbox command) let ingest/lag.py
publish it again.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import structlog
from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # the package ships no stub for this re-export

from confsync.transport.base import DeadLetter, Handler, Outcome
from confsync.transport.pubsub._shared import PullOptions, PullWorker

__all__ = ["PubSubWorker"]

log = structlog.get_logger(__name__)


class PubSubWorker(PullWorker):
    """Streaming pull on one subscription, with the shared ack/nack/dead-letter rules."""

    def __init__(self, options: PullOptions, subscription: str, handler: Handler, *, dead_letter: DeadLetter) -> None:
        super().__init__(options, subscription, handler, dead_letter=dead_letter)
        self._futures: list[Any] = []
        self._in_flight = 0
        self._idle = threading.Condition()

    def start(self) -> PubSubWorker:
        flow = pubsub_v1.types.FlowControl(
            max_messages=self._options.flow_max_messages,
            max_bytes=self._options.flow_max_bytes,
            max_duration_per_lease_extension=self._options.lease_extension_s,
        )
        for _ in range(self._options.streams):
            self._futures.append(
                self._client.subscribe(
                    self._path, callback=self._on_message, flow_control=flow, await_callbacks_on_shutdown=True
                )
            )
        log.info("worker started", subscription=self._path, transport="pubsub", streams=self._options.streams)
        return self

    def _on_message(self, received: Any) -> None:
        with self._idle:
            self._in_flight += 1
        try:
            if self._process(received, received.delivery_attempt) is Outcome.NACK:
                received.nack()
            else:
                received.ack()
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def stop(self, deadline_s: float | None = None) -> bool:
        """Stop pulling; wait for in-flight handlers up to the deadline; True if all finished."""
        end = self._stop_by(deadline_s)
        for future in self._futures:
            future.cancel()  # stop pulling; messages not yet started are nacked by the client
        finished = True
        for future in self._futures:
            try:
                future.result(timeout=max(0.0, end - time.monotonic()))
            except FutureTimeout:
                finished = False
            except Exception:
                log.debug("stream ended with an error during shutdown", exc_info=True)
        with self._idle:
            while self._in_flight and time.monotonic() < end:
                self._idle.wait(max(0.0, end - time.monotonic()))
            finished = finished and not self._in_flight
        self._client.close()
        log.info("worker stopped", subscription=self._path, transport="pubsub", clean=finished)
        return finished
