from django.apps import AppConfig
from django.db.models.signals import post_migrate


class StatecoreConfig(AppConfig):
    name = "statecore"
    verbose_name = "WhatsApp state"

    def ready(self):
        from . import checks  # noqa: F401  (registers the deploy checks)
        from .status_counts import after_migrate

        # Once per migrate or flush (the signal is sent per app: ours only).
        post_migrate.connect(after_migrate, sender=self, dispatch_uid="statecore.status_counts")
