"""Settings for the WhatsApp approval dashboard.

Every value comes from the environment (README lists each one) through the
tiny helpers below; a malformed value stops start-up with ImproperlyConfigured.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from email.utils import getaddresses
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from statecore.whatsapp import config as _gateway_config

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}: expected true/false (1/0, yes/no, on/off), got {raw!r}")


def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected a whole number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def machine_time_zone() -> str:
    """The IANA name of this machine's zone: the scripts write naive local times."""
    if os.environ.get("TZ", "").strip():
        return os.environ["TZ"].strip().lstrip(":")
    try:
        return Path("/etc/timezone").read_text().strip() or "UTC"
    except OSError:
        pass
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    return "UTC"


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
# Management commands run without one (a throw-away key: they sign nothing that
# outlives them); the web process refuses to start without it (wsgi.py), and
# `check --deploy` reports it (statecore/checks.py).
SECRET_KEY_FROM_ENV = bool(SECRET_KEY)
if not SECRET_KEY:
    SECRET_KEY = (
        "django-insecure-development-only-key-never-use-in-production"
        if DEBUG
        else "django-insecure-" + secrets.token_urlsafe(50)
    )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "csp",
    "template_partials.apps.SimpleAppConfig",
    "axes",
    "statecore",
    "approvals",
]

MIDDLEWARE = [
    # First, before anything reads a body: an oversized one gets 413 unread.
    "statecore.middleware.RequestSizeLimit",
    "statecore.middleware.RefuseNul",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Signed-in pages (every customer's number and message) are never cached.
    "statecore.middleware.NoStore",
    "statecore.middleware.AdminSelection",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "statecore.idle.IdleTimeoutMiddleware",
    # Last, as axes asks: it turns a refused sign-in into the lock-out page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "statecore.urls"
WSGI_APPLICATION = "statecore.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "approvals.context_processors.session_banner",
            ],
            "builtins": ["template_partials.templatetags.partials"],
            "loaders": [
                (
                    "template_partials.loader.Loader",
                    [
                        (
                            "django.template.loaders.cached.Loader",
                            [
                                "django.template.loaders.filesystem.Loader",
                                "django.template.loaders.app_directories.Loader",
                            ],
                        )
                    ],
                )
            ],
        },
    }
]

# SQLite waits for a concurrent writer (timeout) instead of failing with
# "database is locked", and IMMEDIATE takes the write lock when a transaction
# starts, so a compare-and-set never has to upgrade a read lock mid-way.
SQLITE_OPTIONS = {
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        # Kept open between requests (and between Python API calls): opening one
        # costs more than a whole status move.
        conn_max_age=60,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {**SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # No JIT compilation: our queries are short, and compiling one costs more than it
    # saves (the overview's learning figures took twice as long with it at 14,000
    # decisions a month: about a second of compiling). A random read priced as on an
    # SSD (1.1, the usual advice, not the spinning disk's 4): otherwise the planner
    # walks the primary key backwards through half a million rows of other lists for
    # a page of one status (the admin's "incoming", 200 ms at a million) rather than
    # read that status's own index.
    DATABASES["default"]["OPTIONS"] = {
        "options": "-c jit=off -c random_page_cost=1.1",
        **DATABASES["default"].get("OPTIONS", {}),
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"
# The axes backend first: it refuses a locked-out sign-in before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE") or machine_time_zone()
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Tests and `make run` serve static files straight from the finders.
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", DEBUG)
WHITENOISE_AUTOREFRESH = DEBUG

# HTTPS-only unless DEBUG, or PLAIN_HTTP=1 for plain http on a trusted network.
PLAIN_HTTP = env_bool("PLAIN_HTTP", DEBUG)
SECURE_SSL_REDIRECT = not PLAIN_HTTP
SESSION_COOKIE_SECURE = not PLAIN_HTTP
CSRF_COOKIE_SECURE = not PLAIN_HTTP
SECURE_HSTS_SECONDS = 0 if PLAIN_HTTP else env_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not PLAIN_HTTP
SECURE_HSTS_PRELOAD = not PLAIN_HTTP
# Behind the proxy, the client's address is also the one it adds to X-Forwarded-For
# (statecore/accounts.py client_address): never a header a client could write itself.
BEHIND_HTTPS_PROXY = env_bool("BEHIND_HTTPS_PROXY", False)
if BEHIND_HTTPS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# On top of the 14-day cookie: signed out after this long without a person's action
# (the pages' background polls do not count; statecore/idle.py).
SESSION_IDLE_TIMEOUT_MINUTES = env_int("SESSION_IDLE_TIMEOUT_MINUTES", 480, minimum=1)

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}

ADMINS = getaddresses(env_list("ADMINS"))
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
SERVER_EMAIL = env_str("SERVER_EMAIL", "whatsapp-dashboard@localhost")
DEFAULT_FROM_EMAIL = SERVER_EMAIL

# --- Sign-in and accounts (README "Security") -------------------------------
# django-axes counts failed sign-ins (on /accounts/login/ and /admin/login/ alike: both go
# through authenticate()) per username *and* address, and per address alone; never per
# username alone, so a stranger cannot lock an account out from elsewhere.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_ADDRESS_FAILURE_LIMIT = env_int("LOGIN_ADDRESS_FAILURE_LIMIT", 20, minimum=1)
LOGIN_COOLOFF_MINUTES = env_int("LOGIN_COOLOFF_MINUTES", 15, minimum=1)
AXES_HANDLER = "statecore.accounts.SignInHandler"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT  # the pair's; SignInHandler adds the address's own
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_COOLOFF_MINUTES)
# A try while locked out does not push the end of the lock-out further: the page can say
# when to come back, and that time holds.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# Not reset by a success: signing in to one's own account would clear the address's count.
AXES_RESET_ON_SUCCESS = False
AXES_CLIENT_IP_CALLABLE = "statecore.accounts.client_address"
AXES_USERNAME_CALLABLE = "statecore.accounts.attempt_username"
AXES_LOCKOUT_CALLABLE = "statecore.accounts.locked_out"

# Self-service password reset mails a link that signs in: off unless asked for, and only
# with a backend that delivers mail (the console one would print the link in the log).
UNDELIVERED_EMAIL_BACKENDS = frozenset(
    f"django.core.mail.backends.{name}.EmailBackend"
    for name in ("console", "locmem", "dummy", "filebased")
)
PASSWORD_RESET_ENABLED = env_bool("PASSWORD_RESET_ENABLED", False)
if PASSWORD_RESET_ENABLED and EMAIL_BACKEND in UNDELIVERED_EMAIL_BACKENDS:
    raise ImproperlyConfigured(
        f"PASSWORD_RESET_ENABLED=1 needs an EMAIL_BACKEND that delivers mail, got "
        f"{EMAIL_BACKEND!r}: set EMAIL_BACKEND (e.g. django.core.mail.backends.smtp.EmailBackend) "
        "or turn PASSWORD_RESET_ENABLED off"
    )
# Reset requests per address and per email address, each in a rolling hour (Django's cache).
PASSWORD_RESET_PER_HOUR = env_int("PASSWORD_RESET_PER_HOUR", 5, minimum=1)

# --- Logging ----------------------------------------------------------------
# Everything at WARNING and above (a 500's traceback from django.request included) goes
# to stderr, where the journal keeps it; `statecore` also at LOG_LEVEL. Error mail is off
# unless ERROR_MAIL=1, and then one mail per distinct error an hour (statecore/errormail.py).
ERROR_MAIL = env_bool("ERROR_MAIL", False)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "filters": {
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
        "once_per_error": {"()": "statecore.errormail.OncePerError"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "plain"},
        "mail_admins": {
            "class": "django.utils.log.AdminEmailHandler",
            "level": "ERROR",
            "filters": ["require_debug_false", "once_per_error"],
        },
    },
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {
        # Named so that Django's own defaults (a mail for every 500) are replaced.
        "django": {"handlers": ["mail_admins"], "level": "INFO" if DEBUG else "WARNING"},
        "statecore": {"level": env_str("LOG_LEVEL", "INFO")},
        # Its warnings repeat each failure with the username and address masked; ours
        # (statecore.accounts) say them.
        "axes": {"level": "ERROR"},
    },
}

# --- The state domain -------------------------------------------------------
# Where a relative `session.session_path` (whatsapp-web.js's `.wwebjs_auth`) is looked for.
WHATSAPP_SESSION_BASE = Path(env_str("WHATSAPP_SESSION_BASE", str(BASE_DIR)))
# Where export_state --backup and StateManager.backup_state() write their copies.
STATE_BACKUP_DIR = Path(env_str("STATE_BACKUP_DIR", str(BASE_DIR / "backups")))
# The Undo window: an approved reply is not claimed for sending before it has passed.
APPROVAL_GRACE_SECONDS = env_int("APPROVAL_GRACE_SECONDS", 10)
# Pending replies older than this are marked overdue on the queue.
OVERDUE_MINUTES = env_int("OVERDUE_MINUTES", 15, minimum=1)
# Admins are mailed once when approved replies have waited this long to be sent.
SEND_DELAY_ALERT_MINUTES = env_int("SEND_DELAY_ALERT_MINUTES", 10, minimum=1)
# The overview suggests `auto` for a chat whose last this many drafts were approved as
# drafted, none edited or rejected in between (statecore/learning.py); 0: never.
SUGGEST_AUTO_AFTER = env_int("SUGGEST_AUTO_AFTER", 10)
# Admins are mailed once when drafts have waited this long for a reviewer.
ALERT_OVERDUE_MINUTES = env_int("ALERT_OVERDUE_MINUTES", 60, minimum=1)
# Shared secret of the gateway's POST /gateway/events; empty turns the endpoint off (404).
GATEWAY_TOKEN = env_str("GATEWAY_TOKEN")
# Which gateway speaks to WhatsApp (statecore/whatsapp/) and how to reach it: `wwebjs`
# (the scripts' own service, at the state's `api_endpoint`), `waha`, `evolution` or `cloud`
# with the GATEWAY_* settings of the README's table; checked here, so start-up stops on a
# missing or malformed one, naming it.
_gateway = _gateway_config.read(os.environ)
GATEWAY_KIND = _gateway.kind
GATEWAY_URL = _gateway.url
GATEWAY_API_KEY = _gateway.api_key
GATEWAY_SESSION = _gateway.session
GATEWAY_PHONE_NUMBER_ID = _gateway.phone_number_id
GATEWAY_WEBHOOK_SECRET = _gateway.webhook_secret
GATEWAY_VERIFY_TOKEN = _gateway.verify_token
# POST /gateway/webhook: a Cloud batch or an Evolution message with its preview is larger
# than a forwarded event.
GATEWAY_WEBHOOK_MAX_REQUEST_BYTES = env_int(
    "GATEWAY_WEBHOOK_MAX_REQUEST_BYTES", 256 * 1024, minimum=1024
)
# The least time between two sends of one sender (plus a little jitter), so a backlog
# drains at a human pace and not in a burst that gets a number banned.
SEND_MIN_INTERVAL_SECONDS = float(env_int("SEND_MIN_INTERVAL_SECONDS", 2))
# ASSISTANT: the dotted path of `draft_reply(message: dict) -> str | None`, called by the
# receiving loop for each customer message without a draft; empty: nobody drafts.
ASSISTANT = env_str("ASSISTANT").strip()
ASSISTANT_TIMEOUT_SECONDS = env_int("ASSISTANT_TIMEOUT_SECONDS", 60, minimum=1)

# Request bodies (statecore/middleware.py): a larger Content-Length gets 413 before it is read;
# a chunked body (no length) gets 413 anywhere but the upload.
MAX_REQUEST_BYTES = env_int("MAX_REQUEST_BYTES", 64 * 1024, minimum=1024)
# The upload's file limit (32 MiB, approvals/statefile_forms.py) plus the form around it.
STATE_UPLOAD_MAX_REQUEST_BYTES = env_int(
    "STATE_UPLOAD_MAX_REQUEST_BYTES", 32 * 1024 * 1024 + 64 * 1024, minimum=1024
)
# POST /gateway/events (parse_event also refuses over 16,384 bytes itself).
GATEWAY_EVENT_MAX_REQUEST_BYTES = env_int(
    "GATEWAY_EVENT_MAX_REQUEST_BYTES", 16 * 1024, minimum=1024
)
