from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


class StatecoreConfig(AppConfig):
    name = "statecore"
    verbose_name = "WhatsApp state"

    def ready(self):
        from . import checks  # noqa: F401  (registers the deploy checks)
        from .search import register_fold
        from .status_counts import after_migrate

        # Once per migrate or flush (the signal is sent per app: ours only).
        post_migrate.connect(after_migrate, sender=self, dispatch_uid="statecore.status_counts")
        # The search index's triggers call search_fold() on every write of a message.
        connection_created.connect(register_fold, dispatch_uid="statecore.search.fold")
