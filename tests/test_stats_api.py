"""GET /v1/campaigns/{id}/stats over HTTP: who may read it, the funnel as the requests made
it, time to redeem with censoring, redemption and void feeding the counts, and the CSV."""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from offers.stats import CURVE_RESOLUTION, effect_summary, redeemed_share_curve, stats_csv, stats_status
from offers.stats_math import kaplan_meier_grouped, kaplan_meier_quantiles
from offers.stats_schema import CampaignStats
from tests.factories import offer_body
from tests.test_events import near, users_in_arm


def get_stats(world, merchant, campaign, **params):
    r = world.http.get(f"/v1/campaigns/{campaign['id']}/stats", headers=merchant.admin, params=params)
    assert r.status_code == 200, r.text
    return r


def stats(world, merchant, campaign) -> dict:
    return get_stats(world, merchant, campaign).json()


def csv_tables(text: str) -> tuple[list[dict], list[dict]]:
    """The CSV's two tables: the effect summary, then (after a blank line) the breakdowns."""
    assert text.startswith("\ufeff"), "the CSV starts with a byte-order mark"
    summary, breakdowns = text.removeprefix("\ufeff").split("\r\n\r\n")
    return list(csv.DictReader(io.StringIO(summary))), list(csv.DictReader(io.StringIO(breakdowns)))


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
    assert funnel["redemptions_per_treatment_user"] == pytest.approx(1 / 3)
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
    assert [point["minutes"] for point in ttr["curve"]] == [5, 10, 20, 25]
    assert [point["redeemed_share"] for point in ttr["curve"]] == pytest.approx([1 / 6, 2 / 6, 1 - 4 / 9, 1 - 2 / 9])
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

    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in r.headers["content-disposition"]
    assert r.content.startswith(b"\xef\xbb\xbfmeasure,group,value,")
    summary, rows = csv_tables(r.content.decode("utf-8"))
    body = stats(world, m, campaign)
    assert [row["measure"] for row in summary] == [
        "status",
        "return_visit_rate",
        "return_visit_rate",
        "absolute_lift",
        "relative_lift",
    ]
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


def _closed_windows(db, campaign_id: str, arms: dict[str, tuple[int, int]]) -> None:
    """Test-data setup: users exposed 30 days ago, whose windows have closed, as the check-in
    function's aggregates record them: {arm: (users, returned)}."""
    day = datetime.now(UTC).date() - timedelta(days=30)
    for arm, (users, returned) in arms.items():
        db.execute(
            "INSERT INTO campaign_effect (campaign_id, arm, exposure_day, shard, users, returned_users, visits,"
            " visits_sq) VALUES (%s, %s, %s, 0, %s, %s, %s, %s)",
            [campaign_id, arm, day, users, returned, returned, returned],
        )


def test_csv_summary_gives_rates_and_lifts_in_their_units(world, db):
    m = world.merchant()
    v = world.venue(m, name="-1 Cafe")
    campaign = world.campaign(m, [v["id"]], holdout_percent=20)
    _closed_windows(db, campaign["id"], {"treatment": (400, 140), "control": (100, 25)})

    body = stats(world, m, campaign)
    summary, _ = csv_tables(get_stats(world, m, campaign, format="csv").content.decode("utf-8"))

    effect = body["effect"]
    rows = {(row["measure"], row["group"]): row for row in summary}
    assert rows[("status", "")]["value"] == body["status"] == "ready"
    for arm in ("treatment", "control"):
        row, figures = rows[("return_visit_rate", arm)], effect["arms"][arm]
        assert row["unit"] == "percent"
        assert float(row["value"]) == pytest.approx(figures["return_visit_rate"] * 100, abs=1e-4)
        assert float(row["ci_low"]) == pytest.approx(figures["return_visit_rate_ci"]["ci_low"] * 100, abs=1e-4)
        assert float(row["ci_high"]) == pytest.approx(figures["return_visit_rate_ci"]["ci_high"] * 100, abs=1e-4)
        assert int(row["users_analysed"]) == figures["users_window_closed"]
    assert float(rows[("return_visit_rate", "treatment")]["value"]) == 35.0
    absolute, relative = (
        rows[("absolute_lift", "treatment vs control")],
        rows[("relative_lift", "treatment vs control")],
    )
    assert (absolute["unit"], relative["unit"]) == ("percentage points", "percent")
    assert float(absolute["value"]) == pytest.approx(10.0)  # 35% - 25%
    assert float(relative["value"]) == pytest.approx(40.0)  # 35% / 25% - 1
    for row, lift in ((absolute, effect["absolute_lift"]), (relative, effect["relative_lift"])):
        assert float(row["ci_low"]) == pytest.approx(lift["ci_low"] * 100, abs=1e-4)
        assert float(row["ci_high"]) == pytest.approx(lift["ci_high"] * 100, abs=1e-4)
        assert float(row["p_value"]) == pytest.approx(effect["p_value"], rel=1e-3)


def test_csv_cells_that_look_like_formulas_are_only_numbers(world, db):
    m = world.merchant()
    v = world.venue(m, name="@SUM(A1:A9)")
    campaign = world.campaign(m, [v["id"]], holdout_percent=50)
    _closed_windows(db, campaign["id"], {"treatment": (100, 20), "control": (100, 30)})  # a negative lift
    world.checkin(world.user(), *v["center"])

    summary, rows = csv_tables(get_stats(world, m, campaign, format="csv").content.decode("utf-8"))

    assert float(next(row for row in summary if row["measure"] == "absolute_lift")["value"]) == pytest.approx(-10)
    cells = [cell for row in summary + rows for cell in row.values() if cell]
    for cell in cells:
        if cell.startswith(("=", "+", "-", "@", "\t", "\r")):
            float(cell)  # a negative number is a number to a spreadsheet, never a formula
    assert "'@SUM(A1:A9)" in cells


def test_csv_summary_says_why_a_lift_is_missing():
    arms = {
        "treatment": {"users": 80, "closed_users": 60, "returned": 3, "visits": 3, "visits_sq": 3},
        "control": {"users": 20, "closed_users": 15, "returned": 0, "visits": 0, "visits_sq": 0},
    }
    effect = effect_summary(arms, 20) | {"attribution_days": 14}
    text = stats_csv({"status": stats_status(effect), "effect": effect, "by_day": [], "by_venue": []})

    summary, rows = csv_tables(text)
    relative = next(row for row in summary if row["measure"] == "relative_lift")
    assert (relative["value"], relative["p_value"]) == ("", "")
    assert "too small to divide by" in relative["note"]
    assert float(next(row for row in summary if row["measure"] == "absolute_lift")["value"]) == 5.0
    assert rows == []


def test_the_stats_json_is_its_published_schema(world, db):
    m = world.merchant()
    v = world.venue(m, name="Storgata")
    campaign = world.campaign(m, [v["id"]], holdout_percent=20)
    _closed_windows(db, campaign["id"], {"treatment": (300, 90), "control": (75, 15)})
    first, second = (
        world.checkin(world.user(user), *v["center"]).json()["unlocked"][0]
        for user in users_in_arm(db, campaign, "treatment", 2)
    )
    _age(db, first["unlock_id"], 7)
    redeem(world, m, first["code"], v["id"])
    world.checkin(world.user(), *v["center"], accuracy_m=500)

    body = stats(world, m, campaign)

    assert CampaignStats.model_validate(body).model_dump(mode="json") == body
    # The open unlock (0 minutes old) leaves the risk set before the redemption at 7 minutes.
    assert body["funnel"]["time_to_redeem_minutes"]["curve"] == [{"minutes": 7.0, "redeemed_share": 1.0}]
    from api.main import app

    response = app.openapi()["paths"]["/v1/campaigns/{campaign_id}/stats"]["get"]["responses"]["200"]
    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/CampaignStats"}
    assert response["content"]["text/csv"]["schema"] == {"type": "string"}
    schemas = app.openapi()["components"]["schemas"]
    assert set(schemas["CampaignStats"]["properties"]) == set(body)
    assert set(schemas["Effect"]["properties"]) == set(body["effect"])
    assert set(schemas["Funnel"]["properties"]) == set(body["funnel"])
    assert schemas["CampaignStats"]["additionalProperties"] is False


def _random_groups(rng: random.Random, n: int) -> list[tuple[float, int, int]]:
    return [(float(rng.randint(0, 120)), rng.randint(0, 3), rng.randint(0, 3)) for _ in range(n)]


def test_the_curve_crosses_half_and_three_quarters_at_the_median_and_p75():
    rng = random.Random(7)
    for _ in range(500):
        groups = _random_groups(rng, rng.randint(1, 40))
        summary = kaplan_meier_grouped(groups)
        curve = redeemed_share_curve(groups)
        shares = [share for _, share in curve]
        assert shares == sorted(shares) and all(0 < share <= 1 for share in shares)
        assert len(curve) == len({t for t, events, _ in groups if events} & {t for t, _ in curve})
        reaching = {q: next((t for t, share in curve if share >= q - 1e-12), None) for q in (0.5, 0.75)}
        assert (reaching[0.5], reaching[0.75]) == (summary.median, summary.p75), groups


def test_the_curve_of_a_long_window_keeps_visible_steps_only():
    # 100,000 minutes with one redemption each and many still open: steps of 1/200,000.
    groups = [(float(t), 1, 1) for t in range(100_000)]
    curve = redeemed_share_curve(groups)
    assert len(curve) <= 1 / CURVE_RESOLUTION + 3
    assert curve[-1][0] == 99_999.0  # the last rise is always kept
    crossings = {next(point for point in curve if point[1] >= q) for q in (0.5, 0.75) if curve[-1][1] >= q}
    for before, point in zip(curve, curve[1:], strict=False):
        assert point[1] - before[1] >= CURVE_RESOLUTION or point in crossings or point == curve[-1]
    assert redeemed_share_curve([]) == [] and redeemed_share_curve([(3.0, 0, 5)]) == []
    json.dumps(curve)


def test_csv_is_refused_for_other_readers(world):
    m = world.merchant()
    v = world.venue(m)
    campaign = world.campaign(m, [v["id"]])
    url = f"/v1/campaigns/{campaign['id']}/stats?format=csv"

    assert world.http.get(url, headers=m.staff).status_code == 403
    assert world.http.get(url, headers=world.merchant("Other").marketer).status_code == 404
    assert world.http.get(url.replace("csv", "xml"), headers=m.admin).status_code == 422


def test_every_by_day_figure_counts_on_the_day_of_the_check_in_it_comes_from(world, db, monkeypatch, settings):
    """One clock: a check-in the phone made yesterday evening and sent after midnight (an offline
    phone) shows on yesterday's row with its unlock, its redemption today and a void after that;
    today has no row at all, so no day shows unlocks without check-ins or a negative figure."""
    m = world.merchant()
    v = world.venue(m)
    campaign = world.campaign(m, [v["id"]])
    monkeypatch.setattr(settings, "max_fix_age_s", 2 * 24 * 3600)
    today = datetime.now(UTC).date()
    late_evening = datetime.combine(today, datetime.min.time(), UTC) - timedelta(minutes=5)
    r = world.checkin(world.user(), *v["center"], observed_at=late_evening)
    assert r.status_code == 201, r.text
    unlock = r.json()["unlocked"][0]
    redemption = redeem(world, m, unlock["code"], v["id"])
    void = world.http.post(f"/v1/redemptions/{redemption['id']}/void", json={"reason": "wrong offer"}, headers=m.admin)
    assert void.status_code == 200, void.text
    redeem(world, m, unlock["code"], v["id"])  # the code is live again after a void

    body = stats(world, m, campaign)
    (row,) = body["by_day"]
    assert row["day"] == (today - timedelta(days=1)).isoformat()
    # redemptions are net of voids: two at the till, one voided
    assert (row["checkins_accepted"], row["unlocks"], row["redemptions"], row["voids"]) == (1, 1, 1, 1)
    assert (body["funnel"]["redemptions"], body["funnel"]["voids"]) == (1, 1)


def test_the_power_plan_reads_the_venues_history(world, db):
    """GET /power: 40 users first seen 20 days ago, half back 3 days later, and 16 seen 2 days ago
    (window not closed: counted as traffic, not in the baseline). Roles as for the stats."""
    from offers.stats_math import power_plan

    m = world.merchant()
    v = world.venue(m)
    campaign = world.campaign(m, [v["id"]], holdout_percent=30, attribution_days=7, activate=False)
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    rows = []
    for i in range(40):
        first = now - timedelta(days=20)
        rows.append((f"power-{campaign['id']}-{i}", first))
        if i % 2:
            rows.append((f"power-{campaign['id']}-{i}", first + timedelta(days=3)))
    rows += [(f"power-{campaign['id']}-late-{i}", now - timedelta(days=2)) for i in range(16)]
    for user, at in rows:
        db.execute(
            "INSERT INTO checkins (user_id, venue_id, status, lon, lat, accuracy_m, observed_at, received_at)"
            " VALUES (%s, %s, 'accepted', 10, 60, 10, %s, %s)",
            (user, v["id"], at, at),
        )
    url = f"/v1/campaigns/{campaign['id']}/power"

    body = world.http.get(url, headers=m.marketer, params={"lift_pp": 5}).json()

    plan = power_plan(0.5, 0.05, 0.3, 56 / 28, 7)
    assert body == {
        "users_per_arm": {"treatment": plan.users_treatment, "control": plan.users_control},
        "days": plan.days,
        "daily_new_users": pytest.approx(2.0),
        "baseline_return_rate": pytest.approx(0.5),
        "lift_pp": 5.0,
    }
    assert world.http.get(url, headers=m.admin).json()["lift_pp"] == 2.0  # the default
    assert world.http.get(url, headers=m.staff).status_code == 403
    assert world.http.get(url, headers=world.merchant("Other").admin).status_code == 404
    assert world.http.get(url, headers=m.admin, params={"lift_pp": 0}).status_code == 422


def test_the_power_plan_is_for_a_campaign_still_to_run(world):
    """Draft, active and paused campaigns get a plan; an ended one is 409 and its page shows none."""
    m = world.merchant()
    v = world.venue(m)
    campaign = world.campaign(m, [v["id"]], holdout_percent=20, activate=False)
    url, page = f"/v1/campaigns/{campaign['id']}/power", f"/dashboard/campaigns/{campaign['id']}"
    assert world.http.get(url, headers=m.admin).status_code == 200  # draft
    for action in ("activate", "pause"):
        assert world.http.post(f"/v1/campaigns/{campaign['id']}/{action}", headers=m.admin).status_code == 200
        assert world.http.get(url, headers=m.admin).status_code == 200
    assert 'id="power-plan"' in world.http.get(page, headers=m.admin).text
    assert world.http.post(f"/v1/campaigns/{campaign['id']}/end", headers=m.admin).status_code == 200
    ended = world.http.get(url, headers=m.admin)
    assert (ended.status_code, ended.json()["code"]) == (409, "campaign_ended")
    assert 'id="power-plan"' not in world.http.get(page, headers=m.admin).text
