"""Playwright fixtures for browser tests: Debian's Chromium against pytest-django's live_server.

Fixtures for every browser test (mark the test `@pytest.mark.browser`):
- `live_url`: the live server's base URL ("http://localhost:PORT"), database shared (transactional).
- `browser`: one Chromium for the whole run.
- `new_page(username=None, *, reviewer=True, staff=False, javascript=True)`: a page in a fresh
  browser context (own cookies), signed in as a new user (password `tests.users.PASSWORD`) when
  `username` is given; call it twice for two people; `javascript=False` for the plain-form path.
- `page`: a page signed in as "dana", a member of Reviewers.
- `dialogs`: every JavaScript dialog any of those pages opened (dismissed at once).
- `page_errors`: uncaught script errors and console errors (CSP violations included).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.users import PASSWORD, make_user

# Playwright's sync API runs an event loop in this thread; the test still talks to the
# database directly, which Django forbids in a thread with a running loop unless told.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}
# Playwright's own waits: a page of ours answers in well under this.
TIMEOUT_MS = 10_000


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def live_url(live_server) -> str:
    return live_server.url


@pytest.fixture
def dialogs() -> list[str]:
    return []


@pytest.fixture
def page_errors() -> list[str]:
    return []


def sign_in(page: Page, live_url: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{live_url}/accounts/login/?next=/queue/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_url}/queue/")


@pytest.fixture
def new_page(
    browser: Browser, live_url: str, transactional_db, dialogs, page_errors
) -> Iterator[Callable[..., Page]]:
    contexts = []

    def open_page(
        username: str | None = None,
        *,
        reviewer: bool = True,
        staff: bool = False,
        javascript: bool = True,
    ) -> Page:
        context = browser.new_context(
            viewport=VIEWPORT, locale="en-GB", java_script_enabled=javascript
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()

        def on_dialog(dialog):
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        page.on(
            "console",
            lambda message: page_errors.append(message.text) if message.type == "error" else None,
        )
        if username:
            make_user(username, reviewer=reviewer, staff=staff)
            sign_in(page, live_url, username)
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page) -> Page:
    """Signed in as "dana", a reviewer, on the queue."""
    return new_page("dana")


expect.set_options(timeout=TIMEOUT_MS)
