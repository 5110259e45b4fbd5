from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from core.api import api_view

from .models import SyncRun


def _iso(value):
    return value.isoformat() if value else None


@api_view
@require_GET
def sync_runs(request: HttpRequest) -> JsonResponse:
    runs = SyncRun.objects.order_by("-started_at", "-pk")[:20]
    return JsonResponse(
        {
            "runs": [
                {
                    "id": run.pk,
                    "started_at": _iso(run.started_at),
                    "finished_at": _iso(run.finished_at),
                    "hostname": run.hostname,
                    "queue": run.queue,
                    "source": run.source,
                    "items_synced": run.items_synced,
                }
                for run in runs
            ]
        }
    )
