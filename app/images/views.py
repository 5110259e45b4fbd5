import base64
import binascii

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_POST

from core.api import BadRequest, api_view, json_body

from .models import Upload
from .tasks import resize_upload

MAX_UPLOAD_BYTES = 10 * 1024 * 1024


@api_view
@require_POST
def create_upload(request: HttpRequest) -> JsonResponse:
    """Accept raw image bytes, or JSON ``{"data": "<base64>", "max_size": 256}``."""
    max_size = 256
    content_type = request.content_type or ""
    if content_type == "application/json":
        data = json_body(request)
        try:
            raw = base64.b64decode(data.get("data") or "", validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise BadRequest("data must be base64-encoded image bytes") from exc
        max_size = data.get("max_size", max_size)
        if not isinstance(max_size, int) or not 1 <= max_size <= 4096:
            raise BadRequest("max_size must be an integer between 1 and 4096")
    else:
        raw = request.body
    if not raw:
        raise BadRequest("empty upload")
    if len(raw) > MAX_UPLOAD_BYTES:
        raise BadRequest("upload too large")

    with transaction.atomic():
        upload = Upload.objects.create(original=raw, content_type=content_type)
        upload_id = upload.pk
        transaction.on_commit(lambda: resize_upload.delay(upload_id, max_size))
    return JsonResponse({"id": upload.pk}, status=201)


@api_view
@require_GET
def upload_detail(request: HttpRequest, upload_id: int) -> JsonResponse:
    upload = get_object_or_404(
        Upload.objects.only("pk", "width", "height", "processed_at"),
        pk=upload_id,
    )
    return JsonResponse(
        {
            "id": upload.pk,
            "width": upload.width,
            "height": upload.height,
            "processed": upload.processed_at is not None,
            "processed_at": upload.processed_at.isoformat() if upload.processed_at else None,
        }
    )
