import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "statecore.settings")
application = get_wsgi_application()

# Sessions signed with a key made up at start-up would not survive a restart
# nor be shared by several workers: a web process needs the real one.
if not settings.DEBUG and not settings.SECRET_KEY_FROM_ENV:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set: the web process needs it from the environment"
    )
