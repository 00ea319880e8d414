"""The queue in a real Chromium: sign in, every action by mouse and keyboard, two
reviewers racing, the poll, and text from strangers that must stay text."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from statecore import lifecycle
from statecore.models import AuditEvent, Message, Source, Status
from tests.factories import make_incoming, make_reply
from tests.users import make_user

pytestmark = pytest.mark.browser

# One draft waiting: the count first, so a tab in the background says it.
TITLE = "(1) Queue · WhatsApp approvals"
# The page polls every 5 s: waits for what the poll brings allow two rounds.
POLL_WAIT_MS = 12_000


def status_of(msg: Message) -> str:
    return Message.objects.get(pk=msg.pk).status


def card(page: Page, msg: Message):
    return page.locator(f"#card-{msg.pk}")


def button(page: Page, msg: Message, name: str):
    return card(page, msg).get_by_role("button", name=name, exact=True)


def test_sign_in_lands_on_the_queue_with_our_script_running(new_page, live_url, page_errors):
    make_user("dana", reviewer=True)
    page = new_page()
    page.goto(f"{live_url}/queue/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/queue/$"))
    page.get_by_label("User name").fill("dana")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("didn’t match")
    page.get_by_label("Password").fill("a-long-test-password-1")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_url}/queue/")
    expect(page.get_by_role("heading", name="Queue", level=1)).to_be_visible()
    # Our static script ran (it reveals this button) and htmx loaded from our own server.
    expect(page.get_by_role("button", name="Keyboard shortcuts")).to_be_visible()
    assert page.evaluate("typeof window.htmx") == "object"
    assert page_errors == []


def test_approve(new_page, live_url, page_errors):
    draft = make_reply(body="Your parcel left today.")
    page = new_page("dana")
    button(page, draft, "Approve").click()
    expect(card(page, draft)).to_contain_text("Approved")
    expect(button(page, draft, "Undo")).to_be_visible()
    assert status_of(draft) == Status.APPROVED
    expect(page.locator("#queue-counts")).to_contain_text("0 pending")
    assert page_errors == []


def test_edit_and_approve(new_page):
    draft = make_reply(body="Draft text")
    page = new_page("dana")
    button(page, draft, "Edit").click()
    box = card(page, draft).get_by_role("textbox", name="Edited reply")
    expect(box).to_be_focused()
    expect(box).to_have_value("Draft text")
    box.fill("A better reply\nover two lines")
    card(page, draft).get_by_role("button", name="Save and approve").click()
    expect(card(page, draft)).to_contain_text("Approved")
    msg = Message.objects.get(pk=draft.pk)
    assert (msg.status, msg.body) == (Status.APPROVED, "A better reply\nover two lines")
    event = AuditEvent.objects.get(message_id=draft.message_id, action="approve")
    assert event.detail["original"] == "Draft text"


def test_an_empty_edit_is_refused_on_the_card(new_page):
    draft = make_reply(body="Draft text")
    page = new_page("dana")
    button(page, draft, "Edit").click()
    box = card(page, draft).get_by_role("textbox", name="Edited reply")
    expect(box).to_be_focused()  # typed after the autofocus, as a person would
    box.fill("   ")
    card(page, draft).get_by_role("button", name="Save and approve").click()
    expect(card(page, draft).get_by_role("alert")).to_have_text("The reply cannot be empty.")
    assert status_of(draft) == Status.PENDING_APPROVAL


def test_reject_with_a_reason(new_page):
    draft = make_reply()
    page = new_page("dana")
    button(page, draft, "Reject").click()
    reason = card(page, draft).get_by_label("Reason")
    expect(reason).to_be_focused()
    reason.fill("Wrong price quoted")
    button(page, draft, "Reject").click()
    expect(card(page, draft)).to_contain_text("Rejected")
    assert status_of(draft) == Status.REJECTED
    assert AuditEvent.objects.get(message_id=draft.message_id, action="reject").note == (
        "Wrong price quoted"
    )


def test_undo(new_page):
    draft = make_reply()
    page = new_page("dana")
    button(page, draft, "Approve").click()
    button(page, draft, "Undo").click()
    expect(button(page, draft, "Approve")).to_be_visible()
    assert status_of(draft) == Status.PENDING_APPROVAL
    expect(page.locator("#queue-counts")).to_contain_text("1 pending")


def test_keyboard_moves_and_approves(new_page):
    first = make_reply(body="First")
    second = make_reply(body="Second")
    page = new_page("dana")
    expect(card(page, first)).to_have_class(re.compile("is-current"))
    page.keyboard.press("j")
    expect(card(page, second)).to_have_class(re.compile("is-current"))
    expect(card(page, second)).to_be_focused()
    page.keyboard.press("a")
    expect(card(page, second)).to_contain_text("Approved")
    assert status_of(second) == Status.APPROVED
    assert status_of(first) == Status.PENDING_APPROVAL
    # The cursor moved on to the card still waiting; "e" opens its editor.
    expect(card(page, first)).to_have_class(re.compile("is-current"))
    page.keyboard.press("e")
    expect(card(page, first).get_by_role("textbox")).to_be_focused()
    page.keyboard.press("Escape")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("?")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()


def test_keyboard_reject_with_enter(new_page):
    draft = make_reply()
    page = new_page("dana")
    page.keyboard.press("r")
    expect(card(page, draft).get_by_label("Reason")).to_be_focused()
    page.keyboard.type("duplicate")
    page.keyboard.press("Enter")
    expect(card(page, draft)).to_contain_text("Rejected")
    assert status_of(draft) == Status.REJECTED


def test_a_stale_draft_asks_before_approving(new_page):
    incoming = make_incoming(number="923001112222", body="Where is it?")
    draft = make_reply(incoming=incoming)
    make_incoming(number="923001112222", body="Never mind, cancel it")
    page = new_page("dana")
    expect(card(page, draft)).to_contain_text("Customer wrote again")
    expect(card(page, draft)).to_contain_text("Never mind, cancel it")
    page.keyboard.press("a")
    expect(button(page, draft, "Approve anyway")).to_be_visible()
    assert status_of(draft) == Status.PENDING_APPROVAL
    page.keyboard.press("a")
    expect(card(page, draft)).to_contain_text("Approved")
    assert status_of(draft) == Status.APPROVED


def test_bulk_approve(new_page):
    drafts = [make_reply(body=f"Reply {i}") for i in range(3)]
    page = new_page("dana")
    for draft in drafts[:2]:
        card(page, draft).get_by_role("checkbox").check()
    expect(page.locator("#bulk-count")).to_have_text("2 selected")
    page.get_by_role("button", name="Approve selected").click()
    expect(page.locator("#bulk-result")).to_contain_text("Approved 2 of 2 selected")
    expect(card(page, drafts[0])).to_contain_text("Approved")
    expect(card(page, drafts[1])).to_contain_text("Approved")
    assert [status_of(d) for d in drafts] == [
        Status.APPROVED,
        Status.APPROVED,
        Status.PENDING_APPROVAL,
    ]


def test_two_reviewers_race_on_one_card(new_page, settings):
    # The winner's Undo lasts the grace window: long enough here for a loaded machine.
    settings.APPROVAL_GRACE_SECONDS = 120
    draft = make_reply()
    pages = {"dana": new_page("dana"), "sam": new_page("sam")}
    for page in pages.values():
        expect(button(page, draft, "Approve")).to_be_visible()
        # Neither page may learn of the other's click from its poll: both click blind.
        page.evaluate("document.getElementById('queue-poll').remove()")
    button(pages["dana"], draft, "Approve").click()
    button(pages["sam"], draft, "Approve").click()
    for page in pages.values():
        expect(button(page, draft, "Approve")).to_have_count(0)
    msg = Message.objects.get(pk=draft.pk)
    winner = msg.status_changed_by
    loser = "sam" if winner == "dana" else "dana"
    assert msg.status == Status.APPROVED and winner in pages
    expect(card(pages[winner], draft)).to_contain_text("Approved")
    expect(button(pages[winner], draft, "Undo")).to_be_visible()
    expect(card(pages[loser], draft)).to_contain_text(
        re.compile(rf"Approved by {winner} \d+ s ago")
    )
    assert AuditEvent.objects.filter(message_id=draft.message_id, action="approve").count() == 1


def test_the_loser_of_a_race_sees_who_won(new_page):
    draft = make_reply()
    dana, sam = new_page("dana"), new_page("sam")
    expect(button(sam, draft, "Approve")).to_be_visible()
    # Sam opens the editor; Dana approves meanwhile; Sam saves.
    button(sam, draft, "Edit").click()
    expect(card(sam, draft).get_by_role("textbox")).to_be_focused()
    card(sam, draft).get_by_role("textbox").fill("Sam's version")
    button(dana, draft, "Approve").click()
    expect(card(dana, draft)).to_contain_text("Approved")
    card(sam, draft).get_by_role("button", name="Save and approve").click()
    expect(card(sam, draft)).to_contain_text(re.compile(r"Approved by dana \d+ s ago"))
    msg = Message.objects.get(pk=draft.pk)
    assert (msg.status, msg.status_changed_by, msg.body) == (Status.APPROVED, "dana", draft.body)


def test_the_poll_removes_handled_cards_and_adds_new_ones_but_keeps_an_open_editor(new_page):
    handled, edited = make_reply(body="Someone else takes this"), make_reply(body="Mine")
    page = new_page("dana")
    button(page, edited, "Edit").click()
    box = card(page, edited).get_by_role("textbox")
    # Typed once the box has its focus, as a person types: a fill racing the autofocus
    # (which puts the cursor after the draft) would add to the draft instead.
    expect(box).to_be_focused()
    box.fill("Half-typed answer")
    lifecycle.approve(handled.message_id, actor="sam", source=Source.WEB)
    lifecycle.approve(edited.message_id, actor="sam", source=Source.WEB)
    arrived = make_reply(body="A new draft arrived")
    expect(card(page, handled)).to_have_count(0, timeout=POLL_WAIT_MS)
    expect(card(page, arrived)).to_contain_text("A new draft arrived", timeout=POLL_WAIT_MS)
    # The card being edited stays, with what was typed, and says what happened.
    expect(card(page, edited).get_by_role("alert")).to_contain_text("Approved by sam")
    expect(box).to_have_value("Half-typed answer")
    expect(page.locator("#queue-counts")).to_contain_text("1 pending")


def test_a_reader_sees_no_buttons(new_page):
    draft = make_reply()
    page = new_page("reader", reviewer=False)
    expect(card(page, draft)).to_contain_text("Read-only")
    expect(button(page, draft, "Approve")).to_have_count(0)


def test_text_from_strangers_stays_text(new_page, live_url, dialogs, page_errors):
    body = "<script>document.title='pwned'</script>"
    name = "<img src=x onerror=alert(1)>"
    draft = make_reply(incoming=make_incoming(name=name, body=body), body=f"Re: {body}")
    page = new_page("dana")
    response = page.goto(f"{live_url}/queue/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy

    def check() -> None:
        expect(card(page, draft).get_by_text(body, exact=True)).to_be_visible()
        expect(card(page, draft).get_by_text(name).first).to_be_visible()
        assert page.locator("img").count() == 0
        scripts = page.eval_on_selector_all("script", "els => els.map(e => [e.src, e.text])")
        assert scripts and all(src.startswith(live_url) and not text for src, text in scripts)
        assert page.title() == TITLE
        assert dialogs == []

    check()
    button(page, draft, "Edit").click()  # the card comes back through htmx: still text
    expect(card(page, draft).get_by_role("textbox")).to_have_value(f"Re: {body}")
    card(page, draft).get_by_role("link", name="Cancel").click()
    expect(button(page, draft, "Approve")).to_be_visible()
    check()
    assert not [error for error in page_errors if "pwned" in error]


def test_without_javascript_every_action_is_a_plain_form(new_page):
    approved, edited, rejected = make_reply(), make_reply(body="Old"), make_reply()
    page = new_page("dana", javascript=False)
    button(page, approved, "Approve").click()
    expect(page.get_by_role("status").first).to_contain_text("Approved the reply to")
    expect(page).to_have_url(re.compile(rf"/queue/\?done={approved.pk}$"))
    button(page, approved, "Undo").click()
    expect(page.get_by_role("status").first).to_contain_text("is back in the queue")
    assert status_of(approved) == Status.PENDING_APPROVAL
    button(page, edited, "Edit").click()
    expect(card(page, edited).get_by_role("textbox")).to_be_focused()
    card(page, edited).get_by_role("textbox").fill("New text")
    card(page, edited).get_by_role("button", name="Save and approve").click()
    expect(page.get_by_role("status").first).to_contain_text("Approved your edited reply")
    button(page, rejected, "Reject").click()
    card(page, rejected).get_by_label("Reason").fill("Not needed")
    button(page, rejected, "Reject").click()
    expect(page.get_by_role("status").first).to_contain_text("Rejected the reply to")
    assert Message.objects.get(pk=edited.pk).body == "New text"
    assert status_of(rejected) == Status.REJECTED
