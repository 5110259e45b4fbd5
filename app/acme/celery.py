"""Celery application.

All configuration lives in Django settings under the ``CELERY_`` namespace
(see ``acme.settings`` and ``acme.celery_config``).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "acme.settings")

app = Celery("acme")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
