"""Bearer-token protection and JSON helpers for the /api/ endpoints."""

import functools
import hmac
import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt


class BadRequest(Exception):
    """Raised by views to return a 400 JSON error."""


def api_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """CSRF-exempt JSON endpoint guarded by ``Authorization: Bearer <TASK_API_TOKEN>``."""

    @csrf_exempt
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        token = settings.TASK_API_TOKEN
        if not token:
            return JsonResponse({"error": "task API disabled"}, status=503)
        header = request.headers.get("Authorization", "")
        scheme, _, supplied = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            supplied.strip().encode(), token.encode()
        ):
            response = JsonResponse({"error": "unauthorized"}, status=401)
            response["WWW-Authenticate"] = "Bearer"
            return response
        try:
            return view(request, *args, **kwargs)
        except BadRequest as exc:
            return JsonResponse({"error": str(exc)}, status=400)

    return wrapper


def json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        data = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("JSON body must be an object")
    return data
