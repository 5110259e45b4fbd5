import json
import logging
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.taskinfo import task_context

from .models import StockItem, SyncRun

logger = logging.getLogger(__name__)


def fetch_feed(url: str, timeout: float) -> list[dict[str, Any]]:
    """Fetch ``[{"sku": ..., "quantity": ...}, ...]`` from the external feed."""
    if not url.startswith(("http://", "https://")):
        raise ValueError("INVENTORY_FEED_URL must be an http(s) URL")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        payload = json.load(response)
    if not isinstance(payload, list):
        raise ValueError("inventory feed must be a JSON list")
    return payload


def upsert_items(items: list[dict[str, Any]]) -> int:
    synced = 0
    with transaction.atomic():
        for item in items:
            sku = str(item["sku"]).strip()
            if not sku:
                continue
            StockItem.objects.update_or_create(
                sku=sku, defaults={"quantity": int(item["quantity"])}
            )
            synced += 1
    return synced


@shared_task(bind=True)
def sync_external_inventory(self) -> dict:
    started_at = time.time()
    context = task_context(self, started_at)
    run = SyncRun.objects.create(
        started_at=datetime.fromtimestamp(started_at, tz=UTC),
        hostname=context["hostname"] or "",
        queue=context["queue"] or "",
    )
    url = settings.INVENTORY_FEED_URL
    if url:
        run.source = "feed"
        items_synced = upsert_items(fetch_feed(url, settings.INVENTORY_FEED_TIMEOUT))
    else:
        # No external feed configured: reconcile what we have locally.
        run.source = "local"
        items_synced = StockItem.objects.count()
    run.items_synced = items_synced
    run.finished_at = timezone.now()
    run.save(update_fields=["source", "items_synced", "finished_at"])
    logger.info("inventory sync %s: %d items from %s", run.pk, items_synced, run.source)
    return {
        **task_context(self, started_at),
        "sync_run_id": run.pk,
        "source": run.source,
        "items_synced": items_synced,
    }
