"""The check-in's hot path made cheaper without giving anything up: verified tokens remembered only
until they expire (and never a token that failed a check), answered check-ins' in-flight locks freed
off the latency path while a retry after the answer still gets the stored answer, never a 409."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.datastructures import Headers

from api.deps import authenticate
from core import auth
from core.errors import Unauthorized
from core.redis import RedisState
from offers import checkin
from tests.factories import offer_body


@pytest.fixture
def hs256(settings):
    """The test deployment's settings without leeway, so that exp is exp to the second."""
    assert settings.jwt_secret, "the test deployment signs with an HS256 secret"
    auth.forget_verified_tokens()
    yield settings.model_copy(update={"jwt_leeway_s": 0})
    auth.forget_verified_tokens()


def token(settings, *, secret: str | None = None, ttl_s: int = 60, iat: int | None = None, **claims) -> str:
    now = int(time.time()) if iat is None else iat
    payload = {
        "sub": f"user-{uuid.uuid4().hex[:12]}",
        "role": "app_user",
        "iat": now,
        "exp": now + ttl_s,
        "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer,
    } | claims
    return jwt.encode(payload, secret or settings.jwt_secret, algorithm="HS256")


def remembered(t: str) -> bool:
    return auth._verified_digest(t) in auth._verified


def test_a_verified_token_is_remembered_and_not_checked_again(hs256, monkeypatch):
    t = token(hs256)
    first = auth.verify_token(t, hs256)
    assert remembered(t)

    def no_second_check(*_args, **_kwargs):
        raise AssertionError("a remembered token was verified again")

    monkeypatch.setattr(auth.jwt, "decode", no_second_check)
    assert auth.verify_token(t, hs256) is first


def test_a_remembered_token_is_refused_once_it_expires(hs256):
    t = token(hs256, ttl_s=1)
    auth.verify_token(t, hs256)
    assert remembered(t)
    time.sleep(1.2)
    with pytest.raises(Unauthorized):
        auth.verify_token(t, hs256)


def test_a_token_is_remembered_no_longer_than_the_short_trust(hs256, monkeypatch):
    t = token(hs256, ttl_s=3600)
    auth.verify_token(t, hs256)
    until = auth._verified[auth._verified_digest(t)][1]
    assert until <= time.time() + auth.VERIFIED_FOR_S


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"secret": "not-the-secret-of-this-deployment-0123456789abcdef"}, id="bad signature"),
        pytest.param({"ttl_s": 10 * 24 * 3600}, id="lifetime over the maximum"),
        pytest.param({"aud": "someone-else"}, id="another audience"),
        pytest.param({"role": "nobody"}, id="unknown role"),
        pytest.param({"ttl_s": -60}, id="expired"),
    ],
)
def test_a_token_that_fails_a_check_is_never_remembered(hs256, bad):
    t = token(hs256, **bad)
    for _ in range(2):  # refused again: nothing was remembered the first time
        with pytest.raises(Unauthorized):
            auth.verify_token(t, hs256)
    assert not remembered(t)


def test_a_token_remembered_under_other_settings_is_checked_again(hs256):
    t = token(hs256)
    auth.verify_token(t, hs256)
    stricter = hs256.model_copy(update={"jwt_audience": "another-audience"})
    with pytest.raises(Unauthorized):
        auth.verify_token(t, stricter)


def test_the_memory_of_tokens_is_bounded(hs256, monkeypatch):
    monkeypatch.setattr(auth, "VERIFIED_MAX", 3)
    tokens = [token(hs256) for _ in range(5)]
    for t in tokens:
        auth.verify_token(t, hs256)
    assert len(auth._verified) == 3
    assert [remembered(t) for t in tokens] == [False, False, True, True, True]  # the oldest went first


# In-flight locks


@pytest.fixture
def venue(world) -> dict:
    m = world.merchant()
    v = world.venue(m)
    world.campaign(m, [v["id"]], [offer_body(total_limit=1)])
    return v


def _post(world, user, venue, key):
    body = {
        "lon": venue["center"][0],
        "lat": venue["center"][1],
        "accuracy_m": 10,
        "observed_at": datetime.now(UTC).isoformat(),
    }
    return world.http.post("/v1/checkins", json=body, headers={**user, "Idempotency-Key": key}), body


def test_a_retry_that_meets_a_lock_not_yet_freed_gets_the_stored_answer(world, venue, redis_url):
    """The lock of an answered check-in is freed a moment after the answer: a client that lost its
    201 and retries at once gets the stored answer, not 409. Here the lock is held on purpose."""
    sub = f"user-{uuid.uuid4().hex[:12]}"
    user, key = world.user(sub), str(uuid.uuid4())
    first, body = _post(world, user, venue, key)
    assert first.status_code == 201, first.text
    lock = checkin._keys(sub, key)[0]
    client = sync_redis.Redis.from_url(redis_url)
    try:
        client.set(lock, "1", px=10_000)  # as if the release had not landed yet
        retry = world.http.post("/v1/checkins", json=body, headers={**user, "Idempotency-Key": key})
        assert (retry.status_code, retry.content) == (201, first.content)
        other = {**body, "accuracy_m": 12}
        reused = world.http.post("/v1/checkins", json=other, headers={**user, "Idempotency-Key": key})
        assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")
        fresh = str(uuid.uuid4())
        client.set(checkin._keys(sub, fresh)[0], "1", px=10_000)  # a key really running: no answer yet
        running = world.http.post("/v1/checkins", json=body, headers={**user, "Idempotency-Key": fresh})
        assert (running.status_code, running.json()["code"]) == (409, "idempotency_in_progress")
    finally:
        client.delete(lock, checkin._keys(sub, fresh)[0])
        client.close()


def test_an_answered_check_in_frees_its_lock_soon(world, venue, redis_url):
    sub = f"user-{uuid.uuid4().hex[:12]}"
    key = str(uuid.uuid4())
    answer, _ = _post(world, world.user(sub), venue, key)
    assert answer.status_code == 201, answer.text
    client = sync_redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 5
        while client.exists(checkin._keys(sub, key)[0]):
            assert time.monotonic() < deadline, "the lock of an answered check-in was not freed"
            time.sleep(0.01)
    finally:
        client.close()


def test_keys_handed_over_together_go_in_one_command(redis_url):
    async def scenario() -> tuple[int, int]:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        state = RedisState(client)
        keys = [f"test:delete-soon:{uuid.uuid4()}" for _ in range(3)]
        for key in keys:
            await client.set(key, "1", px=10_000)
        commands = []
        real_delete = client.delete

        async def counting_delete(*names: str) -> int:
            commands.append(names)
            return await real_delete(*names)

        client.delete = counting_delete  # type: ignore[method-assign]
        for key in keys:
            state.delete_soon(key)
        assert state._deleting is not None
        await state._deleting
        left = await client.exists(*keys)
        await client.aclose()
        return len(commands), left

    assert asyncio.run(scenario()) == (1, 0)


# The fingerprint a replay is compared on


def _fingerprint_as_stored_before(req: checkin.CheckinRequest) -> str:
    """The formula keys stored before this change were fingerprinted with: a replay across a deploy
    must still match."""
    payload = dataclasses.asdict(req) | {
        "observed_at": req.observed_at.astimezone(UTC).isoformat(),
        "venue_id": str(req.venue_id) if req.venue_id else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"venue_id": uuid.UUID(int=7), "device_id": "device-1", "mocked": False},
        {"mocked": True, "observed_at": datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=timezone(timedelta(hours=-5)))},
    ],
)
def test_the_fingerprint_is_the_one_stored_keys_were_made_with(extra):
    req = checkin.CheckinRequest(
        **({"lat": 59.91, "lon": 10.75, "accuracy_m": 12.5, "observed_at": datetime.now(UTC)} | extra)
    )
    assert req.fingerprint() == _fingerprint_as_stored_before(req)


def test_the_fingerprint_covers_every_field():
    """A field added to CheckinRequest must be added to its fingerprint by hand too."""
    assert {f.name for f in dataclasses.fields(checkin.CheckinRequest)} == {
        "lat",
        "lon",
        "accuracy_m",
        "observed_at",
        "venue_id",
        "device_id",
        "mocked",
    }


def test_with_a_key_set_a_remembered_token_needs_no_key_set_and_a_new_one_does(hs256):
    """A JWKS deployment verifies in the thread pool (a key-set fetch is network I/O); a token it
    verified already is answered on the event loop, without the key set, until it expires."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())) | {"kid": "k1", "use": "sig"}
    body = json.dumps({"keys": [jwk]}).encode()

    class KeySet(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), KeySet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/jwks.json"
    settings = hs256.model_copy(update={"jwt_secret": None, "jwks_url": url, "jwt_algorithm": "RS256"})
    now = int(time.time())
    claims = {"role": "app_user", "iat": now, "exp": now + 60, "aud": settings.jwt_audience, "iss": settings.jwt_issuer}

    def signed(sub: str) -> str:
        return jwt.encode(claims | {"sub": sub}, key, algorithm="RS256", headers={"kid": "k1"})

    first, second = signed("user-a"), signed("user-b")
    try:
        principal = asyncio.run(authenticate(Headers({"authorization": f"Bearer {first}"}), settings))
        assert principal.sub == "user-a"
    finally:
        server.shutdown()
        server.server_close()
    auth._jwks_client.cache_clear()  # no cached key set either: only the remembered token can answer
    again = asyncio.run(authenticate(Headers({"authorization": f"Bearer {first}"}), settings))
    assert again == principal
    with pytest.raises(Unauthorized):  # not verified before, and the key set is gone
        asyncio.run(authenticate(Headers({"authorization": f"Bearer {second}"}), settings))
