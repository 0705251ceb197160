"""The `checkin-offers` command: serve, worker, purge, migrate, function-revision, token, seed-demo, simulate,
openapi."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def _metrics_across_workers(workers: int) -> Iterator[None]:
    """With several worker processes, prometheus-client's multiprocess mode (core/metrics.py): each
    worker writes its metrics to files in PROMETHEUS_MULTIPROC_DIR and a scrape, whichever worker
    answers it, adds them all up. The directory must start empty, or a restart would carry the last
    run's counts on: `serve` makes a fresh one and removes it when it stops; a directory the
    operator set is emptied of metric files first."""
    preset = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if preset:
        Path(preset).mkdir(parents=True, exist_ok=True)
        for stale in Path(preset).glob("*.db"):
            stale.unlink()
        yield
        return
    if workers <= 1:
        yield  # one process keeps its metrics in memory
        return
    directory = tempfile.mkdtemp(prefix="checkin-offers-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory  # set before the workers start and import it
    try:
        yield
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(directory, ignore_errors=True)


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from core.logs import logging_config
    from core.settings import get_settings

    level = get_settings().log_level  # also refuses unsafe settings here, before any worker starts
    with _metrics_across_workers(args.workers):
        uvicorn.run(
            "api.main:app",
            host=args.host,
            port=args.port,
            workers=args.workers,
            loop="uvloop",
            # httptools with a bound on the request head (httptools has none of its own): api/limits.py.
            http="api.limits:HttpToolsWithHeadLimit",
            # JSON lines on stdout, one per request written by api/observability.py instead of
            # uvicorn's access log, which would log the raw path and query string.
            log_config=logging_config(level),
            access_log=False,
            log_level=level,
            proxy_headers=False,
        )


def _worker(_: argparse.Namespace) -> None:
    import asyncio
    import contextlib
    import logging.config

    from core.logs import logging_config
    from core.settings import get_settings
    from offers.webhooks.worker import lead_when_possible

    settings = get_settings()
    logging.config.dictConfig(logging_config(settings.log_level))
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: its connection closes, another process leads
        asyncio.run(lead_when_possible(settings))


def _purge(_: argparse.Namespace) -> None:
    import asyncio

    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from core.settings import get_settings
    from offers.privacy.retention import purge_positions

    settings = get_settings()

    def progress(purged: int) -> None:
        print(f"purged {purged} check-ins so far", flush=True)

    async def purge() -> int:
        engine = create_async_engine(settings.database_url, poolclass=NullPool, hide_parameters=True)
        try:
            async with engine.connect() as conn:
                return await purge_positions(conn, settings, progress)
        finally:
            await engine.dispose()

    purged = asyncio.run(purge())
    print(
        f"purged the position and device id of {purged} check-ins (accepted after "
        f"{settings.raw_location_days} days, rejected after {settings.fraud_review_days})"
    )


def _migrate(_: argparse.Namespace) -> None:
    from core.migrate import head_revision, migrate
    from core.settings import get_settings

    migrate(get_settings().database_url)
    print(f"database migrated to {head_revision()}")


def _function_revision(args: argparse.Namespace) -> None:
    from core.sql_functions import new_revision

    path = new_revision(args.message)
    print(f"wrote {path}" if path else "no function source changed since the head revision: nothing to write")


def _token(args: argparse.Namespace) -> None:
    from core.auth import mint_token
    from core.settings import get_settings

    print(mint_token(get_settings(), sub=args.sub, role=args.role, merchant_id=args.merchant_id, ttl_s=args.ttl))


def _seed_demo(args: argparse.Namespace) -> None:
    from checkin_offers.demo import seed_demo

    seed_demo(with_activity=args.with_activity, base_url=args.base_url)


def _simulate(args: argparse.Namespace) -> None:
    from checkin_offers.simulate import main as simulate

    simulate(args)


def _openapi(_: argparse.Namespace) -> None:
    from api.main import app

    json.dump(app.openapi(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="checkin-offers", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("CHECKIN_WORKERS", "1")),
        help="processes; one per core in production (default 1, or CHECKIN_WORKERS)",
    )
    serve.set_defaults(run=_serve)

    commands.add_parser(
        "worker",
        help="deliver webhooks (the worker `serve` also runs: one process leads at a time; "
        "set CHECKIN_WEBHOOK_WORKER=false on the API to leave it to this)",
    ).set_defaults(run=_worker)

    commands.add_parser(
        "purge",
        help="remove positions and device ids of check-ins past their retention, in batches, and exit "
        "(for cron; `serve` also runs it hourly unless CHECKIN_PRIVACY_PURGE=false)",
    ).set_defaults(run=_purge)

    commands.add_parser("migrate", help="create the database if missing and migrate it to head").set_defaults(
        run=_migrate
    )

    revision = commands.add_parser(
        "function-revision",
        help="write a migration that installs the function sources changed since head (pinned copies)",
    )
    revision.add_argument("-m", "--message", required=True, help="why the functions change")
    revision.set_defaults(run=_function_revision)

    token = commands.add_parser("token", help="print a development token (needs CHECKIN_JWT_SECRET)")
    token.add_argument(
        "--role", required=True, choices=["app_user", "merchant_staff", "merchant_admin", "marketer", "platform_admin"]
    )
    token.add_argument("--sub", required=True)
    token.add_argument("--merchant-id")
    token.add_argument("--ttl", type=int, default=3600, help="seconds")
    token.set_defaults(run=_token)

    seed = commands.add_parser("seed-demo", help="demo merchants, venues and campaigns in Oslo and Copenhagen")
    seed.add_argument(
        "--with-activity",
        action="store_true",
        help="when the demo has no check-ins yet, add a few days of simulated history "
        "(through the SDK, against a server this command starts and stops itself)",
    )
    seed.add_argument(
        "--base-url", default="http://127.0.0.1:8000", help="where the service will be served, for the printed examples"
    )
    seed.set_defaults(run=_seed_demo)

    simulate = commands.add_parser(
        "simulate",
        help="drive realistic traffic through the SDK (see its --help)",
        description="Drive a few days of demo history through the SDK against a running, "
        "seeded server, back-dated: the server must accept fixes that old "
        "(CHECKIN_MAX_FIX_AGE_S; see checkin_offers/simulate.py).",
    )
    simulate.add_argument("--base-url", default="http://127.0.0.1:8000")
    simulate.add_argument("--users", type=int, default=200)
    simulate.add_argument(
        "--history-days", type=int, default=3, help="the check-ins were observed over this many past days"
    )
    simulate.add_argument("--seed", type=int, default=7)
    simulate.add_argument("--spoofers", type=int, help="users who fake their location (default: users / 20)")
    simulate.add_argument(
        "--lift", type=float, default=0.15, help="true effect: extra return probability of the treatment arm"
    )
    simulate.add_argument("--return-rate", type=float, default=0.30, help="return probability of the control arm")
    simulate.add_argument("--offline-share", type=float, default=0.15, help="share of users with flaky networks")
    simulate.add_argument("--redeem-share", type=float, default=0.6, help="share of unlocked codes redeemed")
    simulate.add_argument("--concurrency", type=int, default=16, help="requests in flight at most")
    simulate.set_defaults(run=_simulate)

    commands.add_parser("openapi", help="print the OpenAPI document").set_defaults(run=_openapi)

    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (RuntimeError, ValueError) as exc:
        parser.exit(2, f"checkin-offers {args.command}: {exc}\n")


if __name__ == "__main__":
    main()
