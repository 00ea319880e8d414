from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from statecore.models import Message, Source, StateRoot
from statecore.statefile import import_bytes

SAMPLE = settings.BASE_DIR / "statecore" / "fixtures" / "whatsapp_state.sample.json"
# Printed by `make run`: a laptop demo, never a production account.
DEMO_USERS = [
    # (username, password, superuser)
    ("reviewer", "reviewer-demo-password", False),
    ("admin", "admin-demo-password", True),
]


class Command(BaseCommand):
    help = "For `make run`: import the sample when the database is empty and make sure a demo reviewer exists."

    def handle(self, *args, **options):
        if not StateRoot.objects.exists() and not Message.objects.exists():
            import_bytes(SAMPLE.read_bytes(), actor="make run", source=Source.COMMAND)
            self.stdout.write(f"Imported the sample state from {SAMPLE.name}.")
        for username, password, superuser in DEMO_USERS:
            self._ensure_user(username, password, superuser)

    def _ensure_user(self, username: str, password: str, superuser: bool) -> None:
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"is_staff": superuser, "is_superuser": superuser}
        )
        if created:
            user.set_password(password)
            user.save()
        group = Group.objects.filter(name="Reviewers").first()
        if group:
            user.groups.add(group)
        role = "admin (superuser)" if superuser else "reviewer"
        note = "" if created else " (unless you changed it)"
        self.stdout.write(
            self.style.SUCCESS(f"Demo {role}: user {username!r}, password {password!r}{note}")
        )
