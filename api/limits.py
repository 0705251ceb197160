"""Request body size limit, enforced before anything parses the body."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import error_response
from core.errors import PayloadTooLarge

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
