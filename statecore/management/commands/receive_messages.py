from __future__ import annotations

import signal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from statecore import whatsapp
from statecore.receiving import Receiver


class Command(BaseCommand):
    help = (
        "Pull customers' messages from the gateway into `incoming` (each once, then marked "
        "processed), watch the session, and ask ASSISTANT for drafts. For WAHA, Evolution and "
        "the Cloud API, whose webhooks store the messages, fetch back what a lost webhook "
        "missed and prune old webhook records instead of pulling. --loop keeps going every "
        "watcher_config.poll_interval_seconds. Stop the old watcher first."
    )

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true", help="keep polling until stopped")

    def handle(self, *args, **options):
        with whatsapp.gateway() as gateway:
            try:
                receiver = Receiver(gateway, say=self.stdout.write)
            except ImproperlyConfigured as exc:
                raise CommandError(str(exc)) from None
            drafting = f"drafts by {settings.ASSISTANT}" if receiver.drafter else "no ASSISTANT"
            self.stdout.write(
                f"Receiver using the {gateway.kind} gateway at {gateway.address}; {drafting}"
            )
            if options["loop"]:
                self._stop_on_signals(receiver)
                receiver.run_forever()
                self.stdout.write("Receiver stopped.")
                return
            summary = receiver.run_once()
            self.stdout.write(str(summary))
            if summary.pull_error:
                raise CommandError(
                    f"the gateway's messages could not be pulled: {summary.pull_error}"
                )

    def _stop_on_signals(self, receiver: Receiver) -> None:
        def stop(signum, frame):
            # Finish the round in flight; a second signal stops at once.
            self.stdout.write("Stopping after the round in flight...")
            receiver.stop.set()
            signal.signal(signum, signal.SIG_DFL)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
