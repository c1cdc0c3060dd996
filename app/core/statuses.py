"""The statuses a campaign, a batch and a delivery move through, as `StrEnum`s: they
are the strings stored in MongoDB and shown by the API, with names the code can check.
"""

from __future__ import annotations

from enum import StrEnum


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class BatchStatus(StrEnum):
    CLAIMED = "claimed"  # a task holds it (under a lease)
    PENDING = "pending"  # waits for a task (a retry, or given back)
    DONE = "done"


class DeliveryStatus(StrEnum):
    SENT = "sent"
    FAILED = "failed"    # 5xx: final
    DEAD = "dead"        # out of attempts
    SKIPPED = "skipped"  # unsubscribed or removed before its turn
    PENDING = "pending"  # another attempt after a backoff


class AttemptOutcome(StrEnum):
    """What one SMTP attempt came to (a delivery's status follows from it)."""

    SENT = "sent"
    RETRY = "retry"    # 4xx or a connection problem: try again after a backoff
    FAILED = "failed"  # 5xx: final
    AUTH = "auth"      # the relay refused our login: the campaign fails


ACTIVE = (CampaignStatus.RUNNING, CampaignStatus.PAUSED)
FINISHED = (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED, CampaignStatus.FAILED)
FINAL_DELIVERY = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.DEAD,
                  DeliveryStatus.SKIPPED)


class JobStatus(StrEnum):
    QUEUED = "queued"  # waiting for one of the `admin_jobs_at_once` slots
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class OutboxStatus(StrEnum):
    """A chat message's events: waiting to be handed on, or copied to `events`."""
    PENDING = "pending"
    COPIED = "copied"


class OfferStatus(StrEnum):
    SCHEDULED = "scheduled"  # waits for its cooldown
    FIRING = "firing"        # claimed by the marketing actor's batch
    SENT = "sent"            # in the customer's inbox (and mailed where allowed)
    ACCEPTED = "accepted"
    EXPIRED = "expired"


class WebhookStatus(StrEnum):
    """One event's delivery to one webhook endpoint."""
    PENDING = "pending"      # waits for its (next) attempt
    DELIVERED = "delivered"  # the endpoint answered 2xx
    DEAD = "dead"            # every attempt of the schedule failed: kept for a replay
