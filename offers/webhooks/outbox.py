"""The outbox: what happened, turned into webhook messages and one delivery per subscribed endpoint.

The events table is the outbox. checkin(), redeem() and void_redemption() already write
offer_unlocked, offer_redeemed and redemption_voided in the transaction of what they report, and
feedback and customer messages write theirs the same way (`record_customer_event`); the check-in
path pays no extra statement. Each event row carries the id of the transaction that wrote it
(`events.tx`, a column default). Identity values are taken before commit, so a lower id can become
visible after a higher one: the reader therefore goes in (tx, id) order and takes only events of
transactions older than the oldest one still running (`pg_snapshot_xmin`), all of which have ended.
Nothing can later appear behind the cursor, and the cursor moves in the transaction that writes the
messages: an event is published exactly once, whoever crashes when.

Two kinds are not events of their own and are found here instead:
- budget_exhausted, when an unlock read from the outbox left its offer's budget (or, over all the
  campaign's offers that are not retired, the campaign's) at zero. Detected from the budget rows,
  so checkin() is unchanged; keyed by the budget, so a budget raised and spent again is reported again.
- srm_alert, when a running campaign's sample-ratio check (the stats' own test) turns to alert;
  evaluated periodically, sent once each time a campaign goes into alert.

Payloads carry ids, times and the merchant's own texts; the customer only as the pseudonym the
merchant sees elsewhere (core/pseudonyms.py), never their sub, a code or a position.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core.pseudonyms import customer_pseudonym
from core.settings import Settings
from offers import stats_math

OUTBOX_TYPES = ("offer_unlocked", "offer_redeemed", "redemption_voided", "feedback_received", "message_received")
BATCH = 500
RETRY_FOR = timedelta(hours=24)  # a delivery is retried for this long before it is given up
KEEP_FINISHED = timedelta(days=30)  # delivered and given-up deliveries (and their messages) are kept this long
PURGE_BATCH = 1000

_OUTBOX_FILTER = "e.tx IS NOT NULL AND e.type IN ({})".format(", ".join(f"'{t}'" for t in OUTBOX_TYPES))

CURSOR_SQL = text("SELECT tx::text AS tx, event_id FROM webhook_outbox_cursor FOR UPDATE")
MOVE_CURSOR_SQL = text("UPDATE webhook_outbox_cursor SET tx = CAST(:tx AS xid8), event_id = :event_id")
# The partial index events_outbox serves exactly this filter and order. The transaction horizon is
# taken from the statement's own snapshot, the one the rows are read with.
EVENTS_SQL = text(f"""
    SELECT e.id, e.tx::text AS tx, e.type, e.occurred_at, e.campaign_id, e.offer_id, e.venue_id, e.user_id,
           e.unlock_id, e.redemption_id, e.reason, e.data, c.merchant_id, u.expires_at
    FROM events e
    LEFT JOIN campaigns c ON c.id = e.campaign_id
    LEFT JOIN unlocks u ON u.id = e.unlock_id AND e.type = 'offer_unlocked'
    WHERE {_OUTBOX_FILTER}
      AND (e.tx, e.id) > (CAST(:tx AS xid8), :event_id)
      AND e.tx < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY e.tx, e.id
    LIMIT :limit
""")
# While no endpoint is enabled, no event up to the horizon will ever be sent: an endpoint made (or
# enabled again) later receives only what happens from then on (receives_since). The cursor then moves
# past all of them in one statement, instead of reading them BATCH at a time to publish nothing (a
# service started on a long history, or one whose merchants use no webhooks).
SKIP_UNWANTED_SQL = text(f"""
    WITH newest AS (
        SELECT e.tx, e.id FROM events e
        WHERE {_OUTBOX_FILTER}
          -- the cursor as values (not a join), so that both ends bound the scan of events_outbox
          AND (e.tx, e.id) > ((SELECT tx FROM webhook_outbox_cursor), (SELECT event_id FROM webhook_outbox_cursor))
          AND e.tx < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY e.tx DESC, e.id DESC
        LIMIT 1
    )
    UPDATE webhook_outbox_cursor c SET tx = newest.tx, event_id = newest.id FROM newest
    WHERE NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE disabled_at IS NULL)
      AND (c.tx, c.event_id) < (newest.tx, newest.id)  -- re-checked on the row as it is: never backwards
""")
SUBSCRIPTIONS_SQL = text("""
    SELECT merchant_id, event_types, receives_since FROM webhook_endpoints
    WHERE merchant_id = ANY(:merchants) AND disabled_at IS NULL
""")
# Messages, each made once (by its source), and a delivery to every endpoint of the merchant that
# subscribes to its type, is enabled, and was made (or enabled again) before it happened: what
# happened while an endpoint was disabled is not sent to it.
PUBLISH_SQL = text("""
    WITH made AS (
        INSERT INTO webhook_messages (id, source, merchant_id, type, occurred_at, body)
        SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:sources AS text[]), CAST(:merchants AS uuid[]),
                             CAST(:types AS text[]), CAST(:times AS timestamptz[]), CAST(:bodies AS text[]))
        ON CONFLICT (source) DO NOTHING
        RETURNING id, merchant_id, type, occurred_at)
    INSERT INTO webhook_deliveries (endpoint_id, message_id, next_attempt_at, retry_until)
    SELECT w.id, made.id, now(), now() + :retry_for
    FROM made JOIN webhook_endpoints w
      ON w.merchant_id = made.merchant_id AND made.type = ANY(w.event_types)
     AND w.disabled_at IS NULL AND w.receives_since <= made.occurred_at
    ON CONFLICT DO NOTHING
""")
FEEDBACK_SQL = text("SELECT id, rating, comment FROM unlock_feedback WHERE id = ANY(:ids)")
MESSAGES_SQL = text("SELECT id, conversation_id, body FROM conversation_messages WHERE id = ANY(:ids)")
OFFER_BUDGETS_SQL = text("""
    SELECT o.id, o.campaign_id, c.merchant_id, o.total_limit,
           (SELECT coalesce(sum(s.remaining), 0) FROM offer_budget_shards s WHERE s.offer_id = o.id) AS remaining
    FROM offers o JOIN campaigns c ON c.id = o.campaign_id
    WHERE o.id = ANY(:offers)
""")
CAMPAIGN_BUDGETS_SQL = text("""
    SELECT o.campaign_id, c.merchant_id, sum(o.total_limit)::bigint AS total_limit,
           coalesce(sum(s.remaining), 0)::bigint AS remaining
    FROM offers o JOIN campaigns c ON c.id = o.campaign_id
    LEFT JOIN offer_budget_shards s ON s.offer_id = o.id
    WHERE o.campaign_id = ANY(:campaigns) AND o.status <> 'retired'
    GROUP BY o.campaign_id, c.merchant_id
""")
# Running campaigns of merchants with an endpoint for srm_alert, with their arms' sizes.
SRM_CAMPAIGNS_SQL = text("""
    SELECT c.id, c.merchant_id, c.holdout_percent, coalesce(s.alerting, false) AS alerting,
           coalesce(sum(e.users) FILTER (WHERE e.arm = 'treatment'), 0)::bigint AS treatment,
           coalesce(sum(e.users) FILTER (WHERE e.arm = 'control'), 0)::bigint AS control
    FROM campaigns c
    LEFT JOIN webhook_srm_state s ON s.campaign_id = c.id
    LEFT JOIN campaign_effect e ON e.campaign_id = c.id
    WHERE c.status = 'active'
      AND c.merchant_id IN (SELECT merchant_id FROM webhook_endpoints
                            WHERE disabled_at IS NULL AND 'srm_alert' = ANY(event_types))
    GROUP BY c.id, s.alerting
""")
# Into alert: numbered, and only by the one evaluation that makes the change.
SRM_ALERT_SQL = text("""
    INSERT INTO webhook_srm_state AS s (campaign_id, alerting, alerts) VALUES (:campaign, true, 1)
    ON CONFLICT (campaign_id) DO UPDATE SET alerting = true, alerts = s.alerts + 1, changed_at = now()
        WHERE NOT s.alerting
    RETURNING alerts
""")
SRM_CLEAR_SQL = text("""
    UPDATE webhook_srm_state SET alerting = false, changed_at = now() WHERE campaign_id = :campaign AND alerting
""")
PURGE_DELIVERIES_SQL = text("""
    DELETE FROM webhook_deliveries WHERE id = ANY(ARRAY(
        SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND created_at < now() - :keep LIMIT :limit))
""")
PURGE_MESSAGES_SQL = text("""
    DELETE FROM webhook_messages m WHERE m.id = ANY(ARRAY(
        SELECT id FROM webhook_messages x
        WHERE x.created_at < now() - :keep
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.message_id = x.id)
        LIMIT :limit))
""")
RECORD_EVENT_SQL = text("""
    INSERT INTO events (type, campaign_id, offer_id, venue_id, user_id, unlock_id, data)
    SELECT :type, u.campaign_id, u.offer_id, u.venue_id, u.user_id, u.id, CAST(:data AS jsonb)
    FROM unlocks u WHERE u.id = :unlock
""")


@dataclass(frozen=True)
class Message:
    """One message to publish: what it reports (`source`), for whom, and its body."""

    source: str
    merchant_id: uuid.UUID
    type: str
    occurred_at: datetime
    data: dict[str, Any]

    def body(self) -> str:
        return render_body(self.type, self.occurred_at, self.data)


def timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, as Standard Webhooks payloads write times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def render_body(kind: str, occurred_at: datetime, data: Mapping[str, Any]) -> str:
    """The JSON sent, rendered once per message: `type`, `timestamp` (when it happened) and `data`."""
    return json.dumps(
        {"type": kind, "timestamp": timestamp(occurred_at), "data": data}, separators=(",", ":"), ensure_ascii=False
    )


def webhook_id(message_id: uuid.UUID) -> str:
    """The `webhook-id` header: the message's stable id, the same on every attempt."""
    return f"msg_{message_id.hex}"


async def record_customer_event(
    session: AsyncSession, kind: str, *, unlock_id: uuid.UUID, data: Mapping[str, Any]
) -> None:
    """Record feedback_received or message_received in the caller's transaction, the one that stores
    the feedback or the message: the outbox row commits with it or not at all. `data` holds ids
    only (the events table is append-only; the texts are read from their own tables when sent)."""
    if kind not in ("feedback_received", "message_received"):
        raise ValueError(f"not a customer event: {kind}")
    await session.execute(
        RECORD_EVENT_SQL, {"type": kind, "unlock": unlock_id, "data": json.dumps(dict(data), default=str)}
    )


def _ids(row: Mapping[str, Any], *names: str) -> dict[str, str]:
    return {name: str(row[name]) for name in names if row[name] is not None}


def event_data(
    settings: Settings,
    row: Mapping[str, Any],
    feedback: Mapping[uuid.UUID | None, Mapping[str, Any]],
    messages: Mapping[uuid.UUID | None, Mapping[str, Any]],
) -> dict[str, Any]:
    """An outbox event's `data`: ids, times, the merchant's own texts, the customer's pseudonym."""
    kind = row["type"]
    data: dict[str, Any] = _ids(row, "campaign_id", "offer_id", "venue_id", "unlock_id")
    if row["user_id"] is not None and row["merchant_id"] is not None:
        data["customer"] = customer_pseudonym(settings, row["merchant_id"], row["user_id"])
    extra = row["data"] or {}
    if kind == "offer_unlocked":
        data["unlocked_at"] = timestamp(row["occurred_at"])
        if row["expires_at"] is not None:
            data["expires_at"] = timestamp(row["expires_at"])
    elif kind == "offer_redeemed":
        data |= _ids(row, "redemption_id") | {"redeemed_at": timestamp(row["occurred_at"])}
    elif kind == "redemption_voided":
        data |= _ids(row, "redemption_id") | {"voided_at": timestamp(row["occurred_at"]), "reason": row["reason"]}
    elif kind == "feedback_received":
        data["feedback_id"] = str(extra.get("feedback_id"))
        if (found := feedback.get(_uuid(extra.get("feedback_id")))) is not None:  # gone: ids only
            data |= {"rating": found["rating"], "comment": found["comment"]}
    elif kind == "message_received":
        data |= {"conversation_id": str(extra.get("conversation_id")), "message_id": str(extra.get("message_id"))}
        if (found := messages.get(_uuid(extra.get("message_id")))) is not None:
            data["body"] = found["body"]
    return data


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


class Subscriptions:
    """Which event types each merchant's enabled endpoints take, and from when."""

    def __init__(self, rows: Iterable[Any]) -> None:
        self._by_merchant: dict[uuid.UUID, list[tuple[frozenset[str], datetime]]] = {}
        for row in rows:
            self._by_merchant.setdefault(row["merchant_id"], []).append(
                (frozenset(row["event_types"]), row["receives_since"])
            )

    def wanted(self, merchant: uuid.UUID | None, kind: str, occurred_at: datetime) -> bool:
        if merchant is None:
            return False
        return any(kind in kinds and since <= occurred_at for kinds, since in self._by_merchant.get(merchant, ()))


async def publish(conn: AsyncConnection, messages: Sequence[Message]) -> None:
    """Write the messages (each once: a source already published is skipped) and their deliveries."""
    if not messages:
        return
    await conn.execute(
        PUBLISH_SQL,
        {
            "ids": [uuid.uuid4() for _ in messages],
            "sources": [m.source for m in messages],
            "merchants": [m.merchant_id for m in messages],
            "types": [m.type for m in messages],
            "times": [m.occurred_at for m in messages],
            "bodies": [m.body() for m in messages],
            "retry_for": RETRY_FOR,
        },
    )


async def fan_out(conn: AsyncConnection, settings: Settings, limit: int = BATCH) -> int:
    """Publish the next events of the outbox, in the caller's transaction; how many were read (none
    when no endpoint is enabled: the cursor then passes every event up to the horizon at once)."""
    if (await conn.execute(SKIP_UNWANTED_SQL)).rowcount:
        return 0
    cursor = (await conn.execute(CURSOR_SQL)).mappings().one()
    rows = [
        dict(row)
        for row in (
            await conn.execute(EVENTS_SQL, {"tx": cursor["tx"], "event_id": cursor["event_id"], "limit": limit})
        ).mappings()
    ]
    if not rows:
        return 0
    merchants = list({row["merchant_id"] for row in rows if row["merchant_id"] is not None})
    subscriptions = Subscriptions((await conn.execute(SUBSCRIPTIONS_SQL, {"merchants": merchants})).mappings())
    wanted = [row for row in rows if subscriptions.wanted(row["merchant_id"], row["type"], row["occurred_at"])]
    feedback = await _by_id(conn, FEEDBACK_SQL, wanted, "feedback_received", "feedback_id")
    messages = await _by_id(conn, MESSAGES_SQL, wanted, "message_received", "message_id")
    published = []
    for row in wanted:
        data = event_data(settings, row, feedback, messages)
        published.append(Message(f"event:{row['id']}", row["merchant_id"], row["type"], row["occurred_at"], data))
    await publish(conn, published)
    unlocked = [row for row in rows if row["type"] == "offer_unlocked"]
    if any(subscriptions.wanted(row["merchant_id"], "budget_exhausted", row["occurred_at"]) for row in unlocked):
        await publish(conn, await exhausted_budgets(conn, unlocked, subscriptions))
    await conn.execute(MOVE_CURSOR_SQL, {"tx": rows[-1]["tx"], "event_id": rows[-1]["id"]})
    return len(rows)


async def _by_id(
    conn: AsyncConnection, query: Any, rows: Sequence[Mapping[str, Any]], kind: str, key: str
) -> dict[uuid.UUID | None, dict[str, Any]]:
    ids = [found for row in rows if row["type"] == kind and (found := _uuid((row["data"] or {}).get(key)))]
    if not ids:
        return {}
    return {found["id"]: dict(found) for found in (await conn.execute(query, {"ids": ids})).mappings()}


async def exhausted_budgets(
    conn: AsyncConnection, unlocked: Sequence[Mapping[str, Any]], subscriptions: Subscriptions
) -> list[Message]:
    """budget_exhausted for each offer these unlocks left without budget, and for their campaigns
    whose offers (retired ones aside) have none left. Keyed by the budget: raising it and spending
    it again is a new exhaustion."""
    latest: dict[uuid.UUID, datetime] = {}
    for row in unlocked:
        if row["offer_id"] is not None:
            latest[row["offer_id"]] = max(latest.get(row["offer_id"], row["occurred_at"]), row["occurred_at"])
    found: list[Message] = []
    campaigns: dict[uuid.UUID, datetime] = {}
    for offer in (await conn.execute(OFFER_BUDGETS_SQL, {"offers": list(latest)})).mappings():
        at = latest[offer["id"]]
        if offer["remaining"] > 0 or not subscriptions.wanted(offer["merchant_id"], "budget_exhausted", at):
            continue
        campaigns[offer["campaign_id"]] = max(campaigns.get(offer["campaign_id"], at), at)
        data = {"scope": "offer", "campaign_id": str(offer["campaign_id"]), "offer_id": str(offer["id"])}
        found.append(
            Message(
                f"budget_exhausted:offer:{offer['id']}:{offer['total_limit']}",
                offer["merchant_id"],
                "budget_exhausted",
                at,
                data | {"budget": offer["total_limit"]},
            )
        )
    if campaigns:
        for campaign in (await conn.execute(CAMPAIGN_BUDGETS_SQL, {"campaigns": list(campaigns)})).mappings():
            if campaign["remaining"] > 0:
                continue
            found.append(
                Message(
                    f"budget_exhausted:campaign:{campaign['campaign_id']}:{campaign['total_limit']}",
                    campaign["merchant_id"],
                    "budget_exhausted",
                    campaigns[campaign["campaign_id"]],
                    {
                        "scope": "campaign",
                        "campaign_id": str(campaign["campaign_id"]),
                        "budget": campaign["total_limit"],
                    },
                )
            )
    return found


async def srm_alerts(conn: AsyncConnection) -> int:
    """Evaluate the sample-ratio check of every running campaign whose merchant takes srm_alert, with
    the test the stats use (offers/stats_math.py); publish one message per campaign going into alert.
    How many were published."""
    published = 0
    for campaign in (await conn.execute(SRM_CAMPAIGNS_SQL)).mappings().all():
        treatment, control, holdout = campaign["treatment"], campaign["control"], campaign["holdout_percent"]
        alert = stats_math.srm_alert(treatment, control, holdout)
        if not alert:
            if campaign["alerting"]:
                await conn.execute(SRM_CLEAR_SQL, {"campaign": campaign["id"]})
            continue
        if campaign["alerting"]:
            continue
        number = (await conn.execute(SRM_ALERT_SQL, {"campaign": campaign["id"]})).scalar()
        if number is None:  # another evaluation got there first
            continue
        total = treatment + control
        data = {
            "campaign_id": str(campaign["id"]),
            "p_value": stats_math.srm_p_value(treatment, control, holdout),
            "users": {"treatment": treatment, "control": control},
            "expected_control_share": holdout / 100,
            "observed_control_share": control / total if total else None,
        }
        source = f"srm_alert:{campaign['id']}:{number}"
        await publish(conn, [Message(source, campaign["merchant_id"], "srm_alert", datetime.now(UTC), data)])
        published += 1
    return published


async def purge_finished(conn: AsyncConnection) -> int:
    """Forget delivered and given-up deliveries (with their attempts) and unused messages after 30 days."""
    params = {"keep": KEEP_FINISHED, "limit": PURGE_BATCH}
    deleted = (await conn.execute(PURGE_DELIVERIES_SQL, params)).rowcount
    return deleted + (await conn.execute(PURGE_MESSAGES_SQL, params)).rowcount
