"""The blocking client, on `httpx.Client`."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from ._core import (
    USER_AGENT,
    Call,
    ClientCore,
    campaign_stats_call,
    checkin_call,
    erase_me_call,
    export_call,
    nearby_call,
    redeem_call,
    wallet_call,
)
from ._exceptions import ApiError, TransportError
from ._models import (
    CheckinResult,
    NearbyVenue,
    Queued,
    Redemption,
    WalletOffer,
    WalletPage,
    new_checkin_request,
)
from ._queue import OfflineQueue, replay_settles

T = TypeVar("T")


class CheckinOffersClient(ClientCore):
    """Blocking client for the check-in offers API.

    `token_provider` is called before every request and must return the current JWT. After a
    401 it is called once more and the request is retried once, so a provider that refreshes
    expired tokens heals an expired session transparently.
    """

    def __init__(
        self,
        base_url: str,
        token_provider: Callable[[], str],
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        max_attempts: int = 5,
        queue: OfflineQueue | None = None,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(max_attempts=max_attempts, queue=queue, rng=rng)
        self._token_provider = token_provider
        self._sleep = sleep or time.sleep
        self._http = httpx.Client(
            base_url=base_url,
            transport=transport,
            timeout=timeout,
            headers={"User-Agent": USER_AGENT},
        )

    def checkin(
        self,
        lat: float,
        lon: float,
        accuracy_m: float,
        observed_at: datetime | None = None,
        venue_id: str | None = None,
        device_id: str | None = None,
        mocked: bool | None = None,
    ) -> CheckinResult:
        """Check in; `observed_at` defaults to now and must be timezone-aware."""
        request = new_checkin_request(lat, lon, accuracy_m, observed_at, venue_id, device_id, mocked)
        return self._call(checkin_call(request))

    def checkin_or_queue(
        self,
        lat: float,
        lon: float,
        accuracy_m: float,
        observed_at: datetime | None = None,
        venue_id: str | None = None,
        device_id: str | None = None,
        mocked: bool | None = None,
    ) -> CheckinResult | Queued:
        """Check in, or when the server is unreachable keep it in the queue for `replay_queue`."""
        queue = self._require_queue()
        request = new_checkin_request(lat, lon, accuracy_m, observed_at, venue_id, device_id, mocked)
        try:
            return self._call(checkin_call(request))
        except TransportError:
            return queue.add(request)

    def replay_queue(self) -> list[tuple[Queued, CheckinResult | ApiError]]:
        """Send queued check-ins oldest first; return what the server answered for each.

        Answered check-ins (accepted, rejected, or a 4xx about the check-in itself) leave the
        queue. Replay stops, keeping the rest in order, at the first one the server could not
        answer for now (unreachable, 5xx, 429, in progress, 401).
        """
        queue = self._require_queue()
        replayed: list[tuple[Queued, CheckinResult | ApiError]] = []
        for item in queue.items():
            outcome: CheckinResult | ApiError
            try:
                outcome = self._call(checkin_call(item.request))
            except TransportError:
                break
            except ApiError as error:
                if not replay_settles(error):
                    break
                outcome = error
            queue.remove(item)
            replayed.append((item, outcome))
        return replayed

    def wallet_page(self, cursor: str | None = None, limit: int | None = None) -> WalletPage:
        """One page of the wallet, newest first: pass the previous page's `next_cursor` for the
        next. `limit` is the page size (server default 50, at most 100)."""
        return self._call(wallet_call(cursor, limit))

    def iter_wallet(self, page_size: int | None = None) -> Iterator[WalletOffer]:
        """Every offer in the wallet, newest first, fetching each page when iteration reaches it."""
        cursor: str | None = None
        while True:
            page = self.wallet_page(cursor, page_size)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def wallet(self) -> list[WalletOffer]:
        """Every offer in the wallet, newest first (all pages)."""
        return list(self.iter_wallet())

    def nearby(
        self, lat: float, lon: float, radius_m: float | None = None, limit: int | None = None
    ) -> list[NearbyVenue]:
        return self._call(nearby_call(lat, lon, radius_m, limit))

    def redeem(self, code: str, venue_id: str) -> Redemption:
        return self._call(redeem_call(code, venue_id))

    def export_my_data(self) -> dict[str, Any]:
        """Everything the service holds about the signed-in person (GET /v1/me/export), as JSON."""
        return self._call(export_call())

    def erase_me(self) -> dict[str, Any]:
        """Erase everything the service holds about the signed-in person (DELETE /v1/me) and empty
        the offline queue; returns the receipt (id, requested_at, completed_at). Asking again is safe."""
        receipt = self._call(erase_me_call())
        self._forget_queue()
        return receipt

    def campaign_stats(self, campaign_id: str) -> dict[str, Any]:
        return self._call(campaign_stats_call(campaign_id))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CheckinOffersClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, call: Call[T]) -> T:
        attempts = self._attempts()
        while True:
            request = self._http.build_request(
                call.method,
                call.path,
                json=call.json,
                params=call.params,
                headers=call.headers(self._token_provider()),
            )
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                delay = attempts.after_transport_error(exc)
            else:
                wait = attempts.after_response(response)
                if wait is None:
                    return call.read(response)
                delay = wait
            if delay > 0:
                self._sleep(delay)
