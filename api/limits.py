"""Request size limits: the body (413) and the request head (431), enforced before anything parses them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.problems import error_response, problem_response
from core.errors import PayloadTooLarge
from core.settings import get_settings

# The unread rest of the body would be taken for the next request on a kept-alive connection.
CLOSE = {"Connection": "close"}


class BodySizeLimit:
    """413 when Content-Length says too much, or when a streamed (chunked) body grows past the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"request bodies are limited to {self.max_bytes} bytes"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            # Middleware runs outside the app's exception handlers: render the error here.
            await error_response(PayloadTooLarge(detail, headers=CLOSE))(scope, receive, send)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException passes through FastAPI's body parsing (anything else becomes
                    # a 400) and is rendered as problem+json by the app's handler.
                    raise HTTPException(413, detail, headers=CLOSE)
            return message

        await self.app(scope, limited_receive, send)


# --- request head size ---------------------------------------------------------------------------
#
# Two layers, because neither alone is enough:
# - HeaderSizeLimit, an ASGI middleware, applies the rule (431 past CHECKIN_MAX_HEADER_BYTES) under any
#   server, but only once the server has received the whole head.
# - HttpToolsWithHeadLimit, the protocol `checkin-offers serve` runs, bounds the memory: httptools
#   (llhttp) has no limit of its own and appends each piece of a header to a bytes object until the
#   header ends, so one endless header would grow the process without bound before any app runs.

# The raw head also holds the method, the HTTP version and whitespace, which the rule leaves out.
REQUEST_LINE_ALLOWANCE = 1024
# After refusing a head, keep reading (and dropping) what the client still sends this long before
# closing: closing with unread data makes the kernel send a reset, which can destroy the 431 before
# the client reads it.
LINGER_S = 2.0


def head_size(target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> int:
    """The size the limit applies to: the request target plus every header line, `name: value\\r\\n`."""
    return len(target) + sum(len(name) + len(value) + 4 for name, value in headers)


def header_fields_too_large(max_bytes: int, *, instance: str | None = None) -> JSONResponse:
    return problem_response(
        431,
        "request_header_fields_too_large",
        "Request header fields too large",
        f"the request target and header lines are limited to {max_bytes} bytes",
        instance=instance,
        headers=CLOSE,
    )


class HeaderSizeLimit:
    """431 when the request target and header lines exceed the limit, before the app does any work."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            target = scope.get("raw_path") or scope["path"].encode()
            if scope["query_string"]:
                target += b"?" + scope["query_string"]
            if head_size(target, scope["headers"]) > self.max_bytes:
                await header_fields_too_large(self.max_bytes, instance=scope["path"])(scope, receive, send)
                return
        await self.app(scope, receive, send)


class HttpToolsWithHeadLimit(HttpToolsProtocol):
    """uvicorn's httptools protocol that stops reading a request head once it is clearly over the
    limit, answering 431 (the same problem the middleware answers) and closing the connection.

    Only a head still incomplete after a read is counted here, in raw bytes: a head that arrives
    whole is left to HeaderSizeLimit, so the rule is the same under every server, and this layer
    holds at most the limit plus one read (uvicorn reads at most 256 KiB at a time) per connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes = get_settings().max_header_bytes
        self._message_open = False  # between the start of a request and the end of its body
        self._head_open = False  # between the start of a request and the end of its head
        self._head_began_in_this_read = False
        self._head_bytes = 0
        self._refused = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._message_open = self._head_open = self._head_began_in_this_read = True

    def on_headers_complete(self) -> None:
        self._head_open = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._message_open = False
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: drop what the client still sends
        read_began_between_messages = not self._message_open
        self._head_began_in_this_read = False
        super().data_received(data)
        if not self._head_open or self.transport.is_closing():
            return
        if not self._head_began_in_this_read:
            self._head_bytes += len(data)
        else:
            # A read that began inside the previous message (pipelining) starts with that message's end.
            self._head_bytes = len(data) if read_began_between_messages else 0
        if self._head_bytes > self.max_header_bytes + REQUEST_LINE_ALLOWANCE:
            self._refuse()

    def _refuse(self) -> None:
        self._refused = True
        self.parser = None  # type: ignore[assignment]  # frees the partial head
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined response is still being written: a 431 cannot go before it.
            self.transport.close()
            return
        response = header_fields_too_large(self.max_header_bytes)
        head = [b"HTTP/1.1 431 Request Header Fields Too Large\r\n"]
        head += [name + b": " + value + b"\r\n" for name, value in response.raw_headers]
        self.transport.write(b"".join(head) + b"\r\n" + bytes(response.body))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()
