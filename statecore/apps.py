from django.apps import AppConfig


class StatecoreConfig(AppConfig):
    name = "statecore"
    verbose_name = "WhatsApp state"

    def ready(self):
        from . import checks  # noqa: F401  (registers the deploy checks)
