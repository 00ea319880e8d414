"""The session page in Chromium: the QR drawn as SVG, polling until the session is ready."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.session_helpers import set_session, use_gateway, valid_session

TOKEN = "browser-test-gateway-token"


def forward(live_url: str, event: dict) -> None:
    """What the gateway does: POST one client event with the shared token."""
    response = httpx.post(
        f"{live_url}/gateway/events", json=event, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.browser
def test_the_qr_shows_as_svg_and_the_page_turns_valid_after_the_scan(
    new_page, live_url, settings, tmp_path, fake_gateway, page_errors
):
    settings.GATEWAY_TOKEN = TOKEN
    page = new_page("sam", staff=True)
    valid_session(settings, tmp_path)
    use_gateway(fake_gateway.url)
    forward(live_url, {"event": "disconnected", "reason": "LOGOUT"})
    forward(live_url, {"event": "qr", "qr": "2@<i>scan</i>,AbCdEf=="})

    page.goto(f"{live_url}/session/")

    qr = page.locator("#qr-panel svg.qr-code")
    expect(qr).to_be_visible()
    box = qr.bounding_box()
    assert box["width"] > 100 and abs(box["width"] - box["height"]) < 1
    page.get_by_text("The QR code as text").click()
    expect(page.locator(".qr-text code")).to_have_text("2@<i>scan</i>,AbCdEf==")
    expect(page.locator(".session-banner")).to_be_visible()
    expect(page.locator(".verdict")).to_contain_text("disconnected: LOGOUT")
    # The live status comes in by htmx after the page.
    expect(page.locator("#gateway-status")).to_contain_text("Ready")

    forward(live_url, {"event": "ready"})

    # The panel polls every 3 s and reloads the page once the session is ready.
    expect(page.locator(".verdict")).to_have_text("Session valid", timeout=10_000)
    expect(page.locator("#qr-panel svg")).to_have_count(0)
    expect(page.locator(".session-banner")).to_have_count(0)
    assert page_errors == []  # no script error, no CSP violation, no missing file


@pytest.mark.browser
def test_staff_mark_the_session_invalid_from_the_page(
    new_page, live_url, settings, tmp_path, page_errors
):
    page = new_page("sam", staff=True)
    valid_session(settings, tmp_path)
    set_session(invalidation_reason=None)

    page.goto(f"{live_url}/session/")
    page.get_by_label("Reason").fill("Phone was lost <b>today</b>")
    page.get_by_role("button", name="Mark invalid").click()

    expect(page.locator(".verdict")).to_contain_text("marked invalid: Phone was lost <b>today</b>")
    expect(page.locator(".session-banner")).to_be_visible()
    assert page_errors == []  # no script error, no CSP violation, no missing file


@pytest.mark.browser
def test_a_reviewer_sees_no_session_actions(new_page, live_url, settings, tmp_path):
    page = new_page("rita")
    valid_session(settings, tmp_path)

    page.goto(f"{live_url}/session/")

    expect(page.locator(".verdict")).to_have_text("Session valid")
    expect(page.get_by_role("button", name="Check now")).to_have_count(0)
    expect(page.get_by_role("button", name="Mark invalid")).to_have_count(0)
