"""A campaign's results page in the console (api/console/campaign_results.py), in Chromium against
the running service: every figure the page prints is the stats API's own figure, who may see it,
the banner's plain words, and the CSV download.

Activity of today goes through the API (check-ins of many users at two venues, redemptions at the
till, rejections). The API cannot back-date a check-in beyond CHECKIN_MAX_FIX_AGE_S, so the weeks
before, whose attribution windows have closed, are written as the stats aggregates the check-in and
redemption functions keep (campaign_counters, campaign_effect, campaign_redeem_minutes,
campaign_unredeemed), exactly the rows those functions would have left.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest

from api.console.campaign_results import banner_facts, effect_verdict, format_minutes, format_value
from offers.satisfaction import no_satisfaction
from offers.stats import effect_summary, stats_status
from offers.stats_math import minimum_detectable_effect
from offers.stats_schema import CampaignStats
from tests.browser import screenshot
from tests.factories import near, offer_body

PAGE_READY = "#venue-map .leaflet-tooltip, #venue-map .leaflet-interactive"


@dataclass
class Scene:
    merchant: object
    campaign: dict
    venues: list[dict]

    @property
    def url(self) -> str:
        return f"/dashboard/campaigns/{self.campaign['id']}"


def value_at(document, path: str):
    for part in path.split("."):
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


def api_stats(world, scene: Scene) -> dict:
    r = world.http.get(f"/v1/campaigns/{scene.campaign['id']}/stats", headers=scene.merchant.admin)
    assert r.status_code == 200, r.text
    return r.json()


def page_metrics(page) -> list[tuple[str, str]]:
    return page.locator("[data-metric]").evaluate_all("els => els.map(e => [e.dataset.metric, e.dataset.value])")


def mismatches(metrics: list[tuple[str, str]], stats: dict) -> list[str]:
    wrong = []
    for path, value in metrics:
        try:
            expected = value_at(stats, path)
        except (KeyError, IndexError, ValueError) as exc:
            wrong.append(f"{path}: not in the stats JSON ({exc!r})")
            continue
        if json.loads(value) != expected:
            wrong.append(f"{path}: page {value} != API {json.dumps(expected)}")
    return wrong


def open_results(console, headers, scene: Scene):
    page = console.page(headers)
    response = page.goto(scene.url)
    assert response.status == 200, response.text()
    page.wait_for_selector(PAGE_READY)
    page.wait_for_selector("#daily-chart canvas, #daily-chart .empty")
    page.wait_for_selector("#redeem-chart canvas, #redeem-chart .empty")
    return page


# --------------------------------------------------------------------------- building the data


def _live_activity(world, m, venues: list[dict], users: int) -> None:
    """Today, through the API: first visits at the first venue, returns at the second, some
    rejected check-ins, and about half the codes redeemed at the till."""
    first, second = venues
    codes: list[tuple[str, str]] = []
    earlier = datetime.now(UTC) - timedelta(minutes=8)  # so that the walk to the other venue is not too fast
    for i in range(users):
        user = world.user()
        r = world.checkin(user, *first["center"], observed_at=earlier)
        assert r.json()["status"] == "accepted", r.text
        codes += [(u["code"], first["id"]) for u in r.json()["unlocked"]]
        if i % 3 == 0:  # a return at the other venue
            r = world.checkin(user, *second["center"])
            assert r.json()["status"] == "accepted", r.text
            codes += [(u["code"], second["id"]) for u in r.json()["unlocked"]]
        if i % 6 == 1:  # too soon again at the same venue (never one who walked to the other)
            assert world.checkin(user, *first["center"]).json()["reason"] == "too_frequent"
    for _ in range(3):
        assert world.checkin(world.user(), *second["center"], accuracy_m=400).json()["reason"] == "accuracy_too_low"
    assert world.checkin(world.user(), *first["center"], mocked=True).json()["reason"] == "mocked_location"
    for code, venue_id in codes[::2]:
        r = world.http.post("/v1/redemptions", json={"code": code, "venue_id": venue_id}, headers=m.staff)
        assert r.status_code == 201, r.text


def _past_weeks(db, campaign_id: str, venue_ids: list[str], *, days: int, per_day: int, holdout: float) -> None:
    """The aggregates of `days` earlier days, up to yesterday: about per_day new users a day (more at
    weekends), split by the holdout; return rates 34% (offer group) and 26% (holdout); redemption times
    of 2-55 minutes. Redemptions of the past happened at least 5 minutes after their unlock, so
    today's open codes (younger than that during the test) never move the curve between the page
    and the API."""
    today = datetime.now(UTC).date()
    counters, effect, minutes = [], [], {}
    redeemed_total = unlocked_total = 0
    for back in range(days, 0, -1):
        day = today - timedelta(days=back)
        users = round(per_day * (1.35 if day.weekday() >= 5 else 1.0) * (0.9 + (back * 37 % 21) / 100))
        control = round(users * holdout) + (back % 3) - 1
        treatment = users - control
        for arm, n, rate in (("treatment", treatment, 0.34), ("control", control, 0.26)):
            returned = round(n * rate + (back % 2))
            effect.append((campaign_id, arm, day, 0, n, returned, returned * 13 // 10, returned * 19 // 10))
        for n, venue_id in enumerate(venue_ids):
            share = 0.65 if n == 0 else 0.35
            unlocks = round(treatment * 1.3 * share)
            redeemed = round(unlocks * (0.45 + (back % 4) * 0.05))
            redeemed_total += redeemed
            unlocked_total += unlocks
            rows = {
                "checkin_accepted": round(users * 1.4 * share),
                "exposure:treatment": round(treatment * share),
                "exposure:control": round(control * share),
                "unlock": unlocks,
                "redemption": redeemed,
                "checkin_rejected:accuracy_too_low": 1 + back % 3,
                "checkin_rejected:too_frequent": back % 2,
                "checkin_rejected:outside_geofence": 1 if back % 5 == 0 else 0,
            }
            counters += [(campaign_id, day, venue_id, metric, 0, n) for metric, n in rows.items() if n]
    for i in range(redeemed_total):  # a right-skewed spread of redemption times
        m = 5 + (i * 7919) % 50 if i % 3 else 5 + (i * 31) % 12
        minutes[m] = minutes.get(m, 0) + 1
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO campaign_counters (campaign_id, day, venue_id, metric, shard, n)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            counters,
        )
        cur.executemany(
            "INSERT INTO campaign_effect (campaign_id, arm, exposure_day, shard, users, returned_users, visits,"
            " visits_sq) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            effect,
        )
        cur.executemany(
            "INSERT INTO campaign_redeem_minutes (campaign_id, minutes, shard, n) VALUES (%s, %s, 1, %s)"
            " ON CONFLICT (campaign_id, minutes, shard) DO UPDATE SET n = campaign_redeem_minutes.n + EXCLUDED.n",
            [(campaign_id, m, n) for m, n in minutes.items()],
        )
        cur.execute(
            "INSERT INTO campaign_unredeemed (campaign_id, window_minutes, shard, n) VALUES (%s, 60, 1, %s)"
            " ON CONFLICT (campaign_id, window_minutes, shard) DO UPDATE SET n = campaign_unredeemed.n + EXCLUDED.n",
            (campaign_id, unlocked_total - redeemed_total),
        )


def build_campaign(world, db, *, history_days: int = 0, live_users: int = 30, holdout: int = 20) -> Scene:
    m = world.merchant("Kaffebrenneriet")
    first = world.venue(m, name="Storgata 12", radius_m=45)
    square = [near(first["center"], e, n) for e, n in ((160, -40), (260, -40), (260, 50), (160, 50), (160, -40))]
    second = world.venue(
        m,
        name="Torget kiosk",
        geofence={"type": "Polygon", "coordinates": [square]},
        center=near(first["center"], 210, 5),
    )
    offers = [
        offer_body(title="Free cinnamon bun", total_limit=5000),
        offer_body(title="Flash: half-price latte", rule={"type": "flash", "first_n": 10}, total_limit=500),
    ]
    campaign = world.campaign(
        m,
        [first["id"], second["id"]],
        offers,
        holdout_percent=holdout,
        starts_at=datetime.now(UTC) - timedelta(days=40),
    )
    if history_days:
        _past_weeks(
            db, campaign["id"], [first["id"], second["id"]], days=history_days, per_day=80, holdout=holdout / 100
        )
    _live_activity(world, m, [first, second], live_users)
    return Scene(m, campaign, [first, second])


# --------------------------------------------------------------------------- the page


def test_every_figure_on_the_page_is_the_apis_figure(console, world, db):
    scene = build_campaign(world, db, history_days=24)
    before = api_stats(world, scene)

    page = open_results(console, scene.merchant.admin, scene)
    metrics = page_metrics(page)
    after = api_stats(world, scene)

    paths = {path for path, _ in metrics}
    assert len(metrics) > 60
    for required in (
        "status",
        "funnel.checkins_accepted",
        "funnel.unique_users",
        "funnel.unlocks",
        "funnel.redemptions",
        "funnel.rejected_by_reason.accuracy_too_low",
        "funnel.time_to_redeem_minutes.median",
        "funnel.time_to_redeem_minutes.curve",
        "effect.arms.treatment.return_visit_rate",
        "effect.arms.control.return_visit_rate_ci.ci_high",
        "effect.absolute_lift.estimate",
        "effect.absolute_lift.ci_low",
        "effect.relative_lift.ci_high",
        "effect.p_value",
        "effect.minimum_detectable_effect",
        "effect.srm.p_value",
        "by_day",
        "by_venue.1.unlocks",
    ):
        assert required in paths, f"{required} is not on the page"
    # The same snapshot as the API's, read just before or just after (a UTC midnight in between
    # would change which windows have closed).
    assert not mismatches(metrics, after) or not mismatches(metrics, before), mismatches(metrics, after)

    assert after["status"] == "ready"
    banner = page.locator("#status-banner")
    assert banner.get_attribute("data-banner") == "ready"
    assert "Ready" in banner.inner_text()
    effect_text = page.locator("#effect").inner_text()
    assert "percentage points" in effect_text and "pp" in effect_text
    # A lift always comes with its unit: every "lift" is followed by "(percentage points)", "(pp)" or "(percent".
    for match in re.finditer(r"(?i)\blift\b(.{0,30})", effect_text):
        assert re.match(r"\s*\((percentage points|pp|percent)", match.group(1)), match.group(0)
    assert page.locator("#redeem-chart canvas").count() >= 1
    assert page.locator("#daily-chart canvas").count() >= 1
    assert page.locator("#venue-map .leaflet-interactive").count() == 2
    screenshot(page, "campaign")


def test_per_offer_figures_are_the_rows_in_the_database(console, world, db):
    scene = build_campaign(world, db, live_users=24)
    page = open_results(console, scene.merchant.marketer, scene)

    shown = page.locator("[data-offer]").evaluate_all(
        """rows => rows.map(r => [r.dataset.offer, Object.fromEntries(
               [...r.querySelectorAll('[data-offer-figure]')].map(c => [c.dataset.offerFigure, +c.dataset.value]))])"""
    )
    expected = {
        row["id"]: {"unlocks": row["unlocks"], "redemptions": row["redemptions"], "remaining": row["remaining"]}
        for row in db.execute(
            """SELECT o.id::text,
                      (SELECT count(*) FROM unlocks u WHERE u.offer_id = o.id) AS unlocks,
                      (SELECT count(*) FROM redemptions r
                       WHERE r.offer_id = o.id AND r.voided_at IS NULL) AS redemptions,
                      (SELECT sum(remaining) FROM offer_budget_shards s WHERE s.offer_id = o.id) AS remaining
               FROM offers o WHERE o.campaign_id = %s""",
            [scene.campaign["id"]],
        ).fetchall()
    }
    assert dict(shown) == expected
    stats = api_stats(world, scene)
    assert sum(o["unlocks"] for o in expected.values()) == stats["funnel"]["unlocks"]
    assert sum(o["redemptions"] for o in expected.values()) == stats["funnel"]["redemptions"]
    flash = next(o for o in scene.campaign["offers"] if o["rule"]["type"] == "flash")
    assert expected[flash["id"]]["unlocks"] + expected[flash["id"]]["remaining"] == 10  # its first 10 users
    assert "of 10" in page.locator(f'[data-offer="{flash["id"]}"]').inner_text()


def test_a_new_campaign_says_when_its_first_results_are_due(console, world, db):
    scene = build_campaign(world, db, live_users=12)
    page = open_results(console, scene.merchant.admin, scene)

    stats = api_stats(world, scene)
    assert stats["status"] == "collecting"
    assert not mismatches(page_metrics(page), stats)
    banner = page.locator("#status-banner")
    assert banner.get_attribute("data-banner") == "collecting"
    due = datetime.now(UTC).date() + timedelta(days=stats["effect"]["attribution_days"] + 1)
    assert f"first results are due on {due.day} {due:%b %Y}" in banner.inner_text()
    assert page.locator("#effect .verdict").inner_text().startswith("The effect appears once")
    screenshot(page, "campaign-collecting")


def _closed_windows(db, campaign_id: str, arms: dict[str, tuple[int, int]]) -> None:
    """Users exposed 30 days ago, whose windows have closed: {arm: (users, returned)}."""
    day = datetime.now(UTC).date() - timedelta(days=30)
    for arm, (users, returned) in arms.items():
        db.execute(
            "INSERT INTO campaign_effect (campaign_id, arm, exposure_day, shard, users, returned_users, visits,"
            " visits_sq) VALUES (%s, %s, %s, 0, %s, %s, %s, %s)",
            [campaign_id, arm, day, users, returned, returned, returned],
        )


@pytest.mark.parametrize(
    ("arms", "kind", "words"),
    [
        (
            {"treatment": (900, 300), "control": (20, 5)},
            "srm_alert",
            ["The split is broken: do not trust the effect", "2.2% of users landed in the holdout, where 20%"],
        ),
        (
            {"treatment": (130, 40), "control": (30, 6)},
            "below_min_data",
            ["Not enough data yet", "about 20 more users in the holdout are needed: about 100 new users in all"],
        ),
    ],
)
def test_the_banner_says_what_is_wrong_or_missing(console, world, db, arms, kind, words):
    m = world.merchant()
    venue = world.venue(m)
    campaign = world.campaign(m, [venue["id"]], holdout_percent=20)
    _closed_windows(db, campaign["id"], arms)
    scene = Scene(m, campaign, [venue])

    page = open_results(console, m.marketer, scene)

    stats = api_stats(world, scene)
    assert not mismatches(page_metrics(page), stats)
    banner = page.locator("#status-banner")
    assert (stats["status"], banner.get_attribute("data-banner")) == (kind, kind)
    text = " ".join(banner.inner_text().split())
    for phrase in words:
        assert phrase in text
    if kind == "srm_alert":
        assert "do not trust these figures" in page.locator("#effect .verdict").inner_text()
        screenshot(page, "campaign-srm")


def test_a_marketer_reads_it_and_staff_get_the_403_page(console, world, http):
    m = world.merchant()
    venue = world.venue(m)
    campaign = world.campaign(m, [venue["id"]], holdout_percent=10)
    scene = Scene(m, campaign, [venue])

    marketer = open_results(console, m.marketer, scene)
    assert marketer.locator("h1").inner_text().startswith("Autumn")
    assert marketer.locator("text=Campaign settings").count() == 0  # only the admin edits
    assert not mismatches(page_metrics(marketer), api_stats(world, scene))

    # Error pages are checked over HTTP: Chromium logs every 4xx document as a console error.
    for url in (scene.url, scene.url + "/stats.csv"):
        r = http.get(url, headers=m.staff)
        assert r.status_code == 403, url
        assert "<h1>Not for your role</h1>" in r.text


def test_another_merchants_campaign_and_a_missing_one_are_the_404_page(world, http):
    m = world.merchant()
    venue = world.venue(m)
    campaign = world.campaign(m, [venue["id"]])
    other = world.merchant("Other")

    for url in (
        f"/dashboard/campaigns/{campaign['id']}",
        f"/dashboard/campaigns/{uuid.uuid4()}",
        f"/dashboard/campaigns/{campaign['id']}/stats.csv",
    ):
        for headers in (other.admin, other.marketer):
            r = http.get(url, headers=headers)
            assert r.status_code == 404, url
            assert "<h1>Not found</h1>" in r.text and campaign["name"] not in r.text
    r = http.get(f"/dashboard/campaigns/{campaign['id']}", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/sign-in")


def test_the_csv_downloads_with_the_bom_and_the_summary_first(console, world, db, tmp_path):
    scene = build_campaign(world, db, history_days=20, live_users=10)
    page = open_results(console, scene.merchant.marketer, scene)

    with page.expect_download() as download:
        page.locator("#csv-download").click()
    saved = tmp_path / "stats.csv"
    download.value.save_as(saved)
    raw = saved.read_bytes()

    assert raw.startswith(b"\xef\xbb\xbfmeasure,group,value,ci_low,ci_high,unit,p_value")
    assert download.value.suggested_filename == f"campaign-{scene.campaign['id']}.csv"
    text = raw.decode("utf-8-sig")
    summary, breakdowns = text.split("\r\n\r\n")
    assert "absolute_lift,treatment vs control," in summary and ",percentage points," in summary
    assert breakdowns.startswith("breakdown,key,name,")
    api = world.http.get(
        f"/v1/campaigns/{scene.campaign['id']}/stats", params={"format": "csv"}, headers=scene.merchant.admin
    )
    assert raw == api.content  # the API's CSV, byte for byte


def test_a_draft_says_so_and_the_admin_gets_the_settings_link(console, world):
    m = world.merchant()
    venue = world.venue(m)
    draft = world.campaign(m, [venue["id"]], activate=False, holdout_percent=10)
    page = open_results(console, m.admin, Scene(m, draft, [venue]))
    link = page.locator("text=Campaign settings")
    assert link.get_attribute("href") == f"/dashboard/campaigns/{draft['id']}/edit"
    banner = page.locator("#status-banner")
    assert banner.get_attribute("data-banner") == "collecting"
    assert "This campaign is a draft: it starts collecting once it is activated." in banner.inner_text()
    assert page.locator("#daily-chart .empty").inner_text() == "No activity yet."
    assert page.locator("#redeem-chart .empty").inner_text() == "No redemptions yet."

    everyone = world.campaign(m, [venue["id"]], holdout_percent=0)
    page = open_results(console, m.marketer, Scene(m, everyone, [venue]))
    assert page.locator("#status-banner").get_attribute("data-banner") == "no_holdout"
    assert not mismatches(page_metrics(page), api_stats(world, Scene(m, everyone, [venue])))


# --------------------------------------------------------------------------- the banner's logic


def _stats(*, treatment=(0, 0, 0), control=(0, 0, 0), holdout=10, first_day: date | None = None, days=14):
    """A CampaignStats from per-arm (exposed, window closed, returned) through the real effect_summary."""
    arms = {
        name: {"users": users, "closed_users": closed, "returned": returned, "visits": returned, "visits_sq": returned}
        for name, (users, closed, returned) in (("treatment", treatment), ("control", control))
    }
    effect = effect_summary(arms, holdout) | {"attribution_days": days}
    counts = dict.fromkeys(
        (
            "checkins_accepted",
            "checkins_rejected",
            "exposed_treatment",
            "exposed_control",
            "unlocks",
            "redemptions",
            "voids",
        ),
        0,
    ) | {"rejected_by_reason": {}}
    return CampaignStats.model_validate(
        {
            "campaign_id": str(uuid.uuid4()),
            "campaign_status": "active",
            "status": stats_status(effect),
            "generated_at": datetime.now(UTC).isoformat(),
            "funnel": counts
            | {
                "unique_users": treatment[0] + control[0],
                "exposures": {"treatment": treatment[0], "control": control[0]},
                "redemption_rate_of_unlocks": None,
                "redemptions_per_treatment_user": None,
                "time_to_redeem_minutes": {
                    "median": None,
                    "p75": None,
                    "unlocks": 0,
                    "redeemed": 0,
                    "method": "kaplan_meier",
                    "curve": [],
                },
            },
            "effect": effect,
            "by_day": [counts | {"day": first_day.isoformat(), "exposed_treatment": 1}] if first_day else [],
            "by_venue": [],
            "satisfaction": no_satisfaction(),
        }
    )


TODAY = date(2026, 12, 3)


def test_banner_collecting_names_the_day_the_first_window_closes():
    facts = banner_facts(_stats(treatment=(5, 0, 0), control=(1, 0, 0), first_day=date(2026, 11, 30)), TODAY)
    assert (facts.kind, facts.style) == ("collecting", "waiting")
    assert facts.first_results_on == date(2026, 12, 15)  # 30 Nov + 14 days has closed on the 15th


def test_banner_below_min_data_counts_the_users_each_arm_still_needs():
    facts = banner_facts(_stats(treatment=(400, 300, 90), control=(45, 30, 6), holdout=10), TODAY)
    assert facts.kind == "below_min_data"
    assert (facts.to_minimum.treatment, facts.to_minimum.control) == (0, 20)
    assert facts.to_minimum_in_all == 200  # 20 holdout users at a 10% holdout share
    facts = banner_facts(_stats(treatment=(40, 30, 9), control=(40, 30, 6), holdout=50), TODAY)
    assert (facts.to_minimum.treatment, facts.to_minimum.control, facts.to_minimum_in_all) == (20, 20, 40)


def test_users_to_detect_the_observed_lift_scale_with_the_minimum_detectable_effect():
    stats = _stats(treatment=(1000, 1000, 300), control=(1000, 1000, 280), holdout=50)
    facts = banner_facts(stats, TODAY)
    assert facts.kind == "ready" and effect_verdict(stats.effect) == "unclear"
    mde, lift = stats.effect.minimum_detectable_effect, stats.effect.absolute_lift.estimate
    assert mde > abs(lift)
    factor = (mde / abs(lift)) ** 2
    assert facts.to_detect.treatment == facts.to_detect.control == pytest.approx(1000 * (factor - 1), abs=1)
    # With that many more users, the minimum detectable effect would be the observed lift.
    grown = 1000 + facts.to_detect.treatment
    assert minimum_detectable_effect(0.28, grown, grown) == pytest.approx(abs(lift), rel=1e-3)


def test_banner_ready_with_a_clear_effect_needs_no_more_users():
    stats = _stats(treatment=(2000, 2000, 800), control=(2000, 2000, 600), holdout=50)
    facts = banner_facts(stats, TODAY)
    assert (facts.kind, facts.style, facts.to_detect) == ("ready", "ready", None)
    assert effect_verdict(stats.effect) == "rose"


def test_banner_sample_ratio_alert_wins_over_everything():
    facts = banner_facts(_stats(treatment=(900, 900, 300), control=(20, 20, 5), holdout=20), TODAY)
    assert (facts.kind, facts.style) == ("srm_alert", "alert")


def test_banner_without_a_holdout_says_the_effect_cannot_be_measured():
    facts = banner_facts(_stats(treatment=(500, 400, 100), holdout=0), TODAY)
    assert (facts.kind, facts.style) == ("no_holdout", "waiting")


@pytest.mark.parametrize(
    ("value", "kind", "text"),
    [
        (0.3124, "rate", "31.2%"),
        (0.021, "pp", "+2.1 pp"),
        (-0.004, "pp", "\u22120.4 pp"),
        (0.0321, "pp_size", "3.2 pp"),
        (-0.012, "relative", "\u22121.2%"),
        (0.00004, "p", "p < 0.001"),
        (0.0981, "p", "p = 0.098"),
        (1234567, "count", "1,234,567"),
        (0.1, "whole_percent", "10%"),
        (None, "rate", "—"),
    ],
)
def test_figures_are_written_with_their_units(value, kind, text):
    assert format_value(value, kind) == text


def test_minutes_read_as_minutes_hours_and_days():
    assert [format_minutes(m) for m in (0, 12, 60, 95, 1440, 1500, 3000)] == [
        "0 min",
        "12 min",
        "1 h",
        "1 h 35 min",
        "1 d",
        "1 d 1 h",
        "2 d 2 h",
    ]
