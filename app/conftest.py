"""Test configuration.

The environment below must be in place before ``acme.settings`` is imported, so
DJANGO_SETTINGS_MODULE is set here (not in pyproject.toml: pytest-django would
import the settings before any conftest runs). pytest-django finishes
``django.setup()`` in its own (trylast) ``pytest_configure``.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "acme.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,localhost")
os.environ.setdefault("DATABASE_URL", "sqlite://:memory:")
os.environ["CACHE_URL"] = ""
os.environ["CELERY_BROKER_URL"] = "memory://"
os.environ["CELERY_RESULT_BACKEND"] = "cache+memory://"
os.environ.setdefault("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
os.environ.setdefault("TASK_API_TOKEN", "test-token")
for _name in (
    "CELERY_TASK_ROUTES",
    "CELERY_TASK_QUEUES",
    "CELERY_QUORUM_QUEUES",
    "INVENTORY_FEED_URL",
):
    os.environ.pop(_name, None)

import pytest  # noqa: E402

TOKEN = "test-token"


def pytest_configure(config):
    from django.conf import settings

    # Force settings to load now (with the environment above) so that
    # pytest-django's trylast pytest_configure runs django.setup().
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"


@pytest.fixture
def celery_eager():
    """Run tasks synchronously in-process (tests only)."""
    from acme.celery import app

    # task_eager_propagates stays False: eager retries are only re-applied when the
    # Retry is not propagated; EagerResult.get() still re-raises task errors.
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield app
    finally:
        app.conf.task_always_eager = previous


@pytest.fixture
def auth_headers():
    return {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
