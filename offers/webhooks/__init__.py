"""Webhooks: merchants' receivers, a durable outbox read from the events table, and a worker that
delivers signed messages (Standard Webhooks) with retries.

- `endpoints`: register, list, delete and re-enable receivers; their deliveries and redelivery.
- `address`: which URLs and addresses may be sent to (no internal networks).
- `outbox`: turns events into messages and deliveries; detects budget exhaustion and SRM alerts.
- `sender`: one signed HTTP attempt to a checked address.
- `worker`: the loop, led by one process at a time through a PostgreSQL advisory lock.
"""

from typing import Literal, get_args

# The kinds of event a receiver can subscribe to, in the order the API documents them.
EventType = Literal[
    "offer_unlocked",
    "offer_redeemed",
    "redemption_voided",
    "feedback_received",
    "message_received",
    "budget_exhausted",
    "srm_alert",
]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)
