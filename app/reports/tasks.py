import csv
import hashlib
import io
import time
from datetime import UTC, datetime
from decimal import Decimal

from celery import shared_task
from django.db.models import Count, Sum

from core.taskinfo import task_context
from orders.models import Order

from .models import MonthlyReport

# Rounds of hashing over the CSV: deliberately CPU-bound work so the "reports"
# queue exercises worker concurrency/time limits.
HASH_ROUNDS = 2000


def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 1..12, got {month}")
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


CENTS = Decimal("0.01")


@shared_task(bind=True)
def generate_monthly_report(self, year: int, month: int) -> dict:
    started_at = time.time()
    start, end = month_bounds(int(year), int(month))
    orders = Order.objects.filter(created_at__gte=start, created_at__lt=end)
    totals = orders.aggregate(order_count=Count("id"), revenue=Sum("total"))
    order_count = totals["order_count"] or 0
    revenue = Decimal(totals["revenue"] or 0).quantize(CENTS)

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "email", "total", "created_at"])
    for row in orders.order_by("pk").values_list("pk", "email", "total", "created_at").iterator():
        writer.writerow([row[0], row[1], row[2], row[3].isoformat()])
    digest = hashlib.sha256(buffer.getvalue().encode()).digest()
    for _ in range(HASH_ROUNDS):
        digest = hashlib.sha256(digest).digest()

    report, _ = MonthlyReport.objects.update_or_create(
        year=year,
        month=month,
        defaults={"order_count": order_count, "revenue": revenue, "digest": digest.hex()},
    )
    return {
        **task_context(self, started_at),
        "report_id": report.pk,
        "year": int(year),
        "month": int(month),
        "order_count": order_count,
        "revenue": str(revenue),
        "digest": digest.hex(),
    }
