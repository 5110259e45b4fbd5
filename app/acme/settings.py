"""Django settings for acme.

12-factor: every deploy-specific value comes from an environment variable, with
safe defaults for local development (sqlite, locmem cache, redis on localhost).
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .celery_config import build_celery_settings
from .env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
ENV = os.environ

DEBUG = env_bool(ENV, "DJANGO_DEBUG", False)

SECRET_KEY = env_str(ENV, "DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false "
            "(set DJANGO_DEBUG=1 for local development)."
        )
    SECRET_KEY = "django-insecure-local-development-only"  # noqa: S105

ALLOWED_HOSTS = env_list(ENV, "DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list(ENV, "DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "core",
    "orders",
    "reports",
    "images",
    "accounts",
    "inventory",
    "notifications",
    "diagnostics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "acme.urls"
WSGI_APPLICATION = "acme.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# --- Database -------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str(ENV, "DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int(ENV, "CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault(
        "connect_timeout", env_int(ENV, "DATABASE_CONNECT_TIMEOUT", 5)
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ----------------------------------------------------------------
CACHE_URL = env_str(ENV, "CACHE_URL")
if CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
elif not CACHE_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    raise ImproperlyConfigured("CACHE_URL must be empty or a redis:// / rediss:// URL")

# --- Auth / i18n ----------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static / media -------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = env_str(ENV, "DJANGO_STATIC_ROOT") or str(BASE_DIR / "staticfiles")
MEDIA_URL = "media/"
MEDIA_ROOT = env_str(ENV, "DJANGO_MEDIA_ROOT") or str(BASE_DIR / "media")

# --- Security (TLS terminated by a reverse proxy) -------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = env_bool(ENV, "DJANGO_USE_X_FORWARDED_HOST", False)
SECURE_SSL_REDIRECT = env_bool(ENV, "DJANGO_SECURE_SSL_REDIRECT", False)
# /healthz is probed over plain HTTP by load balancers and the deploy.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = env_bool(ENV, "DJANGO_SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool(ENV, "DJANGO_CSRF_COOKIE_SECURE", False)
SECURE_HSTS_SECONDS = env_int(ENV, "DJANGO_SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool(ENV, "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool(ENV, "DJANGO_SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Email ----------------------------------------------------------------
EMAIL_BACKEND = (
    env_str(ENV, "DJANGO_EMAIL_BACKEND") or "django.core.mail.backends.smtp.EmailBackend"
)
EMAIL_HOST = env_str(ENV, "EMAIL_HOST") or "localhost"
EMAIL_PORT = env_int(ENV, "EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str(ENV, "EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str(ENV, "EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool(ENV, "EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int(ENV, "EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str(ENV, "DEFAULT_FROM_EMAIL") or "acme@localhost"
SERVER_EMAIL = DEFAULT_FROM_EMAIL
DIGEST_RECIPIENTS = env_list(ENV, "DIGEST_RECIPIENTS")

# Uploads arrive as raw bytes or base64 JSON (images.views).
DATA_UPLOAD_MAX_MEMORY_SIZE = 15 * 1024 * 1024

# --- Application ----------------------------------------------------------
TASK_API_TOKEN = env_str(ENV, "TASK_API_TOKEN")
INVENTORY_FEED_URL = env_str(ENV, "INVENTORY_FEED_URL")
INVENTORY_FEED_TIMEOUT = env_int(ENV, "INVENTORY_FEED_TIMEOUT", 10)

# --- Celery (namespace CELERY_) -------------------------------------------
globals().update(build_celery_settings(ENV))

# --- Logging: everything to stdout, journald captures it ------------------
# Celery's own loggers are left to the worker (--loglevel): a "celery" logger here, bound to
# sys.stdout before the worker redirects stdout into logging, swallowed every worker log line.
LOG_LEVEL = (env_str(ENV, "DJANGO_LOG_LEVEL") or "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "plain",
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["stdout"], "level": LOG_LEVEL, "propagate": False},
    },
}
