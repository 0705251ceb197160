"""The API process killed in the middle of webhook deliveries loses no event: `checkin-offers serve`
runs as a process of its own on a database of its own, is SIGKILLed while its worker is sending,
and started again; the receiver (127.0.0.1) ends up with every event, each with one body."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import own_database
from tests.factories import World
from tests.servers import free_port, wait_for_port
from tests.webhook_receiver import Receiver, verified

CLI = Path(sys.executable).parent / "checkin-offers"
EVENTS = 30


@pytest.fixture
def private_database() -> Iterator[str]:
    yield from own_database("webhooks_kill")


class Serve:
    """`checkin-offers serve` on a port of its own; killed by its own process id."""

    def __init__(self, database_url: str, log: Path) -> None:
        self.port = free_port()
        self.env = os.environ | {"CHECKIN_DATABASE_URL": database_url, "CHECKIN_LOG_LEVEL": "warning"}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(CLI), "serve", "--port", str(self.port)], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_for_port(self.port, 30, self.proc)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def test_the_api_killed_mid_delivery_loses_no_event(private_database, settings, tmp_path):
    receiver = Receiver()
    receiver.delay_s = 0.5  # slow, so the kill lands while attempts are in flight
    serve = Serve(private_database, tmp_path / "serve.log")
    try:
        serve.start()
        with httpx.Client(base_url=serve.url, timeout=30) as http:
            world = World(http, settings)
            m = world.merchant()
            v = world.venue(m)
            world.campaign(m, [v["id"]])
            r = http.post("/v1/webhooks", json={"url": receiver.url, "events": ["offer_unlocked"]}, headers=m.admin)
            assert r.status_code == 201, r.text
            secret = r.json()["secret"]
            unlocks = []
            for _ in range(EVENTS):
                r = world.checkin(world.user(), *v["center"])
                assert r.status_code == 201, r.text
                unlocks += r.json()["unlocked"]
        assert len(unlocks) == EVENTS

        receiver.wait_for(lambda rc: len(rc.received) >= 3, what="the first deliveries")
        serve.kill()
        at_kill = len(receiver.accepted())
        assert at_kill < EVENTS, "all were delivered before the kill: nothing was in the middle"

        serve.start()
        receiver.wait_for(lambda rc: len(rc.accepted()) == EVENTS, timeout_s=90, what="every event after the restart")
    finally:
        serve.kill()
        receiver.close()

    by_id = receiver.by_id()
    assert len(by_id) == EVENTS
    for requests in by_id.values():
        assert len({request.body for request in requests}) == 1, "every attempt of one event has the same body"
        for request in requests:
            verified(secret, request)
    delivered = {verified(secret, requests[0])["data"]["unlock_id"] for requests in by_id.values()}
    assert delivered == {unlock["unlock_id"] for unlock in unlocks}
