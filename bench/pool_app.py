"""The API with the pool's checkout check of core/db.py chosen by BENCH_CHECKOUT_CHECK ("socket",
"ping" or "none"), for bench/pool_check.py. Imported by each worker process, so every worker's
engine is made with it."""

import os
from functools import partial

import core.db

core.db.make_engine = partial(core.db.make_engine, checkout_check=os.environ["BENCH_CHECKOUT_CHECK"])

from api.main import app  # noqa: E402  (after the engine's maker is chosen; the engine is made at start-up)

__all__ = ["app"]
