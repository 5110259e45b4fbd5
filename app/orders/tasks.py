import logging
import smtplib
import time

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from core.taskinfo import task_context

from .models import Order

logger = logging.getLogger(__name__)

# Errors worth retrying: the mail server or network is temporarily unhappy.
TRANSIENT_ERRORS = (smtplib.SMTPException, ConnectionError, TimeoutError, OSError)
MAX_RETRIES = 3
BACKOFF_BASE_SECONDS = 2
BACKOFF_MAX_SECONDS = 300


def backoff_seconds(retries: int) -> int:
    """Exponential backoff: 2, 4, 8, ... seconds, capped."""
    return min(BACKOFF_BASE_SECONDS * 2**retries, BACKOFF_MAX_SECONDS)


@shared_task(bind=True, max_retries=MAX_RETRIES, acks_late=True)
def send_order_confirmation(self, order_id: int) -> dict:
    started_at = time.time()
    try:
        order = Order.objects.get(pk=order_id)
    except Order.DoesNotExist:
        logger.warning("send_order_confirmation: order %s does not exist", order_id)
        return {**task_context(self, started_at), "order_id": order_id, "status": "missing"}

    if order.confirmation_sent_at is not None:
        # Redelivered (acks_late) after the mail went out: do not mail twice.
        return {**task_context(self, started_at), "order_id": order_id, "status": "already_sent"}

    try:
        send_mail(
            subject=f"Order #{order.pk} confirmed",
            message=f"Thank you for your order #{order.pk}. Total: {order.total}.",
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[order.email],
        )
    except TRANSIENT_ERRORS as exc:
        countdown = backoff_seconds(self.request.retries)
        logger.warning(
            "send_order_confirmation(%s) failed (%r); retry %d/%d in %ss",
            order_id,
            exc,
            self.request.retries + 1,
            MAX_RETRIES,
            countdown,
        )
        raise self.retry(exc=exc, countdown=countdown) from exc

    Order.objects.filter(pk=order.pk).update(confirmation_sent_at=timezone.now())
    return {
        **task_context(self, started_at),
        "order_id": order_id,
        "status": "sent",
        "retries": self.request.retries,
    }
