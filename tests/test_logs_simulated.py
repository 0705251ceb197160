"""A whole simulated run (checkin_offers/simulate.py: check-ins, unlocks, offline replays, spoofers,
redemptions through the SDK) logged as `serve --log-level debug` would log it: not one line holds a
token, an offer code or a position finer than 3 decimals, whichever logger wrote it (the service's
own, uvicorn's, SQLAlchemy's, asyncio's...)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from datetime import UTC, datetime

import pytest
from rich.console import Console

import checkin_offers.simulate as simulate_module
from checkin_offers.demo import MERCHANTS
from checkin_offers.simulate import Options, required_fix_age_s, simulate
from core.logs import json_handler, logging_config
from tests.test_demo_and_simulation import _seed_demo

DEMO_IDS = [m.id for m in MERCHANTS]
# Any decimal number with 4 or more decimals: a position finer than about 10 m.
FINE_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}\.\d{4,}")
# The demo's cities (Oslo, Copenhagen) with a wide margin: a fine number in here is a position.
CITIES_LAT, CITIES_LON = (54.0, 61.5), (9.0, 14.0)


@pytest.fixture
def debug_logs(monkeypatch):
    """Every logger as `serve` sets them up at debug (core/logs.py, logging_config), into one stream.
    The server runs in this process, in a thread: the root handler sees everything it logs. The
    HTTP client's loggers are left out: they are the phones and tills of the simulation, not the
    service."""
    stream = io.StringIO()
    handler = json_handler(stream)
    handler.addFilter(lambda record: not record.name.startswith(("httpx", "httpcore")))
    config = logging_config("debug")
    touched = {name: logging.getLogger(name).level for name in ["", *config["loggers"], "sqlalchemy", "asyncio"]}
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(config["root"]["level"])
    for name, wanted in config["loggers"].items():
        if "level" in wanted:
            logging.getLogger(name).setLevel(wanted["level"])
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        for name, level in touched.items():
            logging.getLogger(name).setLevel(level)


def test_a_simulated_run_logs_no_token_code_or_position(base_url, settings, monkeypatch, db, http, debug_logs):
    _seed_demo()  # idempotent: the demo merchants the simulator drives
    tokens: list[str] = []
    mint = simulate_module.mint_token

    def minting(*args, **kwargs):
        token = mint(*args, **kwargs)
        tokens.append(token)
        return token

    monkeypatch.setattr(simulate_module, "mint_token", minting)
    options = Options(
        base_url=base_url,
        users=12,
        history_days=1,
        seed=5,
        spoofers=2,
        offline_share=0.3,
        redeem_share=0.9,
        concurrency=4,
    )
    monkeypatch.setattr(settings, "max_fix_age_s", required_fix_age_s(options.history_days))
    started = datetime.now(UTC)

    asyncio.run(simulate(options, Console(file=io.StringIO(), width=140)))

    # The till's look-up carries a code in its path: once for one of the run's codes, at debug too.
    looked_up = db.execute(
        "SELECT code, venue_id, merchant_id FROM unlocks WHERE merchant_id = ANY(%s) AND user_id LIKE 'sim-%%' "
        "ORDER BY unlocked_at DESC LIMIT 1",
        (DEMO_IDS,),
    ).fetchone()
    staff = minting(settings, sub="till-of-the-log-test", role="merchant_staff", merchant_id=looked_up["merchant_id"])
    r = http.get(
        f"/v1/codes/{looked_up['code']}",
        params={"venue_id": str(looked_up["venue_id"])},
        headers={"Authorization": f"Bearer {staff}"},
    )
    assert r.status_code == 200, r.text

    codes = [
        row["code"]
        for row in db.execute(
            "SELECT code FROM unlocks WHERE merchant_id = ANY(%s) AND user_id LIKE 'sim-%%'", (DEMO_IDS,)
        ).fetchall()
    ]
    fixes = db.execute(
        "SELECT lon, lat FROM checkins WHERE user_id LIKE 'sim-%%' AND received_at >= %s AND lon IS NOT NULL",
        (started,),
    ).fetchall()
    redeemed = db.execute(
        "SELECT count(*) AS n FROM redemptions WHERE merchant_id = ANY(%s) AND redeemed_at >= %s", (DEMO_IDS, started)
    ).fetchone()["n"]
    assert tokens and codes and fixes and redeemed, (len(tokens), len(codes), len(fixes), redeemed)

    lines = debug_logs.getvalue().splitlines()
    assert len(lines) > 100  # the run was logged, at debug
    loggers = {re.search(r'"logger": "([^"]+)"', line)[1] for line in lines}
    assert {"api.access", "sqlalchemy.engine.Engine"} <= loggers, loggers  # SQL statements at debug
    text = debug_logs.getvalue()
    for token in tokens:
        assert token not in text and token.split(".")[2] not in text
    for code in codes:
        for form in (code, code.replace("-", ""), code.lower()):
            assert form not in text, form
    for fix in fixes:
        for value in (fix["lon"], fix["lat"]):
            assert repr(value) not in text and f"{value:.4f}" not in text, value
    for line in lines:
        logged = json.loads(line)
        del logged["time"]  # its seconds (12:04:54.641828) are no position
        for number in FINE_NUMBER.findall(json.dumps(logged)):
            value = abs(float(number))
            in_cities = CITIES_LAT[0] <= value <= CITIES_LAT[1] or CITIES_LON[0] <= value <= CITIES_LON[1]
            assert not in_cities, line
