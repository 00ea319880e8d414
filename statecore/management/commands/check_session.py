from __future__ import annotations

from django.core.management.base import BaseCommand

from statecore import alerts, clock, session, session_events, whatsapp
from statecore.models import Source
from statecore.session_check import GatewayCheck, check


class Command(BaseCommand):
    help = (
        "Ask the gateway for the session's status and the account, record the answer and print "
        "the verdict with each rule's reason. Exit 0 valid, 1 invalid, 2 gateway unreachable. "
        "A person's 'Mark invalid' from the dashboard stays until someone presses Check now there."
    )

    def handle(self, *args, **options):
        with whatsapp.gateway() as gateway:
            result = check(gateway, actor="check_session", source=Source.COMMAND)
            self._print(result, gateway.address)
        alerts.check_incidents()
        if result.exit_code:
            raise SystemExit(result.exit_code)

    def _print(self, result: GatewayCheck, url: str) -> None:
        out = self.stdout
        if not result.reachable:
            out.write(self.style.ERROR(f"Gateway {url}: no answer ({result.error})"))
            out.write("The stored session was left as it is; its verdict:")
        elif result.ready:
            out.write(f"Gateway {url}: WhatsApp ready")
        else:
            out.write(self.style.WARNING(f"Gateway {url}: not ready ({result.error})"))
        held = session.gateway_state()
        if held.held_reason:
            out.write(
                self.style.WARNING(
                    f"Marked invalid by {held.held_by or 'a person'}: {held.held_reason}. "
                    "It stays so until someone presses Check now on /session/ or WhatsApp logs in again."
                )
            )
        if result.ready and result.error:
            out.write(self.style.WARNING(result.error))
        report = result.report
        style = self.style.SUCCESS if report.valid else self.style.ERROR
        out.write(style(report.verdict))
        for rule in report.rules:
            out.write(f"  [{'pass' if rule.passed else 'FAIL'}] {rule.name}: {rule.reason}")
        account = result.account
        if account:
            out.write(
                f"Account: {account.name or '?'} ({account.number or '?'}, {account.platform or '?'})"
            )
        if report.stale_at:
            out.write(f"Fresh until {clock.local_iso(report.stale_at)}")
        # GATEWAY.md: "not ready" alone does not mean a scan is needed; only say
        # so when the gateway itself showed a QR (in /status or an event).
        if not report.valid and session_events.latest_qr() is not None:
            out.write("A QR scan is needed: open /session/ in the dashboard to scan it.")
