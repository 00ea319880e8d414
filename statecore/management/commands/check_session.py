from __future__ import annotations

from django.core.management.base import BaseCommand

from statecore import alerts, clock, session
from statecore.models import Source
from statecore.session_health import GatewayCheck, check_gateway, gateway_client


class Command(BaseCommand):
    help = (
        "Ask the gateway's /status and /info, record the answer in the session and print the "
        "verdict with each rule's reason. Exit 0 valid, 1 invalid, 2 gateway unreachable."
    )

    def handle(self, *args, **options):
        with gateway_client() as client:
            result = check_gateway(client, actor="check_session", source=Source.COMMAND)
            self._print(result, client.base_url)
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
        if result.ready and result.error:
            out.write(self.style.WARNING(result.error))
        report = result.report
        style = self.style.SUCCESS if report.valid else self.style.ERROR
        out.write(style(report.verdict))
        for rule in report.rules:
            out.write(f"  [{'pass' if rule.passed else 'FAIL'}] {rule.name}: {rule.reason}")
        account = result.account or {}
        if account:
            out.write(
                f"Account: {account.get('name') or '?'} ({account.get('number') or '?'}, "
                f"{account.get('platform') or '?'})"
            )
        if report.stale_at:
            out.write(f"Fresh until {clock.local_iso(report.stale_at)}")
        # GATEWAY.md: "not ready" alone does not mean a scan is needed; only say
        # so when the gateway's events asked for one and the session is not valid.
        if not report.valid and session.current().get("requires_qr") is True:
            out.write("A QR scan is needed: open /session/ in the dashboard to scan it.")
