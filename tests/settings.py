"""Test settings: the project's settings with a test secret, plain http, and a
file test database (threads and processes in the tests share it; SQLite's
in-memory test database would be private to one connection)."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")
os.environ.setdefault("PLAIN_HTTP", "1")
os.environ.setdefault("WHITENOISE_USE_FINDERS", "1")

from statecore.settings import *  # noqa: E402,F403
from statecore.settings import BASE_DIR, DATABASES  # noqa: E402

# Several test runs may share a machine (and a PostgreSQL server): a suffix keeps them apart.
_suffix = os.environ.get("TEST_DB_SUFFIX", "")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".test-db{_suffix}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_whatsapp{_suffix}"}
DATABASES["default"]["CONN_MAX_AGE"] = 0

# Static files come from the finders in tests; no collectstatic folder to look for.
STATIC_ROOT = None

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
