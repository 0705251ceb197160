"""GET /v1/campaigns/{id}/stats over HTTP: who may read it, the funnel as the requests made
it, time to redeem with censoring, redemption and void feeding the counts, and the CSV."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from offers.stats_math import kaplan_meier_quantiles
from tests.factories import offer_body
from tests.test_events import near, users_in_arm


def get_stats(world, merchant, campaign, **params):
    r = world.http.get(f"/v1/campaigns/{campaign['id']}/stats", headers=merchant.admin, params=params)
    assert r.status_code == 200, r.text
    return r


def stats(world, merchant, campaign) -> dict:
    return get_stats(world, merchant, campaign).json()


def redeem(world, merchant, code, venue_id):
    r = world.http.post("/v1/redemptions", json={"code": code, "venue_id": venue_id}, headers=merchant.staff)
    assert r.status_code == 201, r.text
    return r.json()


def test_who_may_read_the_stats(world):
    m = world.merchant()
    v = world.venue(m)
    campaign = world.campaign(m, [v["id"]])
    other = world.merchant("Other")
    url = f"/v1/campaigns/{campaign['id']}/stats"

    assert world.http.get(url, headers=m.admin).status_code == 200
    assert world.http.get(url, headers=m.marketer).status_code == 200
    for headers in (m.staff, world.user()):
        r = world.http.get(url, headers=headers)
        assert r.status_code == 403, r.text
    foreign = world.http.get(url, headers=other.admin)
    missing = world.http.get(f"/v1/campaigns/{uuid.uuid4()}/stats", headers=other.marketer)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["code"] == missing.json()["code"] == "not_found"
    assert world.http.get(url).status_code == 401


def test_a_new_campaign_is_collecting(world):
    m = world.merchant()
    v = world.venue(m)
    campaign = world.campaign(m, [v["id"]], holdout_percent=10)

    body = stats(world, m, campaign)

    assert body["status"] == "collecting"
    funnel = body["funnel"]
    assert [funnel[k] for k in ("checkins_accepted", "unique_users", "unlocks", "redemptions")] == [0, 0, 0, 0]
    assert funnel["redemption_rate_of_unlocks"] is None
    assert body["effect"]["absolute_lift"] is None and body["effect"]["srm"]["alert"] is False
    assert body["by_day"] == [] and body["by_venue"] == []


def test_the_funnel_counts_what_the_requests_did(world, db):
    m = world.merchant()
    a = world.venue(m, name="Storgata")
    b = world.venue(m, name="Torget", center=near(a["center"], 200))
    campaign = world.campaign(m, [a["id"], b["id"]], holdout_percent=50)
    treated = users_in_arm(db, campaign, "treatment", 3)
    control = users_in_arm(db, campaign, "control", 2)
    earlier = datetime.now(UTC) - timedelta(minutes=9)

    codes = []
    for user in treated + control:
        r = world.checkin(world.user(user), *a["center"], observed_at=earlier)
        assert r.json()["status"] == "accepted", r.text
        codes += [u["code"] for u in r.json()["unlocked"]]
    for user in (treated[0], control[0]):  # return visits at the other venue
        r = world.checkin(world.user(user), *b["center"])
        assert r.json()["status"] == "accepted", r.text
        codes += [u["code"] for u in r.json()["unlocked"]]
    assert world.checkin(world.user(treated[1]), *a["center"]).json()["reason"] == "too_frequent"
    assert world.checkin(world.user(control[1]), *a["center"]).json()["reason"] == "too_frequent"
    assert world.checkin(world.user(), *b["center"], accuracy_m=400).json()["reason"] == "accuracy_too_low"
    redeem(world, m, codes[0], a["id"])
    voided = redeem(world, m, codes[1], b["id"])
    assert (
        world.http.post(f"/v1/redemptions/{voided['id']}/void", json={"reason": "test"}, headers=m.admin).status_code
        == 200
    )

    body = stats(world, m, campaign)

    funnel = body["funnel"]
    assert funnel["checkins_accepted"] == 7
    assert funnel["checkins_rejected"] == 3
    assert funnel["rejected_by_reason"] == {"accuracy_too_low": 1, "too_frequent": 2}
    assert funnel["unique_users"] == 5
    assert funnel["exposures"] == {"treatment": 3, "control": 2}
    assert funnel["unlocks"] == len(codes) == 4  # 3 first visits + 1 return, treated
    assert (funnel["redemptions"], funnel["voids"]) == (1, 1)
    assert funnel["redemption_rate_of_unlocks"] == pytest.approx(1 / 4)
    assert funnel["redemption_rate_of_treatment_users"] == pytest.approx(1 / 3)
    assert body["status"] == "collecting"  # no window has closed yet
    assert body["effect"]["arms"]["treatment"]["users_exposed"] == 3
    assert body["effect"]["arms"]["control"]["users_window_closed"] == 0

    venues = {row["venue_id"]: row for row in body["by_venue"]}
    assert set(venues) == {a["id"], b["id"]}
    assert (venues[a["id"]]["name"], venues[b["id"]]["name"]) == ("Storgata", "Torget")
    assert (venues[a["id"]]["checkins_accepted"], venues[b["id"]]["checkins_accepted"]) == (5, 2)
    assert venues[a["id"]]["rejected_by_reason"] == {"too_frequent": 2}
    assert (venues[a["id"]]["exposed_treatment"], venues[a["id"]]["exposed_control"]) == (3, 2)
    assert (venues[a["id"]]["redemptions"], venues[b["id"]]["redemptions"], venues[b["id"]]["voids"]) == (1, 0, 1)
    days = {row["day"] for row in body["by_day"]}
    assert days <= {earlier.date().isoformat(), datetime.now(UTC).date().isoformat()}
    assert sum(row["checkins_accepted"] for row in body["by_day"]) == 7


def _unlock_all(world, m, venue, users: int) -> list[dict]:
    unlocks = []
    for _ in range(users):
        r = world.checkin(world.user(), *venue["center"])
        unlocks.append(r.json()["unlocked"])
    return unlocks


def _age(db, unlock_id: str, minutes: float, window: float | None = None) -> None:
    """Test-data setup: pretend the unlock happened `minutes` ago. Its redemption window stays
    what the offer made it (`window` only restates it), as the stats aggregates assume."""
    db.execute(
        """UPDATE unlocks SET unlocked_at = now() - make_interval(secs => %(s)s),
                                     expires_at = now() - make_interval(secs => %(s)s)
                                                  + coalesce(make_interval(secs => %(w)s), expires_at - unlocked_at)
                  WHERE id = %(id)s""",
        {"s": minutes * 60, "w": window and window * 60, "id": unlock_id},
    )
    row = db.execute("SELECT window_minutes(u) AS w FROM unlocks u WHERE id = %s", (unlock_id,)).fetchone()
    assert window is None or row["w"] == window, "a test may not change an offer's window"


def _raw_time_to_redeem(db, campaign_id: str):
    """Kaplan-Meier from the unlock rows themselves: redeemed ones are events, the others are
    censored at their age, or at their window once expired."""
    rows = db.execute(
        """
        SELECT floor(extract(epoch FROM coalesce(redeemed_at, least(now(), expires_at)) - unlocked_at) / 60) AS m,
               redeemed_at IS NOT NULL AS redeemed
        FROM unlocks WHERE campaign_id = %s""",
        [campaign_id],
    ).fetchall()
    return kaplan_meier_quantiles([float(r["m"]) for r in rows], [r["redeemed"] for r in rows])


def test_time_to_redeem_censors_open_and_expired_unlocks(world, db):
    m = world.merchant()
    v = world.venue(m)
    campaign = world.campaign(m, [v["id"]])
    (r5,), (r10,), (r20,), (r25,), (open15,), (expired,) = _unlock_all(world, m, v, 6)
    for unlock, minutes in ((r5, 5), (r10, 10), (r20, 20), (r25, 25)):
        _age(db, unlock["unlock_id"], minutes)
        redeem(world, m, unlock["code"], v["id"])
    _age(db, open15["unlock_id"], 15)
    _age(db, expired["unlock_id"], 70, window=60)

    ttr = stats(world, m, campaign)["funnel"]["time_to_redeem_minutes"]

    # Six at risk: S(5) = 5/6, S(10) = 4/6; the open one leaves at 15; S(20) = 4/6 * 2/3 = 0.44,
    # S(25) = 0.22; the expired one is censored at its 60-minute window.
    assert (ttr["median"], ttr["p75"], ttr["unlocks"], ttr["redeemed"]) == (20, 25, 6, 4)
    expected = _raw_time_to_redeem(db, campaign["id"])
    assert (ttr["median"], ttr["p75"], ttr["unlocks"], ttr["redeemed"]) == (
        expected.median,
        expected.p75,
        expected.n,
        expected.events,
    )


def test_expired_unlocks_are_censored_at_their_own_window(world, db):
    m = world.merchant()
    v = world.venue(m)
    short, long = dict(redeem_within_minutes=30), dict(redeem_within_minutes=600)
    campaign = world.campaign(m, [v["id"]], offers=[offer_body(**short), offer_body(**long)])
    pairs = _unlock_all(world, m, v, 6)
    windows = {o["id"]: o["redeem_within_minutes"] for o in campaign["offers"]}
    shorts = [u for pair in pairs for u in pair if windows[u["offer_id"]] == 30]
    longs = [u for pair in pairs for u in pair if windows[u["offer_id"]] == 600]
    for unlock in shorts:  # all expired unredeemed after 30 minutes
        _age(db, unlock["unlock_id"], 40, window=30)
    for unlock, minutes in zip(longs, (100, 200, 300, 350, 400, 450), strict=True):
        _age(db, unlock["unlock_id"], minutes)
    for unlock in longs[:3]:
        redeem(world, m, unlock["code"], v["id"])

    ttr = stats(world, m, campaign)["funnel"]["time_to_redeem_minutes"]

    # The short offer's unlocks leave the risk set at 30, before any redemption: the long
    # offer's six alone give S(100) = 5/6, S(200) = 4/6, S(300) = 3/6.
    assert (ttr["median"], ttr["p75"], ttr["unlocks"], ttr["redeemed"]) == (300, None, 12, 3)
    expected = _raw_time_to_redeem(db, campaign["id"])
    assert (ttr["median"], ttr["p75"]) == (expected.median, expected.p75)


def test_redemption_and_void_move_the_funnel_and_time_to_redeem(world, db):
    m = world.merchant()
    v = world.venue(m)
    campaign = world.campaign(m, [v["id"]])
    (first,), (second,) = _unlock_all(world, m, v, 2)
    _age(db, first["unlock_id"], 12)
    _age(db, second["unlock_id"], 3)
    before = stats(world, m, campaign)["funnel"]
    redemption = redeem(world, m, first["code"], v["id"])

    redeemed = stats(world, m, campaign)["funnel"]
    assert (
        world.http.post(
            f"/v1/redemptions/{redemption['id']}/void", json={"reason": "mistake"}, headers=m.admin
        ).status_code
        == 200
    )
    voided = stats(world, m, campaign)["funnel"]

    assert (before["redemptions"], redeemed["redemptions"], voided["redemptions"]) == (0, 1, 0)
    assert (
        before["time_to_redeem_minutes"]["redeemed"],
        redeemed["time_to_redeem_minutes"]["redeemed"],
        voided["time_to_redeem_minutes"]["redeemed"],
    ) == (0, 1, 0)
    # The open unlock (3 minutes old) leaves the risk set first, so the redemption at 12 takes S to 0.
    assert (redeemed["time_to_redeem_minutes"]["median"], redeemed["time_to_redeem_minutes"]["p75"]) == (12, 12)
    assert voided["time_to_redeem_minutes"]["median"] is None
    assert redeemed["time_to_redeem_minutes"]["unlocks"] == voided["time_to_redeem_minutes"]["unlocks"] == 2
    assert voided["voids"] == 1 and voided["redemption_rate_of_unlocks"] == 0
    again = redeem(world, m, first["code"], v["id"])
    assert again["id"] != redemption["id"]
    assert stats(world, m, campaign)["funnel"]["redemptions"] == 1


def test_csv_has_the_breakdowns_as_the_json(world, db):
    m = world.merchant()
    a = world.venue(m, name='=HYPERLINK("http://127.0.0.1/x","click")')
    b = world.venue(m, name='Cafe "Torget", 2nd floor', center=near(a["center"], 300))
    campaign = world.campaign(m, [a["id"], b["id"]])
    world.checkin(world.user(), *a["center"])
    world.checkin(world.user(), *b["center"])
    world.checkin(world.user(), *b["center"], mocked=True)

    r = get_stats(world, m, campaign, format="csv")

    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    body = stats(world, m, campaign)
    assert len(rows) == len(body["by_day"]) + len(body["by_venue"]) == 3
    by_key = {(row["breakdown"], row["key"]): row for row in rows}
    for day in body["by_day"]:
        row = by_key[("day", day["day"])]
        assert (
            (int(row["checkins_accepted"]), int(row["checkins_rejected"]), int(row["unlocks"]))
            == (day["checkins_accepted"], day["checkins_rejected"], day["unlocks"])
            == (2, 1, 2)
        )
    assert by_key[("venue", b["id"])]["name"] == 'Cafe "Torget", 2nd floor'
    assert int(by_key[("venue", b["id"])]["checkins_rejected"]) == 1
    # A spreadsheet must show a merchant-chosen name, never run it as a formula.
    assert not by_key[("venue", a["id"])]["name"].startswith(("=", "+", "-", "@"))
    assert by_key[("venue", a["id"])]["name"].endswith('=HYPERLINK("http://127.0.0.1/x","click")')


def test_csv_is_refused_for_other_readers(world):
    m = world.merchant()
    v = world.venue(m)
    campaign = world.campaign(m, [v["id"]])
    url = f"/v1/campaigns/{campaign['id']}/stats?format=csv"

    assert world.http.get(url, headers=m.staff).status_code == 403
    assert world.http.get(url, headers=world.merchant("Other").marketer).status_code == 404
    assert world.http.get(url.replace("csv", "xml"), headers=m.admin).status_code == 422


def test_a_void_after_midnight_counts_against_the_day_of_its_redemption(world, db, monkeypatch, settings):
    m = world.merchant()
    v = world.venue(m)
    campaign = world.campaign(m, [v["id"]])
    ((unlock,),) = _unlock_all(world, m, v, 1)
    redemption = redeem(world, m, unlock["code"], v["id"])
    # Test-data setup: the redemption (and its unlock and counter) happened yesterday, late.
    shift = db.execute(
        "SELECT now() - (date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '5 minutes') AS s"
    ).fetchone()["s"]
    db.execute("UPDATE redemptions SET redeemed_at = redeemed_at - %s WHERE id = %s", [shift, redemption["id"]])
    db.execute(
        "UPDATE unlocks SET unlocked_at = unlocked_at - %s, redeemed_at = redeemed_at - %s WHERE id = %s",
        [shift, shift, unlock["unlock_id"]],
    )
    db.execute(
        "UPDATE campaign_counters SET day = day - 1 WHERE campaign_id = %s AND metric = 'redemption'", [campaign["id"]]
    )
    monkeypatch.setattr(settings, "void_window_minutes", 24 * 60)

    assert (
        world.http.post(
            f"/v1/redemptions/{redemption['id']}/void", json={"reason": "late"}, headers=m.admin
        ).status_code
        == 200
    )

    body = stats(world, m, campaign)
    days = {row["day"]: row for row in body["by_day"]}
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    assert (days[yesterday]["redemptions"], days[yesterday]["voids"]) == (0, 1)
    assert all(row["redemptions"] >= 0 for row in body["by_day"])
    assert body["funnel"]["redemptions"] == 0
