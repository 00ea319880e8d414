"""A chat's mode set from the card's menu in a real browser: the htmx swap, the badge, and
the plain-form path without JavaScript."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import Page, expect

from statecore import chat_modes
from statecore.models import Message, Mode
from tests.factories import make_incoming, make_reply

pytestmark = pytest.mark.browser

NUMBER = "923001112222"


def card(page: Page, msg: Message):
    return page.locator(f"#card-{msg.pk}")


def set_off_from_the_menu(page: Page, draft: Message) -> None:
    menu = card(page, draft).locator(".chat-mode-menu")
    menu.locator("summary").click()
    menu.get_by_label("Off: the assistant is not asked, drafts are rejected").check()
    menu.get_by_role("button", name="Set the chat's mode").click()


def test_a_reviewer_puts_a_chat_off_from_its_card(new_page, live_url, page_errors):
    draft = make_reply(incoming=make_incoming(number=NUMBER, name="Noisy group"))
    page = new_page("dana")
    page.goto(f"{live_url}/queue/")
    expect(card(page, draft).locator(".tag-mode")).to_have_count(0)

    set_off_from_the_menu(page, draft)

    expect(card(page, draft).locator(".tag-mode")).to_have_text("Chat mode: off")
    assert chat_modes.mode_of(NUMBER) == Mode.OFF
    # The card was swapped in place and its draft still waits for a decision.
    expect(card(page, draft).get_by_role("button", name="Approve")).to_be_visible()
    if os.environ.get("SCREENSHOT_DIR"):
        card(page, draft).locator("summary").click()
        card(page, draft).screenshot(path=f"{os.environ['SCREENSHOT_DIR']}/chat-mode-card.png")
    assert page_errors == []


def test_without_javascript_the_menu_posts_and_comes_back(new_page, live_url):
    draft = make_reply(incoming=make_incoming(number=NUMBER))
    page = new_page("dana", javascript=False)
    page.goto(f"{live_url}/queue/")

    set_off_from_the_menu(page, draft)

    expect(page).to_have_url(f"{live_url}/queue/")
    expect(page.get_by_text(f"The chat +{NUMBER} is now on off")).to_be_visible()
    expect(card(page, draft).locator(".tag-mode")).to_have_text("Chat mode: off")
