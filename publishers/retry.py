"""The one retry policy for calls to the conferencing API, built from Settings.

Retries only ``TransientError`` (never ``CircuitOpen``: an open breaker means stop now), with
exponential backoff and full jitter (a random wait between 0 and initial * 2**attempt, capped),
never shorter than a ``Retry-After`` the provider sent, itself capped at ``retry_max_s``; stops
after ``retry_max_attempts`` attempts, or before a wait would take it past its budget
(``retry_max_elapsed_s``, or less for a push request, which must be answered within the ack
deadline), whichever first, and then re-raises the last error (the transport nacks, Pub/Sub
redelivers later). Every retry is logged with its attempt number and delay. ``sleep`` is
injected so tests never wait for real.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from confsync.errors import TransientError
from confsync.settings import Settings

__all__ = ["CircuitOpen", "retry_policy"]

log = structlog.get_logger(__name__)


class CircuitOpen(TransientError):
    """The breaker is open: do not call, do not retry; the message goes back to Pub/Sub."""


class _WaitPastBudget(stop_base):
    """Stop before a wait that would end past the budget (tenacity's stop_before_delay, counting
    the time slept too: an injected sleep does not move the clock)."""

    def __init__(self, budget_s: float) -> None:
        self._budget_s = budget_s

    def __call__(self, state: RetryCallState) -> bool:
        spent = max(state.seconds_since_start or 0.0, state.idle_for)
        return spent + state.upcoming_sleep >= self._budget_s


def _retryable(error: BaseException) -> bool:
    return isinstance(error, TransientError) and not isinstance(error, CircuitOpen)


def retry_policy(
    settings: Settings, *, sleep: Callable[[float], None] = time.sleep, budget_s: float | None = None
) -> Retrying:
    """The policy; ``budget_s`` shortens ``retry_max_elapsed_s`` (a push request's deadline)."""
    jitter = wait_random_exponential(multiplier=settings.retry_initial_s, max=settings.retry_max_s)
    budget = settings.retry_max_elapsed_s if budget_s is None else min(budget_s, settings.retry_max_elapsed_s)

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        asked = error.retry_after if isinstance(error, TransientError) and error.retry_after else 0.0
        return max(float(jitter(state)), min(asked, settings.retry_max_s))  # a peer may ask for hours

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("retrying", attempt=state.attempt_number, delay_s=round(delay, 3), error=str(error))

    return Retrying(
        stop=stop_any(stop_after_attempt(settings.retry_max_attempts), _WaitPastBudget(budget)),
        wait=wait,
        retry=retry_if_exception(_retryable),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
