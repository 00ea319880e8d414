"""/session/ in Chromium for the gateways that are not the scripts' service.

The QR each gateway shows (WAHA's raw QR, asked only while SCAN_QR_CODE;
Evolution's `code`) is recorded by the receiving loop's watch and drawn by the
page as for the scripts' service; it is read back from a screenshot with
Debian's `zbarimg` and must say exactly what the stand-in gave. "Link with
phone number" shows the gateway's pairing code on the page.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from playwright.sync_api import Page, expect

from tests.browser.test_session_browser import FOLLOW_MS, loop_checks, read_qr
from tests.session_helpers import valid_session


def manager_page(new_page, username: str) -> Page:
    """A page signed in as someone who may run the session (`statecore.manage_session`)."""
    page = new_page(username)
    User.objects.get(username=username).user_permissions.add(
        Permission.objects.get(codename="manage_session")
    )
    return page


@pytest.mark.browser
def test_wahas_qr_is_drawn_readable_and_its_pairing_code_shown(
    new_page, live_url, settings, tmp_path, fake_waha, page_errors
):
    page = manager_page(new_page, "sam")
    valid_session(settings, tmp_path)
    qr = fake_waha.show_qr()
    loop_checks()

    page.goto(f"{live_url}/session/")

    expect(page.locator("#qr-panel svg.qr-code")).to_be_visible()
    assert read_qr(page, tmp_path / "waha-qr.png") == qr
    expect(page.locator(".gateway-in-use")).to_contain_text(f"waha at {fake_waha.url}")

    page.get_by_label("Phone number").fill("+92 300 1234567")
    page.get_by_role("button", name="Link with phone number").click()

    expect(page.locator(".pairing-code output")).to_have_text(fake_waha.pairing_code)
    assert fake_waha.pairing_requests() == ["923001234567"]
    assert page_errors == []


@pytest.mark.browser
def test_log_out_asks_first_in_the_browser(new_page, live_url, settings, tmp_path, fake_waha):
    page = manager_page(new_page, "sam")
    valid_session(settings, tmp_path)

    page.goto(f"{live_url}/session/")
    page.get_by_role("button", name="Log out…").click()

    expect(page.get_by_role("heading", name="Log WhatsApp out?")).to_be_visible()
    assert fake_waha.calls()["logout"] == 0
    page.get_by_role("button", name="Yes, log out").click()

    expect(page.locator(".verdict")).to_contain_text("logged out from the dashboard by sam")
    assert fake_waha.calls()["logout"] == 1


@pytest.mark.browser
def test_evolutions_pairing_code_and_qr_are_shown_and_the_qr_reads_back(
    new_page, live_url, settings, tmp_path, fake_evolution, page_errors
):
    page = manager_page(new_page, "sam")
    valid_session(settings, tmp_path)
    fake_evolution.set_state("close")  # logged out on the phone
    loop_checks()

    page.goto(f"{live_url}/session/")
    page.get_by_label("Phone number").fill("+55 11 99999 9999")
    page.get_by_role("button", name="Link with phone number").click()

    expect(page.locator(".pairing-code output")).to_have_text(fake_evolution.pairing_code)
    # The loop's next watch records the QR Evolution shows beside the code; the panel,
    # polling, draws it without a reload.
    loop_checks()
    expect(page.locator("#qr-panel svg.qr-code")).to_be_visible(timeout=FOLLOW_MS)
    assert read_qr(page, tmp_path / "evolution-qr.png") == fake_evolution.qr
    expect(page.locator(".pairing-code output")).to_have_text(fake_evolution.pairing_code)
    assert page_errors == []
