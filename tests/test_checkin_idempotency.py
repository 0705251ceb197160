"""The Idempotency-Key of a check-in: a replay is the same answer and changes nothing; a
reused key with another body is refused; a key still running is 409; keys belong to
their caller; a request refused as invalid leaves its key unused."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.factories import offer_body

TABLES = ("checkins", "events", "unlocks", "exposures", "idempotency_keys", "user_offer_unlocks")


def new_user(world) -> tuple[str, dict[str, str]]:
    sub = f"user-{uuid.uuid4().hex[:12]}"
    return sub, world.user(sub)


def footprint(db, sub: str) -> dict[str, int]:
    """How many rows of each kind a user has: a replay must not add any."""
    counts = {}
    for table in TABLES:
        column = "scope" if table == "idempotency_keys" else "user_id"
        counts[table] = db.execute(f"SELECT count(*) AS n FROM {table} WHERE {column} = %s", (sub,)).fetchone()["n"]
    counts["budget"] = db.execute("SELECT sum(remaining) AS n FROM offer_budget_shards").fetchone()["n"]
    return counts


@pytest.fixture
def venue(world) -> dict:
    m = world.merchant()
    v = world.venue(m)
    world.campaign(m, [v["id"]], [offer_body(total_limit=1)])  # one code: a second unlock would show
    return v


def post(world, user, body: dict, key: str | None):
    headers = dict(user) if key is None else {**user, "Idempotency-Key": key}
    return world.http.post("/v1/checkins", json=body, headers=headers)


def body_at(venue: dict, **extra) -> dict:
    return {
        "lon": venue["center"][0],
        "lat": venue["center"][1],
        "accuracy_m": 10,
        "observed_at": datetime.now(UTC).isoformat(),
        **extra,
    }


def test_a_replay_returns_the_same_bytes_and_changes_nothing(world, db, venue):
    sub, user = new_user(world)
    key = str(uuid.uuid4())
    body = body_at(venue)
    first = post(world, user, body, key)
    assert first.status_code == 201 and len(first.json()["unlocked"]) == 1, first.text
    before = footprint(db, sub)

    replays = [post(world, user, body, key) for _ in range(3)]
    assert [r.status_code for r in replays] == [201] * 3
    assert all(r.content == first.content for r in replays)
    assert footprint(db, sub) == before
    assert before["checkins"] == 1 and before["unlocks"] == 1 and before["idempotency_keys"] == 1


def test_the_same_values_written_differently_are_the_same_request(world, db, venue):
    sub, user = new_user(world)
    key = str(uuid.uuid4())
    at = datetime.now(UTC).replace(microsecond=0)
    first = post(world, user, body_at(venue, observed_at=at.isoformat()), key)
    written_differently = [
        at.isoformat().replace("+00:00", "Z"),
        at.astimezone(timezone(timedelta(hours=2))).isoformat(),
    ]
    for observed_at in written_differently:
        again = post(world, user, body_at(venue, observed_at=observed_at), key)
        assert (again.status_code, again.content) == (201, first.content)
    assert footprint(db, sub)["checkins"] == 1


def test_a_replay_of_a_rejection_is_the_same_rejection(world, db, venue):
    sub, user = new_user(world)
    key = str(uuid.uuid4())
    body = body_at(venue, mocked=True)
    first = post(world, user, body, key)
    assert first.json()["reason"] == "mocked_location"
    before = footprint(db, sub)
    again = post(world, user, body, key)
    assert (again.status_code, again.content) == (201, first.content)
    assert footprint(db, sub) == before


def test_the_same_key_with_another_body_is_refused(world, db, venue):
    sub, user = new_user(world)
    key = str(uuid.uuid4())
    first = post(world, user, body_at(venue), key)
    assert first.status_code == 201
    before = footprint(db, sub)

    moved = post(world, user, body_at(venue, accuracy_m=11), key)
    assert moved.status_code == 422, moved.text
    assert moved.headers["content-type"].startswith("application/problem+json")
    assert moved.json()["code"] == "idempotency_key_reused"
    assert moved.json()["errors"][0]["field"] == "Idempotency-Key"
    assert footprint(db, sub) == before
    assert post(world, user, body_at(venue), str(uuid.uuid4())).status_code == 201  # a new key is a new check-in


def test_a_missing_key_is_400_and_stores_nothing(world, db, venue):
    sub, user = new_user(world)
    r = post(world, user, body_at(venue), None)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "idempotency_key_required"
    assert footprint(db, sub)["checkins"] == 0


@pytest.mark.parametrize("key", ["", "with space", "x" * 201, "ключ"])
def test_a_malformed_key_is_422(world, db, venue, key):
    sub, user = new_user(world)
    r = world.http.post("/v1/checkins", json=body_at(venue), headers={**user, "Idempotency-Key": key.encode()})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"
    assert r.json()["errors"][0]["field"] == "Idempotency-Key"
    assert footprint(db, sub)["checkins"] == 0


def test_keys_belong_to_their_caller(world, db, venue):
    key = str(uuid.uuid4())
    (a_sub, a), (b_sub, b) = new_user(world), new_user(world)
    body = body_at(venue)
    first, second = post(world, a, body, key), post(world, b, body, key)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert len(first.json()["unlocked"]) == 1 and second.json()["unlocked"] == []  # the one code went to a
    assert footprint(db, a_sub)["checkins"] == footprint(db, b_sub)["checkins"] == 1


def test_an_invalid_request_leaves_its_key_unused(world, db, venue):
    sub, user = new_user(world)
    key = str(uuid.uuid4())
    bad = post(world, user, body_at(venue, lat=91), key)
    assert bad.status_code == 422
    assert footprint(db, sub)["idempotency_keys"] == 0
    fixed = post(world, user, body_at(venue), key)
    assert fixed.status_code == 201 and fixed.json()["status"] == "accepted"


def test_the_same_key_while_the_first_is_running_is_409(world, db, venue, database_url):
    """The first request is held inside checkin() by the user's advisory lock, taken here."""
    import psycopg
    from sqlalchemy.engine import make_url

    sub, user = new_user(world)
    key = str(uuid.uuid4())
    body = body_at(venue)
    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as blocker, ThreadPoolExecutor(1) as pool:
        blocker.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (sub,))
        first = pool.submit(post, world, user, body, key)
        _wait_until_blocked(db, sub)

        duplicate = post(world, user, body, key)
        assert duplicate.status_code == 409, duplicate.text
        assert duplicate.json()["code"] == "idempotency_in_progress"
        changed = post(world, user, body_at(venue, accuracy_m=12), key)
        assert changed.status_code == 409  # still running: the body is not even compared yet
        assert not first.done()
        blocker.rollback()  # releases the lock
        result = first.result(timeout=30)

    assert result.status_code == 201 and result.json()["status"] == "accepted", result.text
    assert footprint(db, sub)["checkins"] == 1
    replay = post(world, user, body, key)
    assert (replay.status_code, replay.content) == (201, result.content)


def _wait_until_blocked(db, sub: str) -> None:
    """Until a server connection waits on the user's advisory lock."""
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while datetime.now(UTC) < deadline:
        waiting = db.execute(
            "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND (classid::bigint << 32 | objid::bigint) = hashtextextended(%s, 0)",
            (sub,),
        ).fetchone()["n"]
        if waiting:
            return
        threading.Event().wait(0.02)
    raise AssertionError("the first check-in never reached the advisory lock")
