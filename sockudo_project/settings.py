"""Django settings. Every value comes from an environment variable with a working default:
SQLite, the in-process adapter and apps from the database (see the README's settings table)."""

from __future__ import annotations

import os
from pathlib import Path

from realtime.conf import from_environ
from realtime.conf.env import database_from_url, env_bool, env_list, env_str, secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

# DJANGO_SECRET_KEY, else the checkout's key file (written by `make run`), else the public development
# key, which the system check realtime.E002 refuses when DEBUG is off.
SECRET_KEY = secret_key(str(BASE_DIR / ".secret_key"))
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["*"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "django_prometheus",
    "apps_admin",
    "realtime",
    "history",
    "push",
]

MIDDLEWARE = [
    # First: the per-IP API limit runs before anything else looks at the request (http-api.md §1).
    "realtime.api.limits.APIRateLimitMiddleware",
    # HTTP metrics (django-prometheus, its hooks run inline) and HTTP API bytes per app; the
    # WebSocket path never passes through Django middleware.
    "realtime.api.metrics_middleware.PrometheusBeforeMiddleware",
    "realtime.api.metrics_middleware.http_api_metrics",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "realtime.api.metrics_middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "sockudo_project.urls"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "sockudo_project.asgi.application"
WSGI_APPLICATION = None

DATABASES = {
    "default": database_from_url(
        env_str("DATABASE_URL", "sqlite:///db.sqlite3") or "sqlite:///db.sqlite3", str(BASE_DIR)
    )
}
# django-prometheus's database series (connections, queries, errors, latency): the same backends,
# instrumented. The socket path never queries the database.
_INSTRUMENTED_ENGINES = {
    "django.db.backends.sqlite3": "django_prometheus.db.backends.sqlite3",
    "django.db.backends.postgresql": "django_prometheus.db.backends.postgresql",
}
DATABASES["default"]["ENGINE"] = _INSTRUMENTED_ENGINES.get(
    DATABASES["default"]["ENGINE"], DATABASES["default"]["ENGINE"]
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles"))

# The HTTP API's body limit is enforced by the API itself (413 as JSON); Django's own cap would
# answer first with a plain 400, so it is raised to match.
DATA_UPLOAD_MAX_MEMORY_SIZE = None

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "realtime.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}

# Server-wide realtime settings (realtime/conf.py lists every variable and its default).
SOCKUDO = from_environ()

# The Celery app that runs webhook (and push) deliveries when CELERY_BROKER_URL is set.
CELERY_APP = "sockudo_project.celery.app"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO").upper()},
    "loggers": {
        "daphne": {"level": os.environ.get("DAPHNE_LOG_LEVEL", "WARNING").upper()},
        # httpx logs every request at INFO (one line per webhook POST); outcomes are logged by us.
        "httpx": {"level": "WARNING"},
    },
}
