"""The Pub/Sub topics and subscriptions confsync needs: one source of truth, from Settings.

``confsync pubsub bootstrap`` creates exactly these; ``confsync pubsub bootstrap
--print-terraform-vars`` prints them as the ``pubsub`` variable of infra/terraform, whose
default must be the same (tests/test_infra compares the two, and what bootstrap creates).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confsync.settings import Settings

__all__ = ["DEAD_LETTER_RETENTION_S", "SubscriptionSpec", "Topology", "terraform_vars", "topology"]


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    name: str
    topic: str
    ordered: bool
    ack_deadline_s: int
    dead_letter_topic: str | None  # None for the subscriptions that hold dead letters
    max_delivery_attempts: int
    # Redelivery backoff after a nack; None: no retry policy, a nacked message comes back at
    # once. The dead-letter holding subscriptions take None: `confsync deadletter list` hands
    # every message straight back, and with a backoff each look delayed the next one (1, 2,
    # 4 s...), so a `replay` run right after a `list` found nothing.
    min_backoff_s: int | None = 1
    max_backoff_s: int | None = 600  # Pub/Sub's longest: an overloaded endpoint gets room to recover
    retention_s: int = 7 * 86400  # unacknowledged messages are kept this long (Pub/Sub's longest)
    # Every subscription is created without expiry: an idle dead-letter subscription must not
    # be deleted with its messages (Pub/Sub's default drops one after 31 idle days).


# A dead letter keeps its command as published, attendees' emails and all, since a replay needs
# the event's whole state: kept a week, what an operator needs between the dead-letter alert
# (infra/terraform/monitoring.tf) and a replay after the fix, a weekend included; then gone.
DEAD_LETTER_RETENTION_S = 7 * 86400


@dataclass(frozen=True, slots=True)
class Topology:
    topics: tuple[str, ...]
    subscriptions: tuple[SubscriptionSpec, ...]

    def subscription(self, name: str) -> SubscriptionSpec:
        return next(spec for spec in self.subscriptions if spec.name == name)


def topology(settings: Settings) -> Topology:
    """Three work topics with their dead-letter topics; a worker subscription on each work
    topic (ordered, retried with backoff, dead-lettered after N attempts) and a holding
    subscription on each dead-letter topic, so dead letters wait for `confsync deadletter`."""
    pairs = (
        (settings.topic_calendar_changes, settings.topic_calendar_changes_dead, settings.sub_calendar_changes),
        (settings.topic_conference_commands, settings.topic_conference_commands_dead, settings.sub_conference_commands),
        (settings.topic_channel_work, settings.topic_channel_work_dead, settings.sub_channel_work),
    )
    subscriptions: list[SubscriptionSpec] = []
    for topic, dead, worker in pairs:
        subscriptions.append(
            SubscriptionSpec(
                name=worker,
                topic=topic,
                ordered=settings.pubsub_ordered_subscriptions,
                ack_deadline_s=settings.pubsub_ack_deadline_s,
                dead_letter_topic=dead,
                max_delivery_attempts=settings.pubsub_max_delivery_attempts,
            )
        )
        subscriptions.append(
            SubscriptionSpec(
                name=f"{dead}-hold",
                topic=dead,
                ordered=False,
                ack_deadline_s=600,
                dead_letter_topic=None,
                max_delivery_attempts=0,
                min_backoff_s=None,
                max_backoff_s=None,
                retention_s=DEAD_LETTER_RETENTION_S,
            )
        )
    topics = tuple(name for pair in pairs for name in pair[:2])
    return Topology(topics, tuple(subscriptions))


def terraform_vars(settings: Settings) -> dict[str, Any]:
    """The ``pubsub`` variable of infra/terraform (a ``.tfvars.json`` document) for ``settings``.

    Topics by role; subscriptions by name. A subscription with a dead-letter topic is a worker
    subscription (Terraform pushes it to the service of its topic); one without holds dead letters.
    """
    built = topology(settings)
    return {
        "pubsub": {
            "topics": {
                "calendar_changes": settings.topic_calendar_changes,
                "calendar_changes_dead": settings.topic_calendar_changes_dead,
                "conference_commands": settings.topic_conference_commands,
                "conference_commands_dead": settings.topic_conference_commands_dead,
                "channel_work": settings.topic_channel_work,
                "channel_work_dead": settings.topic_channel_work_dead,
            },
            "subscriptions": {
                spec.name: {
                    "topic": spec.topic,
                    "ordered": spec.ordered,
                    "ack_deadline_seconds": spec.ack_deadline_s,
                    "min_backoff_seconds": spec.min_backoff_s,
                    "max_backoff_seconds": spec.max_backoff_s,
                    "dead_letter_topic": spec.dead_letter_topic,
                    "max_delivery_attempts": spec.max_delivery_attempts,
                    "retention_seconds": spec.retention_s,
                }
                for spec in built.subscriptions
            },
        }
    }
