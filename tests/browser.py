"""Console tests in a real headless Chromium (Debian's package, driven by Playwright).

`console` opens pages as a signed-in merchant user and fails the test on any console error,
failed request or request that leaves 127.0.0.1; `screenshot` saves a page under
tests/artifacts/screenshots/ for people to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parent / "artifacts" / "screenshots"


# Per module, not per session: Playwright's sync API runs an event loop on the main thread while
# it is open, and tests elsewhere that call asyncio.run() must not find one running.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the console tests drive Debian's chromium package. Run scripts/setup.sh "
            "as root (it installs it), or `apt-get install chromium`; never `playwright install`.",
            pytrace=False,
        )

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@dataclass
class Trouble:
    """What a page did wrong: each list must stay empty."""

    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        page.on("requestfailed", lambda r: self.failed_requests.append(f"{r.method} {r.url}: {r.failure}"))
        page.on("request", self._local_only)

    def _local_only(self, request: Any) -> None:
        url = request.url
        if urlsplit(url).scheme in ("http", "https", "ws", "wss") and urlsplit(url).hostname != "127.0.0.1":
            self.foreign_requests.append(url)


class Console:
    """Browser contexts signed in as one role of one merchant (the session cookie is the token)."""

    def __init__(self, chromium: Any, base_url: str, world: Any) -> None:
        self.chromium, self.base_url, self.world = chromium, base_url, world
        self.trouble = Trouble()
        self._contexts: list[Any] = []

    def page(self, headers: dict[str, str] | None = None) -> Any:
        """A new page; signed in when given a role's Authorization headers (from world.merchant())."""
        context = self.chromium.new_context(base_url=self.base_url, viewport={"width": 1280, "height": 900})
        self._contexts.append(context)
        if headers is not None:
            token = headers["Authorization"].removeprefix("Bearer ")
            context.add_cookies([{"name": "checkin_session", "value": token, "url": self.base_url}])
        page = context.new_page()
        self.trouble.watch(page)
        return page

    def close(self) -> None:
        for context in self._contexts:
            context.close()


@pytest.fixture
def console(chromium: Any, base_url: str, world: Any) -> Iterator[Console]:
    session = Console(chromium, base_url, world)
    yield session
    session.close()
    assert session.trouble == Trouble(), f"the pages misbehaved: {session.trouble}"


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
