import time
from datetime import timedelta
from decimal import Decimal

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Count, Sum
from django.utils import timezone

from core.taskinfo import task_context
from orders.models import Order

CENTS = Decimal("0.01")


@shared_task(bind=True, max_retries=3, default_retry_delay=60)
def send_weekly_digest(self) -> dict:
    """Mail a summary of the last 7 days of orders to DIGEST_RECIPIENTS."""
    started_at = time.time()
    recipients = list(settings.DIGEST_RECIPIENTS)
    until = timezone.now()
    since = until - timedelta(days=7)
    orders = Order.objects.filter(created_at__gte=since, created_at__lt=until)
    totals = orders.aggregate(count=Count("id"), revenue=Sum("total"))
    count = totals["count"] or 0
    revenue = Decimal(totals["revenue"] or 0).quantize(CENTS)
    result = {
        **task_context(self, started_at),
        "order_count": count,
        "revenue": str(revenue),
        "recipients": len(recipients),
        "sent": False,
    }
    if not recipients:
        return result

    lines = [
        f"Orders from {since:%Y-%m-%d} to {until:%Y-%m-%d}: {count}",
        f"Revenue: {revenue}",
        "",
    ]
    lines += [f"#{o.pk} {o.created_at:%Y-%m-%d} {o.email} {o.total}" for o in orders[:100]]
    try:
        send_mail(
            subject=f"Weekly order digest ({count} orders)",
            message="\n".join(lines),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=recipients,
        )
    except OSError as exc:  # includes SMTPException and connection errors
        raise self.retry(exc=exc) from exc
    result["sent"] = True
    return result
