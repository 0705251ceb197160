"""Webhooks: endpoints over HTTP (ownership, validation, the secret shown once), the address policy
and the sender's refusals (plain functions, no traffic), the outbox's ordering, and deliveries to a
receiver on 127.0.0.1 that verifies them with the standardwebhooks library: retries until it
recovers, redelivery, budget and sample-ratio alerts, and an endpoint disabled after 3 days."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from standardwebhooks import Webhook

from api.main import app
from offers.webhooks import EVENT_TYPES, outbox, sender
from offers.webhooks.address import RefusedURL, check_url, refusal
from offers.webhooks.worker import retry_delay_s
from tests.conftest import own_database
from tests.factories import offer_body
from tests.test_errors_and_limits import assert_problem
from tests.webhook_receiver import verified

ANY_ID = "00000000-0000-4000-8000-000000000000"


def hook(world, merchant, url: str, events: list[str] | None = None) -> dict:
    r = world.http.post(
        "/v1/webhooks", json={"url": url, "events": events or list(EVENT_TYPES)}, headers=merchant.admin
    )
    assert r.status_code == 201, r.text
    return r.json()


def deliveries(world, merchant, endpoint: dict) -> list[dict]:
    r = world.http.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=merchant.admin)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def settled(world, merchant, endpoint: dict, count: int, timeout_s: float = 15) -> list[dict]:
    """The endpoint's deliveries once there are `count` and none is pending (the worker records a
    result just after the receiver has answered)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = deliveries(world, merchant, endpoint)
        if len(found) == count and all(d["status"] != "pending" for d in found):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def unlock_at(world, venue) -> tuple[str, dict]:
    """A fresh user checks in at the venue and unlocks one code: (their sub, the unlock)."""
    sub = f"user-{uuid.uuid4().hex[:12]}"
    r = world.checkin(world.user(sub), *venue["center"])
    assert r.status_code == 201, r.text
    (unlock,) = r.json()["unlocked"]
    return sub, unlock


def in_database(database_url: str, work):
    """Run `work(conn)` in one transaction of a connection of the test's own (not the service's)."""

    async def run():
        engine = create_async_engine(database_url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                return await work(conn)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@pytest.fixture
def shop(world):
    """A merchant with a venue and a running every-check-in campaign."""
    m = world.merchant()
    v = world.venue(m)
    campaign = world.campaign(m, [v["id"]])
    return m, v, campaign


# --------------------------------------------------------------------------- the address policy


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("fd00::1", "private"),
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT
        ("::ffff:10.0.0.1", "private"),  # IPv4-mapped
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
    ],
)
def test_internal_addresses_are_refused(address, reason):
    found = refusal(ipaddress.ip_address(address), allow_loopback=False)
    assert found is not None and reason in found


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    assert refusal(ipaddress.ip_address(address), allow_loopback=False) is None


def test_loopback_passes_only_when_allowed():
    for address in ("127.0.0.1", "127.8.9.10", "::1"):
        assert refusal(ipaddress.ip_address(address), allow_loopback=True) is None
    assert refusal(ipaddress.ip_address("10.0.0.1"), allow_loopback=True) is not None  # private stays refused


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",  # plain http
        "ftp://example.com/hook",
        "https:///path-only",
        "https://user:pass@example.com/hook",
        "https://example.com:99999/hook",
        "https://10.0.0.8/hook",
        "https://[::1]/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://api.localhost/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://exämple.com/hook",
        "https://example.com/a b",
        "https://example.com/" + "a" * 2000,
    ],
)
def test_urls_refused_at_registration(url):
    with pytest.raises(RefusedURL):
        check_url(url, allow_loopback=False)


def test_https_urls_pass_and_loopback_http_only_when_allowed():
    for url in ("https://example.com/hook", "https://hooks.example.com:8443/a?b=c", "https://93.184.215.14/x"):
        check_url(url, allow_loopback=False)
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "https://[::1]:9/x"):
        with pytest.raises(RefusedURL):
            check_url(url, allow_loopback=False)
        check_url(url, allow_loopback=True)
    with pytest.raises(RefusedURL):
        check_url("http://example.com/hook", allow_loopback=True)  # plain http only to loopback


# --------------------------------------------------------------------------- the sender, without traffic


class NoNetwork(httpx.AsyncBaseTransport):
    """A transport that records requests instead of connecting anywhere."""

    def __init__(self, status: int = 204) -> None:
        self.requests: list[httpx.Request] = []
        self.status = status

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, stream=_Body())


class _Body(httpx.AsyncByteStream):
    async def __aiter__(self):
        yield b"ok"


def _attempt(url: str, resolved: list[str], transport: NoNetwork, allow_loopback: bool = False) -> sender.Outcome:
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list:
        lookups.append(host)
        return [ipaddress.ip_address(a) for a in resolved]

    async def run() -> sender.Outcome:
        async with httpx.AsyncClient(transport=transport, follow_redirects=False) as client:
            return await sender.attempt(
                client,
                url=url,
                secret=SECRET,
                webhook_id="msg_1",
                body='{"type":"x"}',
                allow_loopback=allow_loopback,
                resolver=resolver,
            )

    outcome = asyncio.run(run())
    assert lookups in ([], [url.split("/")[2].split(":")[0]])  # resolved once, when sending
    return outcome


SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.parametrize(
    "resolved",
    [["10.0.0.7"], ["127.0.0.1"], ["169.254.169.254"], ["93.184.215.14", "192.168.0.3"], ["::ffff:127.0.0.1"], []],
)
def test_a_name_resolving_to_an_internal_address_is_refused_before_any_connection(resolved):
    transport = NoNetwork()
    outcome = _attempt("https://hooks.example.com/in", resolved, transport)
    assert not outcome.ok and outcome.status_code is None
    assert "refused" in outcome.error or "no address" in outcome.error
    assert transport.requests == []  # nothing was sent anywhere


def test_the_attempt_connects_to_the_address_it_checked_with_the_name_in_host_and_sni():
    transport = NoNetwork()
    outcome = _attempt("https://hooks.example.com:8443/in?x=1", ["93.184.215.14"], transport)
    assert outcome.ok, outcome
    (request,) = transport.requests
    assert request.url.host == "93.184.215.14" and request.url.port == 8443 and request.url.raw_path == b"/in?x=1"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert Webhook(SECRET).verify(request.content, dict(request.headers)) == {"type": "x"}


def test_redirects_and_errors_are_failures_with_their_status():
    for status, expected in ((301, "redirects are not followed"), (500, "HTTP 500"), (404, "HTTP 404")):
        outcome = _attempt("https://hooks.example.com/in", ["93.184.215.14"], NoNetwork(status))
        assert not outcome.ok and outcome.status_code == status and expected in outcome.error


def test_signatures_follow_standard_webhooks():
    at = datetime.now(UTC)
    headers = sender.signed_headers(SECRET, "msg_abc", '{"a":1}', at)
    assert headers["webhook-timestamp"] == str(int(at.timestamp()))
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]+=*", headers["webhook-signature"])
    assert Webhook(SECRET).verify('{"a":1}', headers) == {"a": 1}
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify('{"a":2}', headers)


def test_retry_delays_are_full_jitter_up_to_the_cap():
    import random

    rng = random.Random(7)
    for failed_before, bound in ((0, 5), (1, 10), (3, 40), (10, 3600), (500, 3600)):
        delays = [retry_delay_s(failed_before, base_s=5, cap_s=3600, rng=rng) for _ in range(200)]
        assert min(delays) >= 0 and max(delays) <= bound
        assert max(delays) > bound / 2  # spread over the whole range, not a fixed step


# --------------------------------------------------------------------------- endpoints over HTTP


def test_an_endpoint_is_made_with_a_secret_shown_once(world, receiver):
    m = world.merchant()
    made = hook(world, m, receiver.url, ["offer_redeemed", "offer_unlocked"])
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", made["secret"])
    assert made["events"] == ["offer_unlocked", "offer_redeemed"]  # in the documented order
    assert made["status"] == "enabled" and made["disabled_reason"] is None
    Webhook(made["secret"])  # the library takes it as is

    listed = world.http.get("/v1/webhooks", headers=m.admin).json()
    assert [e["id"] for e in listed["items"]] == [made["id"]]
    assert "secret" not in listed["items"][0] and made["secret"] not in json.dumps(listed)
    assert world.http.delete(f"/v1/webhooks/{made['id']}", headers=m.admin).status_code == 204
    assert world.http.get("/v1/webhooks", headers=m.admin).json()["items"] == []
    assert_problem(world.http.delete(f"/v1/webhooks/{made['id']}", headers=m.admin), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://example.com/x", "events": ["offer_unlocked"]}, "url"),
        ({"url": "https://10.0.0.1/x", "events": ["offer_unlocked"]}, "url"),
        ({"url": "https://169.254.169.254/x", "events": ["offer_unlocked"]}, "url"),
        ({"url": "https://example.com/x", "events": []}, "events"),
        ({"url": "https://example.com/x", "events": ["offer_stolen"]}, "events"),
        ({"url": "https://example.com/x", "events": ["offer_unlocked", "offer_unlocked"]}, "events"),
        ({"url": "https://example.com/x", "events": ["offer_unlocked"], "secret": "mine"}, "secret"),
    ],
)
def test_bad_endpoints_are_refused_with_the_field(world, body, field):
    m = world.merchant()
    problem = assert_problem(world.http.post("/v1/webhooks", json=body, headers=m.admin), 422)
    assert field in json.dumps(problem["errors"]), problem


def test_a_merchant_has_at_most_20_endpoints(world):
    m = world.merchant()
    for n in range(20):
        hook(world, m, f"https://hooks{n}.example.com/x", ["srm_alert"])
    r = world.http.post("/v1/webhooks", json={"url": "https://x.example.com", "events": ["srm_alert"]}, headers=m.admin)
    assert_problem(r, 409, "too_many_webhooks")


def _webhook_operations() -> list[tuple[str, str]]:
    """Every webhook operation on one endpoint (or its delivery), from the app's own routes."""
    return sorted(
        (method, path)
        for path, item in app.openapi()["paths"].items()
        if path.startswith("/v1/webhooks/{webhook_id}")
        for method in item
    )


@pytest.mark.parametrize(("method", "path"), _webhook_operations(), ids=lambda v: str(v))
def test_another_merchants_endpoint_is_the_same_404_as_a_missing_one(world, receiver, method, path):
    owner, other = world.merchant(), world.merchant()
    endpoint = hook(world, owner, receiver.url)
    delivery = ANY_ID

    def call(webhook_id: str) -> httpx.Response:
        url = path.replace("{webhook_id}", webhook_id).replace("{delivery_id}", delivery)
        return world.http.request(method.upper(), url, headers=other.admin)

    foreign, missing = call(endpoint["id"]), call(ANY_ID)
    assert foreign.status_code == missing.status_code == 404, (foreign.text, missing.text)
    same = lambda r: {k: v for k, v in r.json().items() if k not in ("instance", "request_id")}  # noqa: E731
    assert same(foreign) == same(missing)
    assert world.http.get("/v1/webhooks", headers=owner.admin).json()["items"][0]["id"] == endpoint["id"]


def test_webhook_operations_are_the_ones_the_role_table_lists():
    assert _webhook_operations() == [
        ("delete", "/v1/webhooks/{webhook_id}"),
        ("get", "/v1/webhooks/{webhook_id}/deliveries"),
        ("post", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"),
        ("post", "/v1/webhooks/{webhook_id}/enable"),
    ]


# --------------------------------------------------------------------------- deliveries


def test_unlock_redemption_and_void_arrive_signed_without_the_customers_sub_code_or_position(world, receiver, shop):
    m, v, campaign = shop
    endpoint = hook(world, m, receiver.url)
    sub, unlock = unlock_at(world, v)
    r = world.http.post("/v1/redemptions", json={"code": unlock["code"], "venue_id": v["id"]}, headers=m.staff)
    assert r.status_code == 201, r.text
    redemption = r.json()
    r = world.http.post(f"/v1/redemptions/{redemption['id']}/void", json={"reason": "rang up twice"}, headers=m.admin)
    assert r.status_code == 200, r.text

    receiver.wait_for(lambda rc: len(rc.accepted()) == 3, what="three events")
    payloads = {p["type"]: p for p in (verified(endpoint["secret"], req) for req in receiver.received)}
    assert set(payloads) == {"offer_unlocked", "offer_redeemed", "redemption_voided"}
    unlocked = payloads["offer_unlocked"]["data"]
    assert unlocked["unlock_id"] == unlock["unlock_id"] and unlocked["campaign_id"] == campaign["id"]
    assert unlocked["venue_id"] == v["id"] and unlocked["customer"].startswith("cust-")
    assert payloads["offer_redeemed"]["data"]["redemption_id"] == redemption["id"]
    assert payloads["redemption_voided"]["data"]["reason"] == "rang up twice"
    assert len({p["data"]["customer"] for p in payloads.values()}) == 1  # one pseudonym per customer
    for request in receiver.received:
        assert re.fullmatch(r"msg_[0-9a-f]{32}", request.event_id)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", request.payload["timestamp"])
        text = request.body.decode()
        assert sub not in text and unlock["code"] not in text
        assert str(v["center"][0])[:7] not in text and str(v["center"][1])[:7] not in text

    listed = settled(world, m, endpoint, 3)
    assert [d["status"] for d in listed] == ["succeeded"] * 3
    assert {d["event_id"] for d in listed} == set(receiver.accepted())
    assert all(d["attempts"][0]["status_code"] == 204 and d["next_attempt_at"] is None for d in listed)


def test_only_subscribed_types_arrive_and_other_merchants_events_never(world, receiver, shop):
    m, v, _ = shop
    hook(world, m, receiver.url, ["offer_redeemed"])
    other = world.merchant()
    other_venue = world.venue(other)
    world.campaign(other, [other_venue["id"]])
    unlock_at(world, v)
    _, unlock = unlock_at(world, other_venue)
    r = world.http.post(
        "/v1/redemptions", json={"code": unlock["code"], "venue_id": other_venue["id"]}, headers=other.staff
    )
    assert r.status_code == 201
    _, mine = unlock_at(world, v)
    r = world.http.post("/v1/redemptions", json={"code": mine["code"], "venue_id": v["id"]}, headers=m.staff)
    assert r.status_code == 201
    receiver.wait_for(lambda rc: len(rc.accepted()) >= 1, what="the redemption")
    time.sleep(1.0)  # time for anything that should not come
    assert [req.payload["type"] for req in receiver.received] == ["offer_redeemed"]
    assert receiver.received[0].payload["data"]["unlock_id"] == mine["unlock_id"]


def test_a_receiver_failing_for_a_while_gets_every_event_at_least_once_with_the_same_body(world, receiver, shop):
    m, v, _ = shop
    endpoint = hook(world, m, receiver.url, ["offer_unlocked"])
    failing_until = time.monotonic() + 3.0
    receiver.answer = lambda _: 500 if time.monotonic() < failing_until else 204
    unlocks = [unlock_at(world, v)[1] for _ in range(8)]

    receiver.wait_for(lambda rc: len(rc.accepted()) == 8, timeout_s=60, what="all 8 events delivered")
    by_id = receiver.by_id()
    assert any(req.status == 500 for reqs in by_id.values() for req in reqs)  # it did fail for a while
    for requests in by_id.values():
        assert len({req.body for req in requests}) == 1  # every attempt the same bytes
        for req in requests:
            verified(endpoint["secret"], req)
    assert {json.loads(reqs[0].body)["data"]["unlock_id"] for reqs in by_id.values()} == {
        u["unlock_id"] for u in unlocks
    }
    retried = [d for d in settled(world, m, endpoint, 8) if d["attempt_count"] > 1]
    assert retried and all(d["attempts"][-1]["status_code"] == 500 for d in retried)
    assert all(d["attempts"][-1]["error"] == "HTTP 500" for d in retried)


def test_pending_deliveries_show_the_error_and_the_next_retry_and_redelivery_sends_the_same_message(
    world, receiver, shop
):
    m, v, _ = shop
    endpoint = hook(world, m, receiver.url, ["offer_unlocked"])
    receiver.answer = lambda _: 503
    unlock_at(world, v)
    receiver.wait_for(lambda rc: len(rc.received) >= 2, what="two failed attempts")
    (pending,) = deliveries(world, m, endpoint)
    assert pending["status"] == "pending" and pending["next_attempt_at"] is not None
    assert pending["last_status_code"] == 503 and pending["last_error"] == "HTTP 503"

    receiver.answer = lambda _: 204
    receiver.wait_for(lambda rc: len(rc.accepted()) == 1, what="the recovery")
    (done,) = settled(world, m, endpoint, 1)
    assert done["status"] == "succeeded"
    r = world.http.post(f"/v1/webhooks/{endpoint['id']}/deliveries/{done['id']}/redeliver", headers=m.admin)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending"
    receiver.wait_for(lambda rc: len(rc.accepted()[done["event_id"]]) == 2, what="the redelivery")
    first, again = receiver.accepted()[done["event_id"]]
    assert first.body == again.body and first.event_id == again.event_id


def test_an_offer_and_a_campaign_that_run_out_of_budget_are_reported_once(world, receiver):
    m = world.merchant()
    v = world.venue(m)
    campaign = world.campaign(m, [v["id"]], [offer_body(total_limit=2)])
    endpoint = hook(world, m, receiver.url, ["budget_exhausted"])
    unlock_at(world, v)
    time.sleep(0.8)
    assert receiver.received == []  # one left
    unlock_at(world, v)
    receiver.wait_for(lambda rc: len(rc.accepted()) == 2, what="offer and campaign exhausted")
    r = world.checkin(world.user(), *v["center"])
    assert r.json()["unlocked"] == []  # spent: nothing more unlocks, nothing more is reported
    time.sleep(0.8)
    payloads = sorted(
        (verified(endpoint["secret"], req) for req in receiver.received), key=lambda p: p["data"]["scope"]
    )
    assert [p["data"]["scope"] for p in payloads] == ["campaign", "offer"]
    assert all(p["type"] == "budget_exhausted" and p["data"]["campaign_id"] == campaign["id"] for p in payloads)
    (offer,) = world.http.get(f"/v1/campaigns/{campaign['id']}/offers", headers=m.admin).json()["items"]
    assert payloads[1]["data"]["offer_id"] == offer["id"]
    assert payloads[1]["data"]["budget"] == 2


def test_a_sample_ratio_alert_is_sent_once_per_time_a_campaign_goes_into_alert(world, receiver, db, database_url):
    m = world.merchant()
    v = world.venue(m)
    campaign = world.campaign(m, [v["id"]], holdout_percent=50)
    endpoint = hook(world, m, receiver.url, ["srm_alert"])

    def arms(treatment: int, control: int) -> None:
        db.execute("DELETE FROM campaign_effect WHERE campaign_id = %s", [campaign["id"]])
        db.execute(
            "INSERT INTO campaign_effect (campaign_id, arm, exposure_day, shard, users)"
            " VALUES (%s, 'treatment', current_date, 0, %s), (%s, 'control', current_date, 0, %s)",
            [campaign["id"], treatment, campaign["id"], control],
        )

    def evaluate() -> None:
        in_database(database_url, outbox.srm_alerts)

    arms(500, 500)
    evaluate()
    arms(900, 100)  # 10% control where 50% was set: the split is broken
    evaluate()
    evaluate()
    receiver.wait_for(lambda rc: len(rc.accepted()) == 1, what="the alert")
    arms(500, 500)
    evaluate()  # back to normal, then broken again: a second alert
    arms(100, 900)
    evaluate()
    receiver.wait_for(lambda rc: len(rc.accepted()) == 2, what="the second alert")
    time.sleep(0.5)
    first, second = (verified(endpoint["secret"], req) for req in receiver.received)
    assert first["type"] == second["type"] == "srm_alert"
    assert first["data"]["campaign_id"] == campaign["id"] and first["data"]["users"] == {
        "treatment": 900,
        "control": 100,
    }
    assert first["data"]["p_value"] < 0.001 and first["data"]["expected_control_share"] == 0.5
    assert second["data"]["users"] == {"treatment": 100, "control": 900}
    assert len(receiver.received) == 2


def test_an_endpoint_failing_for_3_days_is_disabled_and_says_why(world, receiver, shop, db):
    m, v, _ = shop
    endpoint = hook(world, m, receiver.url, ["offer_unlocked"])
    db.execute(
        "UPDATE webhook_endpoints SET failing_since = now() - interval '3 days 1 minute' WHERE id = %s",
        [endpoint["id"]],
    )
    receiver.answer = lambda _: 500
    unlock_at(world, v)
    receiver.wait_for(lambda rc: len(rc.received) == 1, what="the failing attempt")

    def disabled() -> dict:
        (found,) = world.http.get("/v1/webhooks", headers=m.admin).json()["items"]
        return found

    deadline = time.monotonic() + 10
    while disabled()["status"] != "disabled" and time.monotonic() < deadline:
        time.sleep(0.1)
    found = disabled()
    assert found["status"] == "disabled" and found["disabled_at"] is not None
    assert "failed for 3 days" in found["disabled_reason"] and "HTTP 500" in found["disabled_reason"]
    (given_up,) = deliveries(world, m, endpoint)
    assert given_up["status"] == "failed" and given_up["next_attempt_at"] is None
    unlock_at(world, v)  # a disabled endpoint gets nothing more
    r = world.http.post(f"/v1/webhooks/{endpoint['id']}/deliveries/{given_up['id']}/redeliver", headers=m.admin)
    assert_problem(r, 409, "webhook_disabled")

    receiver.answer = lambda _: 204
    r = world.http.post(f"/v1/webhooks/{endpoint['id']}/enable", headers=m.admin)
    assert r.status_code == 200 and r.json()["status"] == "enabled" and r.json()["disabled_reason"] is None
    r = world.http.post(f"/v1/webhooks/{endpoint['id']}/deliveries/{given_up['id']}/redeliver", headers=m.admin)
    assert r.status_code == 202, r.text
    receiver.wait_for(lambda rc: len(rc.accepted()) == 1, what="the redelivery after enabling")
    assert len(receiver.received) == 2  # the event while disabled was not sent


def test_a_delivery_is_given_up_after_its_24_hours(world, receiver, shop, db):
    m, v, _ = shop
    endpoint = hook(world, m, receiver.url, ["offer_unlocked"])
    receiver.answer = lambda _: 500
    unlock_at(world, v)
    receiver.wait_for(lambda rc: len(rc.received) >= 1, what="a first attempt")
    db.execute(
        "UPDATE webhook_deliveries SET retry_until = now() - interval '1 second' WHERE endpoint_id = %s",
        [endpoint["id"]],
    )
    deadline = time.monotonic() + 10
    while deliveries(world, m, endpoint)[0]["status"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.1)
    (given_up,) = deliveries(world, m, endpoint)
    assert given_up["status"] == "failed" and given_up["last_error"] == "HTTP 500"


# --------------------------------------------------------------------------- the outbox's order


def test_an_event_that_commits_after_a_later_one_is_still_published(world, receiver, db, database_url, settings, shop):
    """Identity values are taken before commit: the outbox must not pass an event whose
    transaction is still running, even when a later event is already visible."""
    m, v, campaign = shop
    hook(world, m, receiver.url, ["redemption_voided"])
    insert = (
        "INSERT INTO events (type, campaign_id, venue_id, user_id, reason) "
        "VALUES ('redemption_voided', %s, %s, 'someone', %s) RETURNING id"
    )
    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as slow:
        early = slow.execute(insert, [campaign["id"], v["id"], "early"]).fetchone()[0]  # not committed yet
        late = db.execute(insert, [campaign["id"], v["id"], "late"]).fetchone()["id"]
        assert late > early
        in_database(database_url, lambda conn: outbox.fan_out(conn, settings))
        time.sleep(0.8)  # the service's worker has looked too
        published = db.execute(
            "SELECT source FROM webhook_messages WHERE source = ANY(%s)", [[f"event:{early}", f"event:{late}"]]
        ).fetchall()
        assert published == []  # the later one waits behind the running transaction
        slow.commit()
    receiver.wait_for(lambda rc: len(rc.accepted()) == 2, what="both events")
    assert sorted(req.payload["data"]["reason"] for req in receiver.received) == ["early", "late"]


@pytest.fixture
def database_without_endpoints() -> Iterator[str]:
    yield from own_database("no_endpoints")  # the suite's holds other tests' endpoints


def test_with_no_endpoint_enabled_the_cursor_passes_the_history_at_once(database_without_endpoints, settings):
    """A service started on a long history whose merchants have no webhooks does not read it BATCH
    events at a time to publish nothing: one call passes all of it, but never an event of a transaction
    still running. Once an endpoint is enabled, events are read (and offered to it) again."""
    url = make_url(database_without_endpoints).set(drivername="postgresql").render_as_string(hide_password=False)
    insert = (
        "INSERT INTO events (type, user_id, reason) "
        "SELECT 'redemption_voided', 'someone', %s FROM generate_series(1, %s)"
    )

    def fan_out() -> int:
        return in_database(database_without_endpoints, lambda conn: outbox.fan_out(conn, settings))

    with psycopg.connect(url, autocommit=True) as conn:
        history = conn.execute(insert + " RETURNING id", ["old", 3 * outbox.BATCH]).fetchall()
        with psycopg.connect(url) as slow:
            running = slow.execute(insert + " RETURNING id", ["running", 1]).fetchone()[0]
            conn.execute(insert, ["after", 1])  # committed, behind the running one
            assert fan_out() == 0
            assert cursor(conn) == max(row[0] for row in history)
            slow.commit()
        assert fan_out() == 0
        assert cursor(conn) == running + 1
        assert conn.execute("SELECT count(*) FROM webhook_messages").fetchone()[0] == 0

        merchant = conn.execute("INSERT INTO merchants (name) VALUES ('Shop') RETURNING id").fetchone()[0]
        conn.execute(
            "INSERT INTO webhook_endpoints (merchant_id, url, event_types, secret) "
            "VALUES (%s, 'https://example.com/hook', '{redemption_voided}', 'whsec_x')",
            [merchant],
        )
        conn.execute(insert, ["with an endpoint", 2])
        assert fan_out() == 2  # read as before (no merchant of theirs: nothing published)
        assert cursor(conn) == running + 3


def cursor(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT event_id FROM webhook_outbox_cursor").fetchone()[0]


def test_feedback_and_customer_messages_arrive_with_their_texts(world, receiver, shop):
    m, v, _ = shop
    endpoint = hook(world, m, receiver.url, ["feedback_received", "message_received"])
    sub, unlock = unlock_at(world, v)
    customer = world.user(sub)
    r = world.http.post(
        f"/v1/unlocks/{unlock['unlock_id']}/messages", json={"body": "Open on Sunday?"}, headers=customer
    )
    assert r.status_code == 201, r.text
    r = world.http.post("/v1/redemptions", json={"code": unlock["code"], "venue_id": v["id"]}, headers=m.staff)
    assert r.status_code == 201, r.text
    feedback = {"rating": 6, "comment": "Lovely bun"}
    r = world.http.post(f"/v1/unlocks/{unlock['unlock_id']}/feedback", json=feedback, headers=customer)
    assert r.status_code == 201, r.text
    given = r.json()

    receiver.wait_for(lambda rc: len(rc.accepted()) == 2, what="the message and the feedback")
    time.sleep(0.5)  # the feedback's comment is a message too, but not a second event
    payloads = {p["type"]: p["data"] for p in (verified(endpoint["secret"], req) for req in receiver.received)}
    assert len(receiver.received) == 2
    assert payloads["message_received"]["body"] == "Open on Sunday?"
    assert payloads["message_received"]["unlock_id"] == unlock["unlock_id"]
    assert payloads["feedback_received"]["feedback_id"] == given["id"]
    assert (payloads["feedback_received"]["rating"], payloads["feedback_received"]["comment"]) == (6, "Lovely bun")
    assert payloads["feedback_received"]["customer"] == payloads["message_received"]["customer"]
    assert all(sub not in req.body.decode() for req in receiver.received)
