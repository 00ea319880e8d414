"""The overview's learning tables on a phone: they scroll inside the page, the page does not."""

from __future__ import annotations

import pytest

from statecore import lifecycle
from statecore.models import Source
from tests.browser.test_layout_browser import overflow
from tests.factories import make_reply

pytestmark = pytest.mark.browser


def test_the_learning_tables_fit_a_phone(new_page, live_url):
    page = new_page("dana")
    for reason in ("Too formal, please write as we speak to customers", "Wrong price"):
        lifecycle.reject(make_reply().message_id, actor="dana", source=Source.WEB, reason=reason)
    lifecycle.edit_and_approve(
        make_reply(body="Hi").message_id,
        "Hello, thanks for writing!",
        actor="dana",
        source=Source.WEB,
    )
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_url}/")
    assert page.locator("#ov-learning-7 [data-figure=rejected]").first.inner_text() == "66.7% (2)"
    assert overflow(page) <= 0
    table = page.locator("#ov-learning-30")
    assert table.evaluate("t => t.parentElement.scrollWidth > t.parentElement.clientWidth")
