from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from core.api import BadRequest, api_view, json_body

from .models import Order
from .tasks import send_order_confirmation


@api_view
@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    data = json_body(request)
    email = data.get("email")
    try:
        validate_email(email)
    except ValidationError as exc:
        raise BadRequest("a valid email is required") from exc
    try:
        total = Decimal(str(data.get("total")))
    except (InvalidOperation, ValueError) as exc:
        raise BadRequest("total must be a decimal number") from exc
    if not total.is_finite() or total < 0:
        raise BadRequest("total must be a non-negative number")

    with transaction.atomic():
        order = Order.objects.create(email=email, total=total.quantize(Decimal("0.01")))
        order_id = order.pk
        transaction.on_commit(lambda: send_order_confirmation.delay(order_id))
    return JsonResponse({"id": order.pk}, status=201)
