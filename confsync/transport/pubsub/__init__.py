"""Google Cloud Pub/Sub (or its emulator), split as google-cloud-pubsub splits itself.

- ``publisher``: ``PubSubPublisher``, one ordered, batched Publish request at a time per topic;
  ``open_publisher`` and ``LazyPubSubPublisher`` build it.
- ``subscriber``: ``PubSubWorker``, streaming pull (Google's Pub/Sub).
- ``unary``: ``PubSubUnaryWorker``, unary Pull (what the local stack runs on the emulator).
  Both workers take ``PullOptions`` (``PullOptions.from_settings`` reads them from Settings).
- ``admin``: ``bootstrap``, which creates the topology's topics and subscriptions.

Both workers settle every message through ``confsync.transport.base.process`` (ack / nack /
dead-letter with the reason). The names below are the package's public surface.
"""

from confsync.transport.pubsub._shared import PullOptions
from confsync.transport.pubsub.admin import BootstrapReport, bootstrap
from confsync.transport.pubsub.publisher import LazyPubSubPublisher, PubSubPublisher, open_publisher
from confsync.transport.pubsub.subscriber import PubSubWorker
from confsync.transport.pubsub.unary import PubSubUnaryWorker

__all__ = [
    "BootstrapReport",
    "LazyPubSubPublisher",
    "PubSubPublisher",
    "PubSubUnaryWorker",
    "PubSubWorker",
    "PullOptions",
    "bootstrap",
    "open_publisher",
]
