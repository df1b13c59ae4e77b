"""A Pub/Sub worker on unary Pull (``CONFSYNC_PUBSUB_PULL=unary``): what the local stack runs
on the emulator.

Why it exists: after a process holding streaming pulls is killed, the Pub/Sub emulator keeps
routing new messages to the dead streams and gives them back late, if at all (google-cloud-pubsub's
own subscriber does it too; bench/chaos.py kills workers). Unary Pull keeps no stream: a message
handed to a killed puller's last request comes back when its ack deadline passes, like any
unacknowledged message. On Google's Pub/Sub the streaming worker (``PubSubWorker``) is the
better choice; Cloud Run runs confsync on push anyway.

Same contract as ``PubSubWorker``: ``PullOptions.streams`` pulling threads, at most
``flow_max_messages`` messages held at once, each handed to the handler through
``confsync.transport.base.process`` (ack / nack / dead-letter with the reason). Messages that
share an ordering key in one response run one after another, and after a nack the rest of that
key's messages are nacked unprocessed, so a key's order holds. Held messages have their ack
deadline extended to ``lease_extension_s`` until they are settled. Acks and nacks are
sent in batches. ``stop`` stops pulling, lets started handlers finish within the deadline,
nacks what never started, and closes the client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import structlog
from google.api_core import exceptions as google_exceptions
from google.api_core.retry import Retry

from confsync.transport.base import DeadLetter, Handler, Outcome
from confsync.transport.pubsub._rpc import Rpc, acknowledge_request, modify_request, pull_request
from confsync.transport.pubsub._shared import PullOptions, PullWorker

__all__ = ["PubSubUnaryWorker"]

log = structlog.get_logger(__name__)

_PULL_WAIT_S = 2.0  # one Pull waits this long for messages: also how long stop waits for a puller
_FLUSH_S = 0.05  # acks and nacks wait at most this long for their batch
_BATCH = 1000  # ack ids in one Acknowledge or ModifyAckDeadline call
_HANDLER_THREADS = 32


class PubSubUnaryWorker(PullWorker):
    """Unary Pull on one subscription, with the shared ack/nack/dead-letter rules."""

    def __init__(self, options: PullOptions, subscription: str, handler: Handler, *, dead_letter: DeadLetter) -> None:
        super().__init__(options, subscription, handler, dead_letter=dead_letter)
        stubs, path = self._client.transport, self._path
        retry = Retry(timeout=options.timeout_s)
        self._pull = Rpc(stubs.pull, field="subscription", resource=path, retry=Retry(timeout=_PULL_WAIT_S))
        self._acknowledge = Rpc(stubs.acknowledge, field="subscription", resource=path, retry=retry)
        self._modify = Rpc(stubs.modify_ack_deadline, field="subscription", resource=path, retry=retry)
        self._capacity = max(1, options.flow_max_messages)
        self._pool = ThreadPoolExecutor(max_workers=min(_HANDLER_THREADS, self._capacity), thread_name_prefix="handler")
        self._lock = threading.Condition()
        self._held: set[str] = set()  # ack ids pulled and not yet settled
        self._acks: list[str] = []
        self._nacks: list[str] = []
        self._tasks: set[Future[None]] = set()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._pull_loop, name=f"puller-{n}") for n in range(options.streams)]
        self._threads.append(threading.Thread(target=self._lease_loop, name="leaser"))
        self._threads.append(threading.Thread(target=self._flush_loop, name="acker"))

    def start(self) -> PubSubUnaryWorker:
        for thread in self._threads:
            thread.start()
        log.info(
            "worker started", subscription=self._path, transport="pubsub", pull="unary", streams=len(self._threads) - 2
        )
        return self

    # -- pulling ------------------------------------------------------------------------------

    def _pull_loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                while len(self._held) >= self._capacity and not self._stopping.is_set():
                    self._lock.wait(0.1)
                room = self._capacity - len(self._held)
            if self._stopping.is_set():
                return
            try:
                answer = self._pull(pull_request(self._path, room), timeout=_PULL_WAIT_S)
            except (google_exceptions.DeadlineExceeded, google_exceptions.RetryError):
                continue  # nothing arrived while we waited
            except google_exceptions.GoogleAPICallError as err:
                log.warning("pull failed; pulling again", subscription=self._path, error=str(err))
                self._stopping.wait(1.0)
                continue
            # The protobuf beneath proto-plus's wrapper: its fields read directly, without the
            # wrapper's conversion on every attribute access (a tenth of a worker's CPU).
            self._dispatch(type(answer).pb(answer).received_messages)

    def _dispatch(self, received: Iterable[Any]) -> None:
        groups: dict[str, list[Any]] = {}
        with self._lock:
            for index, item in enumerate(received):
                self._held.add(item.ack_id)
                key = item.message.ordering_key or f"\0{index}"  # no key: each message on its own
                groups.setdefault(key, []).append(item)
        for group in groups.values():
            if self._stopping.is_set():
                self._settle(group, Outcome.NACK)
                continue
            task = self._pool.submit(self._run, group)
            with self._lock:
                self._tasks.add(task)
            task.add_done_callback(self._forget)

    def _forget(self, task: Future[None]) -> None:
        with self._lock:
            self._tasks.discard(task)
            self._lock.notify_all()

    def _run(self, group: list[Any]) -> None:
        for position, item in enumerate(group):
            if self._stopping.is_set() and position > 0:
                self._settle(group[position:], Outcome.NACK)
                return
            outcome = self._process(item.message, item.delivery_attempt)
            self._settle([item], outcome)
            if outcome is Outcome.NACK:
                self._settle(group[position + 1 :], Outcome.NACK)  # the key's order holds
                return

    def _settle(self, items: list[Any], outcome: Outcome) -> None:
        with self._lock:
            for item in items:
                self._held.discard(item.ack_id)
                (self._nacks if outcome is Outcome.NACK else self._acks).append(item.ack_id)
            self._lock.notify_all()

    # -- leases, acks -------------------------------------------------------------------------

    def _lease_loop(self) -> None:
        extension = self._options.lease_extension_s
        while not self._stopping.wait(max(1.0, extension / 3)):
            with self._lock:
                held = list(self._held)
            self._call(self._modify, held, lambda ids: modify_request(self._path, ids, extension))

    def _flush_loop(self) -> None:
        while not self._stopping.wait(_FLUSH_S):
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            acks, nacks = self._acks, self._nacks
            self._acks, self._nacks = [], []
        self._call(self._acknowledge, acks, lambda ids: acknowledge_request(self._path, ids))
        self._call(self._modify, nacks, lambda ids: modify_request(self._path, ids, 0))

    def _call(self, rpc: Rpc, ack_ids: list[str], request: Callable[[list[str]], Any]) -> None:
        """``rpc`` for ``ack_ids``, in batches of Pub/Sub's limit; ``request`` builds each one's request."""
        for start in range(0, len(ack_ids), _BATCH):
            try:
                rpc(request(ack_ids[start : start + _BATCH]), timeout=self._options.timeout_s)
            # Pub/Sub failing or gone past the retry budget: these come back after their deadline,
            # and the acker or leaser carries on with the next batch.
            except (google_exceptions.GoogleAPICallError, google_exceptions.RetryError) as err:
                log.warning("ack or lease call failed", subscription=self._path, error=str(err))

    # -- stopping -----------------------------------------------------------------------------

    def stop(self, deadline_s: float | None = None) -> bool:
        """Stop pulling; wait for started handlers up to the deadline; True if all finished."""
        end = self._stop_by(deadline_s)
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=max(0.0, end - time.monotonic()))
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            while self._tasks and time.monotonic() < end:
                self._lock.wait(max(0.0, end - time.monotonic()))
            finished = not self._tasks and not any(thread.is_alive() for thread in self._threads)
            self._nacks.extend(self._held)  # pulled, never started: straight back to Pub/Sub
            self._held.clear()
        self._flush()
        self._client.close()
        log.info("worker stopped", subscription=self._path, transport="pubsub", pull="unary", clean=finished)
        return finished
