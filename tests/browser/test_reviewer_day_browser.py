"""A reviewer's day in Chromium: the conversation on a card (key `c`), the tab's title
following the poll, notifications asked on a click and shown while the tab is hidden, an
overdue draft announced once, the cursor at the end of an edit, the admin's message list
at 1366 px and the queue on a 390 px phone."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission, User
from playwright.sync_api import Page, expect

from statecore import lifecycle
from statecore.models import Source, Status
from tests.conftest import ago
from tests.factories import make_incoming, make_reply
from tests.session_helpers import valid_session

pytestmark = pytest.mark.browser

# The page polls every 5 s: waits for what the poll brings allow two rounds.
POLL_WAIT_MS = 12_000
SITE = "WhatsApp approvals"

# Before any script of the page: a Notification that records what is asked of it (the
# real permission prompt cannot be clicked headless), and a visibility the test sets.
STUBS = """
window.__asked = 0;
window.__shown = [];
window.__visibility = "visible";
class FakeNotification {
  constructor(title, options) { window.__shown.push({ title: title, body: (options || {}).body, tag: (options || {}).tag }); }
  static requestPermission() {
    window.__asked += 1;
    FakeNotification.permission = "granted";
    return Promise.resolve("granted");
  }
}
FakeNotification.permission = "default";
window.Notification = FakeNotification;
Object.defineProperty(document, "visibilityState", { configurable: true, get: () => window.__visibility });
"""


def card(page: Page, msg):
    return page.locator(f"#card-{msg.pk}")


def shown_soon(page: Page, timeout_ms: int = POLL_WAIT_MS) -> list[dict]:
    """The notifications shown, once there is one (polled from here: the page's CSP
    forbids the eval that Playwright's wait_for_function needs)."""
    for _ in range(timeout_ms // 250):
        shown = page.evaluate("() => window.__shown")
        if shown:
            return shown
        page.wait_for_timeout(250)
    raise AssertionError("no notification was shown")


def hide(page: Page) -> None:
    page.evaluate(
        "() => { window.__visibility = 'hidden'; document.dispatchEvent(new Event('visibilitychange')); }"
    )


def test_c_opens_and_folds_the_conversation_of_the_current_card(new_page, page_errors):
    first = make_incoming(name="Amina", body="Do you ship to Lahore?", timestamp=ago(minutes=30))
    make_reply(Status.SENT, incoming=first, body="Yes, in two days.", timestamp=ago(minutes=29))
    again = make_incoming(
        number=first.chat, name="Amina", body="<b>How much?</b>", timestamp=ago(minutes=5)
    )
    draft = make_reply(incoming=again, body="It is 300.", timestamp=ago(minutes=4))
    page = new_page("dana")
    expect(card(page, draft)).to_have_class(re.compile("is-current"))
    thread = card(page, draft).locator(".thread")
    expect(thread).to_have_count(0)

    page.keyboard.press("c")
    items = thread.locator(".thread-list > li")
    expect(items).to_have_count(4)
    expect(items.nth(0)).to_contain_text("Do you ship to Lahore?")
    expect(items.nth(1)).to_contain_text("Yes, in two days.")
    expect(items.nth(1)).to_have_class(re.compile("thread-out"))
    expect(items.nth(2)).to_contain_text("<b>How much?</b>")  # text, not markup
    expect(items.nth(3)).to_contain_text("this reply")
    opener = card(page, draft).get_by_role("link", name="Conversation")
    expect(opener).to_have_attribute("aria-expanded", "true")

    # Kept while the card changes mode, folded again by the same key.
    page.keyboard.press("e")
    expect(card(page, draft).get_by_role("textbox")).to_be_focused()
    expect(items).to_have_count(4)
    # htmx wires a swapped card's links when it settles: a click before that navigates.
    expect(card(page, draft)).not_to_have_class(re.compile("htmx-added|htmx-settling"))
    card(page, draft).get_by_role("link", name="Cancel").click()
    expect(card(page, draft).get_by_role("button", name="Approve")).to_be_visible()
    expect(items).to_have_count(4)
    card(page, draft).focus()
    page.keyboard.press("c")  # at once: the key works before the swapped card settles
    expect(thread).to_have_count(0)
    expect(opener).to_have_attribute("aria-expanded", "false")
    assert page_errors == []


def test_the_history_entry_opens_the_same_conversation(new_page, live_url, page_errors):
    first = make_incoming(name="Amina", body="Is it in stock?", timestamp=ago(minutes=30))
    reply = make_reply(
        Status.SENT, incoming=first, body="Yes, two left.", timestamp=ago(minutes=29)
    )
    page = new_page("dana")
    page.goto(f"{live_url}/history/")
    entry = page.locator(f"#entry-{reply.pk}")
    entry.get_by_text("Audit trail").click()
    entry.locator(".thread-disclosure > summary").click()
    items = entry.locator(".thread-list > li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_contain_text("Is it in stock?")
    expect(items.nth(1)).to_contain_text("this reply")
    assert page_errors == []


def test_without_javascript_the_conversation_is_a_page(new_page, live_url):
    draft = make_reply(body="It ships today.")
    page = new_page("dana", javascript=False)
    card(page, draft).get_by_role("link", name="Conversation").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Conversation with")
    expect(page.locator(".thread-list > li").last).to_contain_text("It ships today.")
    page.get_by_role("link", name="← Back").click()
    expect(page).to_have_url(f"{live_url}/queue/")


def test_the_edit_box_opens_with_the_cursor_at_the_end(new_page):
    draft = make_reply(body="Thanks for your order.\nIt ships today")
    page = new_page("dana")
    card(page, draft).get_by_role("button", name="Edit").click()
    box = card(page, draft).get_by_role("textbox")
    expect(box).to_be_focused()
    length = len("Thanks for your order.\nIt ships today")
    expect(box).to_have_js_property("selectionStart", length)
    page.keyboard.type("!")
    expect(box).to_have_value("Thanks for your order.\nIt ships today!")


def test_the_title_counts_the_drafts_waiting_and_follows_the_poll(new_page, live_url):
    first = make_reply()
    page = new_page("dana")
    expect(page).to_have_title(f"(1) Queue · {SITE}")
    second = make_reply()
    expect(page).to_have_title(f"(2) Queue · {SITE}", timeout=POLL_WAIT_MS)
    lifecycle.approve(first.message_id, actor="sam", source=Source.WEB)
    lifecycle.approve(second.message_id, actor="sam", source=Source.WEB)
    expect(page).to_have_title(f"Queue · {SITE}", timeout=POLL_WAIT_MS)


def test_notifications_are_asked_on_a_click_and_shown_while_the_tab_is_hidden(
    new_page, page_errors
):
    make_reply(body="Already here")
    page = new_page("dana")
    page.context.add_init_script(STUBS)
    page.reload()
    button = page.get_by_role("button", name="Notify me")
    expect(button).to_be_visible()
    page.wait_for_timeout(500)
    assert page.evaluate("window.__asked") == 0  # never on load

    button.click()
    expect(page.get_by_role("button", name="Notifications on")).to_have_attribute(
        "aria-pressed", "true"
    )
    assert page.evaluate("window.__asked") == 1

    # Visible: a new draft arrives on the page, without a notification.
    seen = make_reply(incoming=make_incoming(name="Bilal"))
    # Placed by the page's script (which would have notified), not only swapped in.
    expect(card(page, seen)).to_have_class(re.compile("is-arriving"), timeout=POLL_WAIT_MS)
    assert page.evaluate("window.__shown") == []

    hide(page)
    arrived = make_reply(incoming=make_incoming(name="Chen"))
    expect(card(page, arrived)).to_be_attached(timeout=POLL_WAIT_MS)
    assert shown_soon(page) == [
        {"title": "New draft: Chen", "body": "Waiting in the queue.", "tag": f"card-{arrived.pk}"}
    ]
    assert page_errors == []


def test_an_overdue_draft_is_announced_once(new_page):
    late = make_reply(incoming=make_incoming(name="Dara"), timestamp=ago(minutes=20))
    page = new_page("dana")
    page.context.add_init_script(STUBS + "FakeNotification.permission = 'granted';")
    page.evaluate("localStorage.setItem('queue.notify', 'on')")
    page.reload()
    hide(page)
    make_reply()  # a poll that brings something: the page looks again
    shown = shown_soon(page)
    assert {
        "title": "Overdue: Dara",
        "body": "Waiting in the queue.",
        "tag": f"card-{late.pk}",
    } in shown
    # Reloaded in the same tab, hidden again, more polls: not announced twice.
    page.reload()
    hide(page)
    make_reply()
    page.wait_for_timeout(6_000)
    assert [n for n in page.evaluate("window.__shown") if n["title"].startswith("Overdue")] == []


def test_notify_is_not_offered_without_the_notification_api(new_page):
    make_reply()
    page = new_page("dana")
    page.context.add_init_script("delete window.Notification;")
    page.reload()
    expect(page.get_by_role("button", name="Keyboard shortcuts")).to_be_visible()
    expect(page.get_by_role("button", name="Notify me")).to_be_hidden()


def test_the_admin_message_list_keeps_each_id_on_one_line_at_1366_px(new_page, live_url):
    for n in range(5):
        make_reply(
            incoming=make_incoming(number=f"92300{n:07d}", body="A question " * 12),
            body="An answer " * 20,
        )
    page = new_page("olga", staff=True)
    User.objects.get(username="olga").user_permissions.add(
        *Permission.objects.filter(codename__in=["view_message", "change_message"])
    )
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_url}/admin/statecore/message/")
    cells = page.locator("#result_list tbody th.field-short_id")
    expect(cells).to_have_count(10)
    heights = page.evaluate(
        """() => [...document.querySelectorAll("#result_list tbody th.field-short_id")].map(
            (cell) => {
                const line = parseFloat(getComputedStyle(cell).lineHeight) || 16;
                const link = cell.querySelector("a").getBoundingClientRect();
                return { lines: link.height / line, title: cell.querySelector("[title]")?.title,
                         text: cell.textContent.trim() };
            })"""
    )
    for cell in heights:
        assert cell["lines"] < 1.6, cell
        assert cell["title"] == cell["text"]  # the whole id, on hover
    # Every column in view: the list's box has nothing hidden to scroll to sideways.
    fits = page.evaluate(
        "() => { const box = document.querySelector('#changelist .results');"
        " return box.scrollWidth <= box.clientWidth; }"
    )
    assert fits


def test_on_a_phone_the_first_card_shows_without_scrolling(new_page, live_url, settings, tmp_path):
    valid_session(settings, tmp_path)
    drafts = [make_reply() for _ in range(3)]
    page = new_page("dana")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_url}/queue/")
    top = card(page, drafts[0]).evaluate("(el) => el.getBoundingClientRect().top")
    assert top < 844 * 0.75, top
    expect(page.locator(".filters")).to_be_hidden()
    page.get_by_text("Filters", exact=True).click()
    expect(page.get_by_label("Search")).to_be_visible()
    # Filtered, they stay open to say what is filtered.
    page.goto(f"{live_url}/queue/?q=hello")
    expect(page.locator(".filters")).to_be_visible()
