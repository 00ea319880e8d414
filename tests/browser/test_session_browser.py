"""The session page in Chromium: the gateway's QR drawn, read back from the picture, followed.

The stand-in gateway shows a QR in its `/status` as the scripts' service does;
what the receiving loop records (`session_check.check`, its watch) is what
the page draws. The drawn QR is read back from a screenshot with Debian's
`zbarimg` (zbar-tools; `make test` installs it): it must say exactly what the
gateway gave.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from playwright.sync_api import Page, expect

from statecore import session_check, whatsapp
from statecore.models import Source
from tests.session_helpers import set_session, use_gateway, valid_session

ZBARIMG = shutil.which("zbarimg")
# The panel polls every 3 s; one poll and a little slack.
FOLLOW_MS = 8_000


def loop_checks() -> None:
    """The receiving loop's watch: ask the gateway for its status and record it."""
    with whatsapp.gateway() as gateway:
        session_check.check(gateway, actor="receiver", source=Source.WORKER)


def read_qr(page: Page, picture: Path) -> str:
    """The text of the QR drawn on the page, decoded from a screenshot of it."""
    assert ZBARIMG, "zbarimg is missing: `make qr-reader` installs Debian's zbar-tools"
    page.locator("#qr-panel svg.qr-code").screenshot(path=str(picture))
    result = subprocess.run(
        [ZBARIMG, "--raw", "-q", str(picture)], capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, f"zbarimg read no QR code in {picture}: {result.stderr!r}"
    return result.stdout.decode("utf-8").removesuffix("\n")


@pytest.mark.browser
def test_the_gateways_qr_is_drawn_readable_followed_and_gone_after_the_scan(
    new_page, live_url, settings, tmp_path, fake_gateway, page_errors
):
    page = new_page("sam", staff=True)
    valid_session(settings, tmp_path)
    use_gateway(fake_gateway.url)
    first = fake_gateway.show_qr()
    loop_checks()

    page.goto(f"{live_url}/session/")

    qr = page.locator("#qr-panel svg.qr-code")
    expect(qr).to_be_visible()
    box = qr.bounding_box()
    assert box["width"] > 100 and abs(box["width"] - box["height"]) < 1
    assert read_qr(page, tmp_path / "qr-first.png") == first
    page.get_by_text("The QR code as text").click()
    expect(page.locator(".qr-text code")).to_have_text(first)
    expect(page.locator(".session-banner")).to_be_visible()
    expect(page.locator(".verdict")).to_contain_text("scan the QR code")

    # whatsapp-web.js renews its QR about every 20 s; the loop records the new one and
    # the panel, polling every 3 s, draws it without the test reloading the page.
    renewed = fake_gateway.renew_qr()
    assert renewed != first
    loop_checks()
    expect(page.locator(".qr-text code")).to_have_text(renewed, timeout=FOLLOW_MS)
    assert read_qr(page, tmp_path / "qr-renewed.png") == renewed

    # The phone scans it: the loop records "ready", the panel reloads the page.
    fake_gateway.scan()
    loop_checks()
    expect(page.locator(".verdict")).to_have_text("Session valid", timeout=FOLLOW_MS)
    expect(page.locator("#qr-panel svg")).to_have_count(0)
    expect(page.locator("#qr-panel")).to_contain_text("No QR scan is needed")
    expect(page.locator(".session-banner")).to_have_count(0)
    assert page_errors == []  # no script error, no CSP violation, no missing file


@pytest.mark.browser
def test_a_qr_that_cannot_be_drawn_shows_as_text(
    new_page, live_url, settings, tmp_path, fake_gateway, page_errors
):
    page = new_page("rita")
    valid_session(settings, tmp_path)
    use_gateway(fake_gateway.url)
    too_long = fake_gateway.show_qr("😀" * 2000)  # 8,000 bytes: no QR code holds it
    loop_checks()

    page.goto(f"{live_url}/session/")

    expect(page.locator("#qr-panel")).to_contain_text("too long to draw here")
    expect(page.locator("#qr-panel svg")).to_have_count(0)
    page.get_by_text("The QR code as text").click()
    expect(page.locator(".qr-text code")).to_have_text(too_long)
    assert page_errors == []


@pytest.mark.browser
def test_staff_mark_the_session_invalid_from_the_page(
    new_page, live_url, settings, tmp_path, page_errors
):
    page = new_page("sam", staff=True)
    # Staff run the session with its own permission (approvals/0003 gave it to the staff of the day).
    User.objects.get(username="sam").user_permissions.add(
        Permission.objects.get(codename="manage_session")
    )
    valid_session(settings, tmp_path)
    set_session(invalidation_reason=None)

    page.goto(f"{live_url}/session/")
    page.get_by_label("Reason").fill("Phone was lost <b>today</b>")
    page.get_by_role("button", name="Mark invalid").click()

    expect(page.locator(".verdict")).to_contain_text("marked invalid: Phone was lost <b>today</b>")
    expect(page.locator(".session-banner")).to_be_visible()
    expect(page.get_by_text("Marked invalid by a person")).to_be_visible()
    assert page_errors == []  # no script error, no CSP violation, no missing file


@pytest.mark.browser
def test_a_reviewer_sees_no_session_actions(new_page, live_url, settings, tmp_path):
    page = new_page("rita")
    valid_session(settings, tmp_path)

    page.goto(f"{live_url}/session/")

    expect(page.locator(".verdict")).to_have_text("Session valid")
    expect(page.get_by_role("button", name="Check now")).to_have_count(0)
    expect(page.get_by_role("button", name="Mark invalid")).to_have_count(0)
