"""Erasure: after it, nothing in the database or Redis names the person, the campaign's figures are
unchanged and the codes they held no longer redeem."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis as sync_redis

from tests.factories import Merchant, World, near, offer_body


def campaign_stats(world: World, merchant: Merchant, campaign_id: str) -> dict:
    r = world.http.get(f"/v1/campaigns/{campaign_id}/stats", headers=merchant.admin)
    assert r.status_code == 200, r.text
    return {k: v for k, v in r.json().items() if k != "generated_at"}


def rows_naming(db, sub: str) -> list[str]:
    """Every table (read from information_schema, so tables added later are searched too) with a row
    whose text or JSON columns hold the sub: '<table>.<column>' for each column that does."""
    columns = db.execute(
        """SELECT c.table_name, c.column_name FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_schema, table_name)
           WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
             AND (c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'ARRAY')
                  OR c.udt_name IN ('citext'))
           ORDER BY 1, 2"""
    ).fetchall()
    assert {"checkins", "events", "webhook_messages", "privacy_erasures"} <= {c["table_name"] for c in columns}
    found = []
    for c in columns:
        table, column = c["table_name"], c["column_name"]
        hit = db.execute(
            f'SELECT 1 FROM "{table}" WHERE strpos("{column}"::text, %s) > 0 LIMIT 1',  # noqa: S608 - names from the catalog
            (sub,),
        ).fetchone()
        if hit:
            found.append(f"{table}.{column}")
    return found


def redis_naming(redis_url: str, sub: str) -> list[str]:
    """Every key of the service's Redis database whose name or value holds the sub."""
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    found = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == "string":
            values = [client.get(key) or ""]
        elif kind == "hash":
            values = [f"{k}={v}" for k, v in client.hgetall(key).items()]
        elif kind in ("list",):
            values = client.lrange(key, 0, -1)
        elif kind in ("set",):
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        else:
            values = []
        if sub in key or any(sub in v for v in values):
            found.append(key)
    return found


@dataclass
class History:
    sub: str
    user: dict[str, str]
    merchant: Merchant
    venue: dict
    campaign_id: str
    redeemed_code: str
    open_code: str


def a_customer_with_a_history(world: World, db) -> History:
    """A customer who checked in (accepted and rejected), redeemed one code and holds another, rated
    the redeemed one with a comment naming themselves, wrote to the merchant and got an answer; the
    merchant has a webhook, so the outbox rendered messages about them."""
    m = world.merchant()
    venue = world.venue(m)
    second = world.venue(m, center=near(venue["center"], 400))
    campaign = world.campaign(m, [venue["id"], second["id"]], [offer_body()])
    r = world.http.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["offer_unlocked", "feedback_received", "message_received"]},
        headers=m.admin,
    )
    assert r.status_code == 201, r.text
    sub = f"user-{uuid.uuid4().hex[:12]}"
    user = world.user(sub)
    first = world.checkin(user, *venue["center"], device_id=sub, observed_at=datetime.now(UTC) - timedelta(minutes=9))
    assert first.json()["status"] == "accepted", first.text
    refused = world.checkin(user, *venue["center"], device_id=sub)
    assert refused.json()["reason"] == "too_frequent", refused.text
    later = world.checkin(user, *second["center"], device_id=sub)
    assert later.json()["status"] == "accepted", later.text
    redeemed, held = first.json()["unlocked"][0], later.json()["unlocked"][0]

    r = world.http.post("/v1/redemptions", json={"code": redeemed["code"], "venue_id": venue["id"]}, headers=m.staff)
    assert r.status_code == 201, r.text
    r = world.http.post(
        f"/v1/unlocks/{redeemed['unlock_id']}/feedback",
        json={"rating": 6, "comment": f"Great, signed {sub}"},
        headers=user,
    )
    assert r.status_code == 201, r.text
    r = world.http.post(
        f"/v1/unlocks/{held['unlock_id']}/messages", json={"body": f"Is this mine? I am {sub}"}, headers=user
    )
    assert r.status_code == 201, r.text
    reply = world.http.post(
        f"/v1/conversations/{r.json()['conversation_id']}/messages", json={"body": "Yes, it is"}, headers=m.staff
    )
    assert reply.status_code == 201, reply.text

    deadline = time.monotonic() + 20  # the webhook worker renders the outbox within a poll or two
    while not db.execute("SELECT 1 FROM webhook_messages WHERE strpos(body, %s) > 0", (sub,)).fetchone():
        assert time.monotonic() < deadline, "the outbox never rendered the customer's message"
        time.sleep(0.25)
    return History(sub, user, m, venue, campaign["id"], redeemed["code"], held["code"])


def test_after_an_erasure_nothing_names_the_person_and_the_stats_are_unchanged(world, db, redis_url):
    h = a_customer_with_a_history(world, db)
    # A stuck in-flight lock of theirs, as a killed worker would leave it.
    redis = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    redis.set(f"ck:inflight:{len(h.sub)}:{h.sub}:stuck-key", "1", px=60_000)
    exported = world.http.get("/v1/me/export", headers=h.user)
    assert exported.status_code == 200, exported.text
    assert exported.json()["checkins"]["total"] == 3 and len(exported.json()["unlocks"]) == 2
    before = campaign_stats(world, h.merchant, h.campaign_id)
    assert rows_naming(db, h.sub) and redis_naming(redis_url, h.sub)

    r = world.http.delete("/v1/me", headers=h.user)
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert set(receipt) == {"id", "requested_at", "completed_at"} and receipt["completed_at"] >= receipt["requested_at"]

    assert rows_naming(db, h.sub) == []
    assert redis_naming(redis_url, h.sub) == []
    assert campaign_stats(world, h.merchant, h.campaign_id) == before
    r = world.http.post(
        "/v1/redemptions", json={"code": h.open_code, "venue_id": h.venue["id"]}, headers=h.merchant.admin
    )
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    assert (
        world.http.get(
            f"/v1/codes/{h.open_code}", params={"venue_id": h.venue["id"]}, headers=h.merchant.staff
        ).status_code
        == 404
    )
    after = world.http.get("/v1/me/export", headers=h.user).json()
    assert after["checkins"]["total"] == 0 and after["unlocks"] == [] and after["conversations"] == []
    # The rows stay, under one placeholder, positions and the customer's words gone.
    kept = db.execute(
        "SELECT count(*) AS n, count(DISTINCT user_id) AS people, bool_and(user_id LIKE 'erased:%%') AS erased,"
        " bool_and(lon IS NULL AND device_id IS NULL) AS no_position FROM checkins WHERE user_id IN"
        " (SELECT user_id FROM exposures WHERE campaign_id = %s)",
        (h.campaign_id,),
    ).fetchone()
    assert (kept["n"], kept["people"], kept["erased"], kept["no_position"]) == (3, 1, True, True)

    # Idempotent: asking again answers the same receipt, and changes nothing.
    again = world.http.delete("/v1/me", headers=h.user)
    assert again.status_code == 200 and again.json() == receipt
    receipts = db.execute("SELECT subject_hash FROM privacy_erasures WHERE id = %s", (receipt["id"],)).fetchall()
    assert len(receipts) == 1 and h.sub not in receipts[0]["subject_hash"]


def test_the_same_sub_coming_back_is_a_new_customer_with_a_new_receipt_when_erased_again(world, db):
    m = world.merchant()
    venue = world.venue(m)
    campaign = world.campaign(m, [venue["id"]], [offer_body(rule={"type": "first_checkin"})])
    sub = f"user-{uuid.uuid4().hex[:12]}"
    user = world.user(sub)
    assert len(world.checkin(user, *venue["center"]).json()["unlocked"]) == 1
    first = world.http.delete("/v1/me", headers=user).json()

    back = world.checkin(user, *venue["center"])
    assert back.json()["status"] == "accepted" and len(back.json()["unlocked"]) == 1, "a first visit, as far as we know"
    exposures = db.execute("SELECT count(*) AS n FROM exposures WHERE campaign_id = %s", (campaign["id"],)).fetchone()
    assert exposures["n"] == 2  # the erased one stays counted; the returning sub is one more user

    second = world.http.delete("/v1/me", headers=user)
    assert second.status_code == 200 and second.json()["id"] != first["id"]
    assert rows_naming(db, sub) == []
    placeholders = db.execute(
        "SELECT count(DISTINCT user_id) AS n FROM exposures WHERE campaign_id = %s", (campaign["id"],)
    ).fetchone()
    assert placeholders["n"] == 2  # one placeholder per erasure: the two pasts are not linked


def test_a_platform_admin_erases_for_a_request_received_elsewhere_and_the_audit_holds_no_sub(world, db):
    m = world.merchant()
    venue = world.venue(m)
    world.campaign(m, [venue["id"]], [offer_body()])
    sub = f"user-{uuid.uuid4().hex[:12]}"
    assert world.checkin(world.user(sub), *venue["center"]).json()["status"] == "accepted"
    admin = world.headers("platform_admin")

    r = world.http.post("/v1/privacy/erasures", json={"user_sub": sub}, headers=admin)
    assert r.status_code == 201, r.text
    receipt = r.json()
    assert rows_naming(db, sub) == []
    again = world.http.post("/v1/privacy/erasures", json={"user_sub": sub}, headers=admin)
    assert again.status_code == 200 and again.json() == receipt
    audit = db.execute(
        "SELECT action, target_type, target_id, after::text AS after FROM audit_log WHERE target_id = %s ORDER BY at",
        (receipt["id"],),
    ).fetchall()
    assert [a["action"] for a in audit] == ["erasure.completed", "erasure.repeated"]
    assert all(sub not in a["after"] for a in audit)

    # Nobody's data is ever erased by name for a sub never seen: a receipt all the same.
    stranger = world.http.post("/v1/privacy/erasures", json={"user_sub": f"never-{uuid.uuid4()}"}, headers=admin)
    assert stranger.status_code == 201, stranger.text


@pytest.mark.parametrize("role", ["app_user", "merchant_admin", "merchant_staff", "marketer"])
def test_only_a_platform_admin_erases_someone_else(world, role):
    headers = world.headers(role, merchant_id=None if role == "app_user" else str(uuid.uuid4()))
    r = world.http.post("/v1/privacy/erasures", json={"user_sub": "someone"}, headers=headers)
    assert r.status_code == 403 and r.json()["code"] == "forbidden_role", r.text


def test_delete_me_is_for_app_users_and_a_bad_body_is_refused(world):
    r = world.http.delete("/v1/me", headers=world.headers("platform_admin"))
    assert r.status_code == 403, r.text
    admin = world.headers("platform_admin")
    for body in (
        {},
        {"user_sub": ""},
        {"user_sub": "x" * 256},
        {"user_sub": "a\u0000b"},
        {"user_sub": "a", "extra": 1},
    ):
        r = world.http.post("/v1/privacy/erasures", json=body, headers=admin)
        assert r.status_code == 422, (body, r.text)


def test_the_event_record_allows_renaming_a_person_to_a_placeholder_and_nothing_more(db, world):
    m = world.merchant()
    sub = f"user-{uuid.uuid4().hex[:12]}"
    assert world.checkin(world.user(sub), *world.venue(m)["center"]).status_code == 201
    event_id = db.execute("SELECT max(id) AS id FROM events WHERE user_id = %s", (sub,)).fetchone()["id"]
    refused = (
        ("UPDATE events SET user_id = 'someone-else' WHERE id = %s", [event_id]),
        ("UPDATE events SET user_id = 'erased:x', reason = 'edited' WHERE id = %s", [event_id]),
        ("UPDATE events SET user_id = NULL WHERE id = %s", [event_id]),
    )
    for statement, params in refused:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            db.execute(statement, params)
    db.execute("UPDATE events SET user_id = %s WHERE id = %s", (f"erased:{uuid.uuid4()}", event_id))
    assert (
        db.execute("SELECT user_id FROM events WHERE id = %s", (event_id,)).fetchone()["user_id"].startswith("erased:")
    )
