"""Task behaviour, executed eagerly in-process."""

import io
import smtplib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from celery.exceptions import Retry
from django.contrib.sessions.models import Session
from django.core import mail
from django.utils import timezone
from PIL import Image

from accounts.tasks import cleanup_expired_sessions
from diagnostics.models import DrillRun
from diagnostics.tasks import PROJECT_DIR, code_dirs, drill, flaky, ping
from images.models import Upload
from images.tasks import resize_upload
from inventory.models import StockItem, SyncRun
from inventory.tasks import sync_external_inventory
from notifications.tasks import send_weekly_digest
from orders.models import Order
from orders.tasks import MAX_RETRIES, backoff_seconds, send_order_confirmation
from reports.models import MonthlyReport
from reports.tasks import generate_monthly_report

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]

STANDARD_KEYS = {"hostname", "queue", "started_at"}


def assert_standard(result: dict):
    assert STANDARD_KEYS <= set(result)
    assert isinstance(result["started_at"], float)
    assert result["hostname"]


def make_order(email="buyer@example.com", total="12.50", created_at=None) -> Order:
    order = Order.objects.create(email=email, total=Decimal(total))
    if created_at is not None:
        Order.objects.filter(pk=order.pk).update(created_at=created_at)
    return order


# --- orders ---------------------------------------------------------------


def test_send_order_confirmation_sends_mail_and_marks_order():
    order = make_order()
    result = send_order_confirmation.delay(order.pk).get()
    assert result["status"] == "sent"
    assert_standard(result)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["buyer@example.com"]
    assert f"#{order.pk}" in mail.outbox[0].subject
    order.refresh_from_db()
    assert order.confirmation_sent_at is not None


def test_send_order_confirmation_is_idempotent():
    order = make_order()
    send_order_confirmation.delay(order.pk).get()
    second = send_order_confirmation.delay(order.pk).get()
    assert second["status"] == "already_sent"
    assert len(mail.outbox) == 1


def test_send_order_confirmation_missing_order_does_not_retry():
    with mock.patch("orders.tasks.send_mail") as send:
        result = send_order_confirmation.delay(999_999).get()
    assert result["status"] == "missing"
    assert result["order_id"] == 999_999
    send.assert_not_called()


def test_backoff_is_exponential():
    assert [backoff_seconds(n) for n in range(4)] == [2, 4, 8, 16]
    assert backoff_seconds(50) == 300


def test_send_order_confirmation_retries_transient_errors_then_gives_up():
    order = make_order()
    error = smtplib.SMTPServerDisconnected("mail server went away")
    countdowns = []
    original_retry = send_order_confirmation.retry

    def spy_retry(*args, **kwargs):
        countdowns.append(kwargs.get("countdown"))
        return original_retry(*args, **kwargs)

    with (
        mock.patch("orders.tasks.send_mail", side_effect=error) as send,
        mock.patch.object(send_order_confirmation, "retry", side_effect=spy_retry),
    ):
        result = send_order_confirmation.apply(args=(order.pk,), throw=False)

    assert result.state == "FAILURE"
    assert isinstance(result.result, smtplib.SMTPServerDisconnected)

    # One initial attempt + MAX_RETRIES retries, with growing backoff.
    assert MAX_RETRIES == 3
    assert send.call_count == 1 + MAX_RETRIES
    assert countdowns == [2, 4, 8, 16]  # the 4th call exceeds max_retries and re-raises
    order.refresh_from_db()
    assert order.confirmation_sent_at is None


def test_send_order_confirmation_raises_retry_on_transient_error():
    """Inside a worker the task raises celery's Retry with the backoff countdown."""
    order = make_order()
    send_order_confirmation.push_request(retries=1, is_eager=False, called_directly=False)
    try:
        with (
            mock.patch("orders.tasks.send_mail", side_effect=ConnectionRefusedError()),
            mock.patch.object(send_order_confirmation, "signature_from_request") as sig,
            pytest.raises(Retry) as excinfo,
        ):
            send_order_confirmation.run(order.pk)
    finally:
        send_order_confirmation.pop_request()
    assert excinfo.value.when == 4  # second attempt: 2 * 2**1
    assert isinstance(excinfo.value.exc, ConnectionRefusedError)
    sig.return_value.apply_async.assert_called_once()


def test_send_order_confirmation_recovers_after_transient_failure():
    order = make_order()
    with mock.patch("orders.tasks.send_mail", side_effect=[TimeoutError("slow"), 1]) as send:
        result = send_order_confirmation.apply(args=(order.pk,)).get()
    assert send.call_count == 2
    assert result["status"] == "sent"
    assert result["retries"] == 1
    order.refresh_from_db()
    assert order.confirmation_sent_at is not None


# --- diagnostics ----------------------------------------------------------


def test_ping_returns_standard_fields():
    result = ping.delay().get()
    assert_standard(result)
    assert result["pong"] is True


def test_a_drill_task_counts_its_start_and_its_finish_and_the_code_it_ran():
    drill.delay("unit", 1).get()
    drill.delay("unit", 1).get()
    run = DrillRun.objects.get(drill="unit", seq=1)
    assert (run.executions, run.completions) == (2, 2)
    assert run.code_dirs == [str(PROJECT_DIR)]


def test_the_code_of_this_process_comes_from_one_directory():
    assert code_dirs() == [str(PROJECT_DIR)]


@pytest.mark.parametrize("failures", [0, 1, 3, 5])
def test_flaky_retries_exactly_n_times(failures):
    calls = []
    original_retry = flaky.retry

    def spy_retry(*args, **kwargs):
        calls.append(kwargs)
        return original_retry(*args, **kwargs)

    with mock.patch.object(flaky, "retry", side_effect=spy_retry):
        result = flaky.apply(kwargs={"failures": failures, "countdown": 1}).get()
    assert result["retries"] == failures
    assert len(calls) == failures
    assert all(c["countdown"] == 1 and c["max_retries"] == failures for c in calls)
    assert_standard(result)


# --- reports --------------------------------------------------------------


def test_generate_monthly_report_aggregates_month():
    make_order(total="10.00", created_at=datetime(2025, 3, 1, 0, 0, tzinfo=UTC))
    make_order(total="2.50", created_at=datetime(2025, 3, 31, 23, 59, tzinfo=UTC))
    make_order(total="100.00", created_at=datetime(2025, 4, 1, 0, 0, tzinfo=UTC))
    make_order(total="7.00", created_at=datetime(2025, 2, 28, 23, 59, tzinfo=UTC))

    result = generate_monthly_report.delay(2025, 3).get()
    assert result["order_count"] == 2
    assert result["revenue"] == "12.50"
    assert len(result["digest"]) == 64
    assert_standard(result)

    report = MonthlyReport.objects.get(year=2025, month=3)
    assert report.order_count == 2
    assert report.revenue == Decimal("12.50")

    # Upsert: rerunning updates the same row.
    make_order(total="1.00", created_at=datetime(2025, 3, 15, tzinfo=UTC))
    again = generate_monthly_report.delay(2025, 3).get()
    assert again["order_count"] == 3
    assert MonthlyReport.objects.filter(year=2025, month=3).count() == 1


def test_generate_monthly_report_december_and_empty_month():
    make_order(total="5.00", created_at=datetime(2024, 12, 31, 12, tzinfo=UTC))
    assert generate_monthly_report.delay(2024, 12).get()["order_count"] == 1
    empty = generate_monthly_report.delay(2023, 1).get()
    assert empty["order_count"] == 0
    assert empty["revenue"] == "0.00"


# --- images ---------------------------------------------------------------


def image_bytes(size, mode="RGB", fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color="red" if mode == "RGB" else (255, 0, 0, 128)).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("size", "mode", "fmt", "max_size", "expected"),
    [
        ((800, 400), "RGB", "JPEG", 256, (256, 128)),
        ((300, 900), "RGBA", "PNG", 100, (33, 100)),
        ((50, 40), "RGB", "PNG", 256, (50, 40)),
    ],
)
def test_resize_upload_creates_bounded_thumbnail(size, mode, fmt, max_size, expected):
    upload = Upload.objects.create(original=image_bytes(size, mode, fmt))
    result = resize_upload.delay(upload.pk, max_size=max_size).get()
    assert (result["width"], result["height"]) == expected
    assert_standard(result)
    upload.refresh_from_db()
    assert (upload.width, upload.height) == expected
    with Image.open(io.BytesIO(bytes(upload.thumbnail))) as thumb:
        assert max(thumb.size) <= max_size
        assert thumb.size == expected
        assert thumb.format == ("PNG" if mode == "RGBA" else "JPEG")


# --- accounts -------------------------------------------------------------


def test_cleanup_expired_sessions_deletes_only_expired():
    now = timezone.now()
    Session.objects.create(session_key="a" * 32, session_data="x", expire_date=now - timedelta(1))
    Session.objects.create(session_key="b" * 32, session_data="x", expire_date=now - timedelta(2))
    Session.objects.create(session_key="c" * 32, session_data="x", expire_date=now + timedelta(1))
    result = cleanup_expired_sessions.delay().get()
    assert result["deleted"] == 2
    assert list(Session.objects.values_list("session_key", flat=True)) == ["c" * 32]
    assert_standard(result)


# --- inventory ------------------------------------------------------------


def test_sync_inventory_local_records_run(settings):
    settings.INVENTORY_FEED_URL = ""
    StockItem.objects.create(sku="A-1", quantity=3)
    StockItem.objects.create(sku="B-2", quantity=0)
    result = sync_external_inventory.delay().get()
    assert result["items_synced"] == 2
    assert result["source"] == "local"
    run = SyncRun.objects.get()
    assert run.items_synced == 2
    assert run.hostname == result["hostname"]
    assert run.finished_at is not None and run.finished_at >= run.started_at


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_sync_inventory_from_feed_upserts(settings):
    settings.INVENTORY_FEED_URL = "https://feed.example.com/stock.json"
    settings.INVENTORY_FEED_TIMEOUT = 3
    StockItem.objects.create(sku="A-1", quantity=1)
    feed = b'[{"sku": "A-1", "quantity": 10}, {"sku": "C-3", "quantity": 4}]'
    with mock.patch("urllib.request.urlopen", return_value=FakeResponse(feed)) as urlopen:
        result = sync_external_inventory.delay().get()
    assert urlopen.call_args.kwargs["timeout"] == 3
    assert result["items_synced"] == 2
    assert result["source"] == "feed"
    assert dict(StockItem.objects.values_list("sku", "quantity")) == {"A-1": 10, "C-3": 4}
    assert SyncRun.objects.get().source == "feed"


# --- notifications --------------------------------------------------------


def test_weekly_digest_mails_recipients(settings):
    settings.DIGEST_RECIPIENTS = ["ops@example.com", "boss@example.com"]
    make_order(email="recent@example.com", total="20.00")
    make_order(email="old@example.com", total="99.00", created_at=timezone.now() - timedelta(10))
    result = send_weekly_digest.delay().get()
    assert result["sent"] is True
    assert result["order_count"] == 1
    assert result["revenue"] == "20.00"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ops@example.com", "boss@example.com"]
    assert "recent@example.com" in message.body
    assert "old@example.com" not in message.body


def test_weekly_digest_without_recipients_sends_nothing(settings):
    settings.DIGEST_RECIPIENTS = []
    result = send_weekly_digest.delay().get()
    assert result["sent"] is False
    assert mail.outbox == []
