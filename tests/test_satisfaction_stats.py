"""The `satisfaction` block of a campaign's stats: ratings (count, mean, 1-7 distribution),
conversations (answered share, median and p90 time to the first reply, open ones waiting over
24 h), per campaign, venue and offer, equal to what the test created."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from offers.satisfaction import no_satisfaction
from tests.factories import near, new_user, offer_body


def _distribution(*ratings: int) -> list[dict]:
    return [{"rating": r, "count": ratings.count(r)} for r in range(1, 8)]


def _figures(ratings: tuple[int, ...], conversations: int, replies: list[float], old_open: int) -> dict:
    """The expected figures of one group, the quantiles worked out by hand in the test."""
    return {
        "ratings": len(ratings),
        "rating_distribution": _distribution(*ratings),
        "conversations": conversations,
        "answered": len(replies),
        "open_over_24h": old_open,
    }


def _check(found: dict, expected: dict, mean: float | None, share: float | None, median, p90) -> None:
    assert {key: found[key] for key in expected} == expected
    assert found["rating_mean"] == (pytest.approx(mean) if mean is not None else None)
    assert found["answered_share"] == (pytest.approx(share) if share is not None else None)
    assert found["first_reply_minutes"]["median"] == (pytest.approx(median) if median is not None else None)
    assert found["first_reply_minutes"]["p90"] == (pytest.approx(p90) if p90 is not None else None)


def test_a_campaign_without_voices_has_empty_satisfaction(world):
    m = world.merchant()
    venue = world.venue(m)
    campaign = world.campaign(m, [venue["id"]])
    body = world.http.get(f"/v1/campaigns/{campaign['id']}/stats", headers=m.marketer).json()
    assert body["satisfaction"] == no_satisfaction()
    assert body["satisfaction"]["rating_distribution"] == _distribution()
    assert body["satisfaction"]["rating_mean"] is None and body["satisfaction"]["answered_share"] is None


def test_satisfaction_counts_the_ratings_and_conversations_made(world, db):
    m = world.merchant("Bakeriet")
    a = world.venue(m, name="Storgata")
    b = world.venue(m, name="Torget", center=near(a["center"], 400))
    campaign = world.campaign(m, [a["id"], b["id"]], [offer_body(title="Bun"), offer_body(title="Coffee")])
    bun, coffee = (offer["id"] for offer in campaign["offers"])
    venues = {"A": a, "B": b}

    def customer(at: str) -> tuple[dict, dict[str, dict]]:
        """A new customer checks in at the venue and unlocks both offers: {offer id: unlock}."""
        _, user = new_user(world)
        r = world.checkin(user, *venues[at]["center"])
        assert r.json()["status"] == "accepted", r.text
        return user, {u["offer_id"]: u for u in r.json()["unlocked"]}

    def redeem(unlock: dict, at: str) -> None:
        r = world.http.post(
            "/v1/redemptions", json={"code": unlock["code"], "venue_id": venues[at]["id"]}, headers=m.staff
        )
        assert r.status_code == 201, r.text

    def rate(user, unlock: dict, at: str, rating: int, comment: str | None = None) -> str | None:
        redeem(unlock, at)
        body = {"rating": rating} | ({"comment": comment} if comment else {})
        r = world.http.post(f"/v1/unlocks/{unlock['unlock_id']}/feedback", json=body, headers=user)
        assert r.status_code == 201, r.text
        return r.json()["conversation_id"]

    def write(user, unlock: dict) -> str:
        r = world.http.post(f"/v1/unlocks/{unlock['unlock_id']}/messages", json={"body": "Hello?"}, headers=user)
        assert r.status_code == 201, r.text
        return r.json()["conversation_id"]

    def reply_after(conversation: str, minutes: float, close: bool = False) -> None:
        r = world.http.post(f"/v1/conversations/{conversation}/messages", json={"body": "Hi!"}, headers=m.staff)
        assert r.status_code == 201, r.text
        if close:
            assert world.http.post(f"/v1/conversations/{conversation}/close", headers=m.admin).status_code == 200
        # The reply came `minutes` after the customer's first message, a day ago.
        db.execute(
            "UPDATE conversations SET created_at = now() - interval '1 day',"
            " first_reply_at = now() - interval '1 day' + make_interval(secs => %s) WHERE id = %s",
            [minutes * 60, conversation],
        )

    def waiting_for(conversation: str, hours: float) -> None:
        db.execute(
            "UPDATE conversations SET created_at = now() - make_interval(secs => %s), waiting_since = now()"
            " - make_interval(secs => %s) WHERE id = %s",
            [hours * 3600, hours * 3600, conversation],
        )

    # Ratings: A/bun 7, A/coffee 5, A/bun 2 (with a comment), B/bun 6.
    user, unlocks = customer("A")
    rate(user, unlocks[bun], "A", 7)
    rate(user, unlocks[coffee], "A", 5)
    user, unlocks = customer("A")
    c1 = rate(user, unlocks[bun], "A", 2, comment="The bun was cold")  # A/bun, answered in 10 min
    reply_after(c1, 10)
    user, unlocks = customer("B")
    rate(user, unlocks[bun], "B", 6)
    c2 = write(user, unlocks[coffee])  # B/coffee, answered in 30 min
    reply_after(c2, 30)
    user, unlocks = customer("B")
    waiting_for(write(user, unlocks[bun]), 30)  # B/bun, open for 30 h
    user, unlocks = customer("A")
    waiting_for(write(user, unlocks[coffee]), 2)  # A/coffee, open for 2 h
    user, unlocks = customer("A")
    reply_after(write(user, unlocks[bun]), 90, close=True)  # A/bun, answered in 90 min, then closed
    user, unlocks = customer("B")
    c6 = write(user, unlocks[coffee])  # B/coffee, closed without an answer
    assert world.http.post(f"/v1/conversations/{c6}/close", headers=m.staff).status_code == 200
    user, unlocks = customer("A")  # a customer who neither rates nor writes counts nowhere
    redeem(unlocks[bun], "A")

    r = world.http.get(f"/v1/campaigns/{campaign['id']}/stats", headers=m.admin)
    assert r.status_code == 200, r.text
    satisfaction = r.json()["satisfaction"]

    # Replies after 10, 30, 90 min: median 30; p90 at rank 0.9 * 2 = 1.8, 30 + 0.8 * 60 = 78.
    _check(satisfaction, _figures((7, 5, 2, 6), 6, [10, 30, 90], 1), 5.0, 3 / 6, 30, 78)
    by_venue = {row["name"]: row for row in satisfaction["by_venue"]}
    assert [row["venue_id"] for row in satisfaction["by_venue"]] == sorted([a["id"], b["id"]])
    # A: ratings 7, 5, 2; conversations bun 10 min, coffee open 2 h, bun 90 min: median 50, p90 10 + 0.9 * 80.
    _check(by_venue["Storgata"], _figures((7, 5, 2), 3, [10, 90], 0), 14 / 3, 2 / 3, 50, 82)
    # B: rating 6; conversations coffee 30 min, bun open 30 h, coffee closed unanswered.
    _check(by_venue["Torget"], _figures((6,), 3, [30], 1), 6.0, 1 / 3, 30, 30)
    assert [row["title"] for row in satisfaction["by_offer"]] == ["Bun", "Coffee"]
    by_offer = {row["offer_id"]: row for row in satisfaction["by_offer"]}
    _check(by_offer[bun], _figures((7, 2, 6), 3, [10, 90], 1), 5.0, 2 / 3, 50, 82)
    _check(by_offer[coffee], _figures((5,), 3, [30], 0), 5.0, 1 / 3, 30, 30)


def test_an_open_conversation_counts_as_old_after_24_hours_of_waiting(world, db):
    m = world.merchant()
    venue = world.venue(m)
    campaign = world.campaign(m, [venue["id"]])
    made = []
    for hours in (23.9, 24.1, 48):
        _, user = new_user(world)
        unlock = world.checkin(user, *venue["center"]).json()["unlocked"][0]
        r = world.http.post(f"/v1/unlocks/{unlock['unlock_id']}/messages", json={"body": "Hello?"}, headers=user)
        made.append(r.json()["conversation_id"])
        since = datetime.now(UTC) - timedelta(hours=hours)
        db.execute("UPDATE conversations SET waiting_since = %s WHERE id = %s", [since, made[-1]])
    # Answered, it no longer waits, however old.
    r = world.http.post(f"/v1/conversations/{made[-1]}/messages", json={"body": "Sorry!"}, headers=m.staff)
    assert r.status_code == 201
    satisfaction = world.http.get(f"/v1/campaigns/{campaign['id']}/stats", headers=m.admin).json()["satisfaction"]
    assert (satisfaction["conversations"], satisfaction["answered"], satisfaction["open_over_24h"]) == (3, 1, 1)
    assert satisfaction["ratings"] == 0 and satisfaction["by_venue"][0]["open_over_24h"] == 1
