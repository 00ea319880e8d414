from django.apps import AppConfig
from django.db.backends.signals import connection_created


class StatecoreConfig(AppConfig):
    name = "statecore"
    verbose_name = "WhatsApp state"

    def ready(self):
        from . import checks  # noqa: F401  (registers the deploy checks)
        from .search import register_fold

        # The search index's triggers call search_fold() on every write of a message.
        connection_created.connect(register_fold, dispatch_uid="statecore.search.fold")
