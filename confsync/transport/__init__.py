"""How messages move between stages: Pub/Sub (production) and an in-process twin (embedded).

Both give every stage the same contract (``confsync.transport.base``): a handler per message,
ack on success, nack on ``TransientError``, dead-letter with the reason on ``PermanentError``
or after the last delivery attempt. Push subscriptions are served by ``push.push_route``.
"""

from confsync.transport.base import DeadLetter, Handler, Message, Outcome, decide, process

__all__ = ["DeadLetter", "Handler", "Message", "Outcome", "decide", "process"]
