from django.db import models


class Upload(models.Model):
    """An uploaded image. Bytes live in the database: web and worker hosts share no disk."""

    original = models.BinaryField()
    content_type = models.CharField(max_length=100, blank=True)
    thumbnail = models.BinaryField(null=True, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Upload #{self.pk}"
