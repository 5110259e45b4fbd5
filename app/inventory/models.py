from django.db import models


class StockItem(models.Model):
    sku = models.CharField(max_length=64, unique=True)
    quantity = models.IntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku}: {self.quantity}"


class SyncRun(models.Model):
    """One execution of inventory.tasks.sync_external_inventory."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    hostname = models.CharField(max_length=255, blank=True)
    queue = models.CharField(max_length=255, blank=True)
    source = models.CharField(max_length=16, default="local")
    items_synced = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at", "-pk"]

    def __str__(self) -> str:
        return f"SyncRun {self.started_at:%Y-%m-%d %H:%M:%S} on {self.hostname}"
