"""`make screenshot`: the queue as a reviewer sees it, saved as a PNG for the README.

Not a test. Run as `python -m tests.browser.screenshot docs/queue.png`. It builds a
throw-away SQLite database holding the sample state, with its times moved to the
present (so waiting times read like a working morning) and one customer writing
again after their draft (so the picture shows that mark); the WhatsApp session is
recorded as valid. Then it serves the dashboard on a free local port, signs in as a
reviewer in Debian's Chromium and writes the picture.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from datetime import datetime, timedelta
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USERNAME = "dana"
PASSWORD = "screenshot-only-password"
VIEWPORT = {"width": 1280, "height": 1000}


def _configure(workdir: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'db.sqlite3'}"
    os.environ["WHATSAPP_SESSION_BASE"] = str(workdir)
    os.environ["ALLOWED_HOSTS"] = "127.0.0.1,localhost"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    # Playwright's sync API runs an event loop in this thread; the database calls are ours.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    import django

    django.setup()


def _moved_to_now(sample: dict) -> dict:
    """The sample with every message time moved so its last message came a minute ago
    (a decision: a few minutes after its draft, never in the future)."""
    lists = sample["messages"]
    stamps = [m["timestamp"] for items in lists.values() for m in items if "timestamp" in m]
    now = datetime.now()
    shift = now - timedelta(minutes=1) - max(map(datetime.fromisoformat, stamps))
    for items in lists.values():
        for message in items:
            if isinstance(message.get("timestamp"), str):
                moved = datetime.fromisoformat(message["timestamp"]) + shift
                message["timestamp"] = moved.isoformat()
                if "status_updated_at" in message:
                    decided = min(moved + timedelta(minutes=4), now - timedelta(seconds=30))
                    message["status_updated_at"] = decided.isoformat()
    return sample


def _load_state(workdir: Path) -> None:
    from django.conf import settings
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    from statecore import lifecycle, session, statefile
    from statecore.models import Message, Source, Status

    call_command("migrate", verbosity=0)
    sample_path = settings.BASE_DIR / "statecore" / "fixtures" / "whatsapp_state.sample.json"
    sample = _moved_to_now(json.loads(sample_path.read_text(encoding="utf-8")))
    statefile.import_bytes(
        json.dumps(sample, indent=2, ensure_ascii=False).encode(),
        actor="screenshot",
        source=Source.COMMAND,
    )
    (workdir / ".wwebjs_auth").mkdir(exist_ok=True)
    session.record_login(
        True,
        {"number": "923000000000", "name": "Support", "platform": "android"},
        actor="screenshot",
        source=Source.COMMAND,
    )
    # One customer wrote again after their draft was made.
    drafts = list(Message.objects.pending().order_by("timestamp"))
    draft = drafts[min(1, len(drafts) - 1)]
    lifecycle.add_message(
        {
            "id": f"false_{draft.chat}@c.us_SCREENSHOT01",
            "from": f"{draft.chat}@c.us",
            "fromName": "",
            "body": "Also, can you add last quarter's statement? Our accountant needs both.",
            "timestamp": (
                datetime.fromisoformat(draft.data["timestamp"]) + timedelta(minutes=3)
            ).isoformat(),
            "isGroup": False,
        },
        Status.INCOMING,
        actor="screenshot",
        source=Source.COMMAND,
    )
    user = User.objects.create_user(USERNAME, password=PASSWORD)
    user.groups.add(Group.objects.get(name="Reviewers"))


def _serve():
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            pass

    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler, allow_reuse_address=False)
    server.set_app(get_wsgi_application())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _shoot(url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT, locale="en-GB", color_scheme="light")
        page = context.new_page()
        page.goto(f"{url}/accounts/login/?next=/queue/")
        page.get_by_label("User name").fill(USERNAME)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{url}/queue/")
        page.locator("[data-open-help]").wait_for(state="visible")  # our script ran
        page.locator(".card.is-current").wait_for()
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=os.environ.get("FULL_PAGE") == "1")
        browser.close()


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs/queue.png").resolve()
    with tempfile.TemporaryDirectory(prefix="queue-screenshot-") as tmp:
        workdir = Path(tmp)
        _configure(workdir)
        _load_state(workdir)
        server = _serve()
        try:
            host, port = server.server_address[:2]
            _shoot(f"http://{host}:{port}", out)
        finally:
            server.shutdown()
            server.server_close()
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
