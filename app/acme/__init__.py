"""Acme: a small Django + Celery application deployed by django-celery-stack."""

from .celery import app as celery_app

__all__ = ("celery_app",)
