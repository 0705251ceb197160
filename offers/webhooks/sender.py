"""One delivery attempt: a message signed per the Standard Webhooks specification, POSTed to an
address checked just before connecting.

Headers `webhook-id` (the message's stable id), `webhook-timestamp` (this attempt, in Unix
seconds) and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body` under the
endpoint's secret), made by the `standardwebhooks` package, which receivers verify with.

The host is resolved here, every address it resolves to must pass `address.refusal`, and the
request goes to the checked address with the URL's host in `Host` and in TLS SNI (so the
certificate is still verified for the name). Redirects are not followed, the whole attempt has
10 s, and at most 64 KiB of the answer is read. No connection is reused between attempts: a
pooled connection to an address would otherwise carry a request for another name.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from offers.webhooks.address import IPAddress, RefusedURL, check_url, parse_ip, refusal

TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 64 * 1024
MAX_ERROR_LENGTH = 300
USER_AGENT = "checkin-offers-webhooks/1"

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: a status code, or an error saying why there was none (or why it failed)."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


def make_client() -> httpx.AsyncClient:
    """The worker's client: no redirects, no proxy from the environment, no pooled connections."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(TIMEOUT_S),
        limits=httpx.Limits(max_keepalive_connections=0),
    )


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the host resolves to (a literal address is itself)."""
    literal = parse_ip(host)
    if literal is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = parse_ip(str(sockaddr[0]))
        if address is not None and address not in found:
            found.append(address)
    return found


def signed_headers(secret: str, webhook_id: str, body: str, at: datetime) -> dict[str, str]:
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
    }


class _Refused(Exception):
    pass


async def checked_address(url: str, *, allow_loopback: bool, resolver: Resolver) -> tuple[httpx.URL, IPAddress]:
    """The URL and the one address an attempt may connect to; _Refused when there is none."""
    try:
        parts = check_url(url, allow_loopback=allow_loopback)
    except RefusedURL as exc:
        raise _Refused(f"refused: {exc}") from None
    host = (parts.hostname or "").rstrip(".")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = await resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise _Refused(f"could not resolve {host}: {exc}") from None
    if not addresses:
        raise _Refused(f"{host} resolves to no address")
    for address in addresses:  # all of them: a mix of public and internal ones is refused
        reason = refusal(address, allow_loopback=allow_loopback)
        if reason is not None:
            raise _Refused(f"refused: {host} resolves to {reason}")
    return httpx.URL(url), addresses[0]


async def attempt(
    client: httpx.AsyncClient,
    *,
    url: str,
    secret: str,
    webhook_id: str,
    body: str,
    allow_loopback: bool,
    resolver: Resolver = resolve,
) -> Outcome:
    """Send one message once. Never raises for what the receiver or the network does."""
    started = time.monotonic()

    def done(status_code: int | None, error: str | None) -> Outcome:
        trimmed = error[:MAX_ERROR_LENGTH] if error else None
        return Outcome(status_code, trimmed, int((time.monotonic() - started) * 1000))

    try:
        async with asyncio.timeout(TIMEOUT_S):
            target, address = await checked_address(url, allow_loopback=allow_loopback, resolver=resolver)
            host = target.host
            pinned = target.copy_with(host=str(address))  # connect to the checked address, nowhere else
            headers = {
                "host": target.netloc.decode("ascii"),
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                **signed_headers(secret, webhook_id, body, datetime.now(UTC)),
            }
            extensions = {"sni_hostname": host} if target.scheme == "https" else {}
            request = client.build_request("POST", pinned, content=body.encode(), headers=headers)
            request.extensions.update(extensions)
            response = await client.send(request, stream=True)
            try:
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read >= MAX_RESPONSE_BYTES:
                        break
            finally:
                await response.aclose()
    except _Refused as exc:
        return done(None, str(exc))
    except TimeoutError:
        return done(None, f"no answer within {TIMEOUT_S:.0f} s")
    except httpx.HTTPError as exc:
        return done(None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    except OSError as exc:
        return done(None, f"{type(exc).__name__}: {exc}")
    code = response.status_code
    if 200 <= code < 300:
        return done(code, None)
    if 300 <= code < 400:
        return done(code, f"HTTP {code}: redirects are not followed")
    return done(code, f"HTTP {code}")
