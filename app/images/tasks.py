import io
import time

from celery import shared_task
from django.utils import timezone
from PIL import Image

from core.taskinfo import task_context

from .models import Upload

# Refuse absurdly large images (decompression bombs) before decoding them.
Image.MAX_IMAGE_PIXELS = 50_000_000


def make_thumbnail(data: bytes, max_size: int) -> tuple[bytes, int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        keeps_alpha = image.mode in ("RGBA", "LA", "P")
        image = image.convert("RGBA" if keeps_alpha else "RGB")
        image.thumbnail((max_size, max_size))
        out = io.BytesIO()
        if keeps_alpha:
            image.save(out, format="PNG", optimize=True)
        else:
            image.save(out, format="JPEG", quality=85)
        return out.getvalue(), image.width, image.height


@shared_task(bind=True)
def resize_upload(self, upload_id: int, max_size: int = 256) -> dict:
    started_at = time.time()
    upload = Upload.objects.get(pk=upload_id)
    thumbnail, width, height = make_thumbnail(bytes(upload.original), int(max_size))
    Upload.objects.filter(pk=upload.pk).update(
        thumbnail=thumbnail, width=width, height=height, processed_at=timezone.now()
    )
    return {
        **task_context(self, started_at),
        "upload_id": upload_id,
        "width": width,
        "height": height,
        "bytes": len(thumbnail),
    }
