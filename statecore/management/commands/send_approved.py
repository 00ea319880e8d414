from __future__ import annotations

import signal

from django.core.management.base import BaseCommand, CommandError

from statecore import whatsapp
from statecore.rootstate import retry_config
from statecore.sending import Sender, retry_delays


class Command(BaseCommand):
    help = (
        "Send the approved replies past the Undo window through the gateway, each at most once. "
        "Several may run at once. --loop keeps going every watcher_config.poll_interval_seconds."
    )

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true", help="keep polling until stopped")
        parser.add_argument(
            "--send-timeout",
            type=float,
            default=30.0,
            help="seconds to wait for the gateway's answer to one /send (GATEWAY.md: 30)",
        )

    def handle(self, *args, **options):
        if options["send_timeout"] <= 0:
            raise CommandError("--send-timeout must be more than 0 seconds")
        try:
            retry_delays(retry_config())
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        with whatsapp.gateway(send_timeout=options["send_timeout"]) as gateway:
            sender = Sender(gateway, say=self.stdout.write)
            self.stdout.write(
                f"Sender {sender.worker} using the {gateway.kind} gateway at {gateway.address}"
            )
            if options["loop"]:
                self._stop_on_signals(sender)
                sender.run_forever()
                self.stdout.write("Sender stopped.")
            else:
                summary = sender.run_once()
                self.stdout.write(
                    f"{summary.sent} sent, {summary.failed} failed, {summary.held} waiting for the gateway, "
                    f"{len(summary.expired)} failed after their sender died"
                    + (f"; paused: {summary.paused}" if summary.paused else "")
                )

    def _stop_on_signals(self, sender: Sender) -> None:
        def stop(signum, frame):
            # Finish the send in flight and record it; a second signal stops at once.
            self.stdout.write("Stopping after the send in flight...")
            sender.stop.set()
            signal.signal(signum, signal.SIG_DFL)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
