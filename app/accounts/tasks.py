import time

from celery import shared_task
from django.contrib.sessions.models import Session
from django.utils import timezone

from core.taskinfo import task_context


@shared_task(bind=True)
def cleanup_expired_sessions(self) -> dict:
    """Delete expired database sessions (what ``manage.py clearsessions`` does)."""
    started_at = time.time()
    deleted, _ = Session.objects.filter(expire_date__lt=timezone.now()).delete()
    return {**task_context(self, started_at), "deleted": deleted}
