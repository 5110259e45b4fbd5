"""HTTP endpoints: health check and the token-protected JSON API."""

import base64
import io
import json
from unittest import mock

import pytest
from django.core import mail
from PIL import Image

from acme.celery import app as celery_app
from images.models import Upload
from inventory.models import SyncRun
from orders.models import Order

pytestmark = pytest.mark.django_db


def post_json(client, url, data, **headers):
    return client.post(url, data=json.dumps(data), content_type="application/json", **headers)


# --- livez ----------------------------------------------------------------


def test_livez_answers_without_touching_the_broker(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


# --- healthz --------------------------------------------------------------


def test_healthz_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok", "cache": "ok"},
    }


def test_healthz_broker_down(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["broker"] == "fail"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["cache"] == "ok"


def test_healthz_cache_down(client, caplog):
    secret_detail = "cache down at redis://app:hunter2@10.0.0.5"
    with mock.patch("core.views.cache.get", side_effect=ConnectionError(secret_detail)):
        response = client.get("/healthz")
    assert response.status_code == 503
    # The client learns which check failed, never the exception's text; the log has it.
    assert response.json()["checks"] == {"database": "ok", "broker": "ok", "cache": "fail"}
    assert secret_detail not in response.content.decode()
    assert secret_detail in caplog.text


def test_healthz_needs_no_token(client, settings):
    settings.TASK_API_TOKEN = ""
    assert client.get("/healthz").status_code == 200


# --- auth -----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": "Basic dGVzdC10b2tlbg=="}],
)
def test_api_requires_token(client, headers):
    response = post_json(client, "/api/tasks/", {"task": "diagnostics.tasks.ping"}, **headers)
    assert response.status_code == 401
    assert client.get("/api/inventory/sync-runs/", **headers).status_code == 401


def test_api_disabled_without_configured_token(client, settings, auth_headers):
    settings.TASK_API_TOKEN = ""
    response = post_json(client, "/api/tasks/", {"task": "diagnostics.tasks.ping"}, **auth_headers)
    assert response.status_code == 503
    assert response.json()["error"] == "task API disabled"


# --- task API -------------------------------------------------------------


def test_submit_task_accepted(client, auth_headers):
    with mock.patch.object(celery_app, "send_task", wraps=celery_app.send_task) as send:
        response = post_json(
            client,
            "/api/tasks/",
            {"task": "diagnostics.tasks.ping", "args": [], "kwargs": {}},
            **auth_headers,
        )
    assert response.status_code == 202
    body = response.json()
    assert body["task"] == "diagnostics.tasks.ping"
    assert len(body["id"]) == 36
    send.assert_called_once_with("diagnostics.tasks.ping", args=[], kwargs={})


def test_submit_task_with_countdown_and_queue(client, auth_headers):
    with mock.patch.object(celery_app, "send_task") as send:
        send.return_value.id = "abc"
        response = post_json(
            client,
            "/api/tasks/",
            {
                "task": "diagnostics.tasks.flaky",
                "kwargs": {"failures": 2},
                "countdown": 5,
                "queue": "reports",
            },
            **auth_headers,
        )
    assert response.status_code == 202
    send.assert_called_once_with(
        "diagnostics.tasks.flaky", args=[], kwargs={"failures": 2}, countdown=5, queue="reports"
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"task": "no.such.task"},
        {"task": "celery.backend_cleanup"},
        {"task": "celery.ping"},
        {},
        {"task": "diagnostics.tasks.ping", "args": "nope"},
        {"task": "diagnostics.tasks.ping", "countdown": -1},
    ],
)
def test_submit_task_rejects_bad_requests(client, auth_headers, payload):
    with mock.patch.object(celery_app, "send_task") as send:
        response = post_json(client, "/api/tasks/", payload, **auth_headers)
    assert response.status_code == 400
    send.assert_not_called()


def test_submit_task_invalid_json(client, auth_headers):
    response = client.post(
        "/api/tasks/", data="{nope", content_type="application/json", **auth_headers
    )
    assert response.status_code == 400


def test_task_status_pending_and_success(client, auth_headers):
    response = client.get("/api/tasks/11111111-2222-3333-4444-555555555555/", **auth_headers)
    assert response.status_code == 200
    assert response.json()["state"] == "PENDING"
    assert response.json()["result"] is None

    task_id = "aaaaaaaa-2222-3333-4444-555555555555"
    celery_app.backend.store_result(task_id, {"hostname": "w1", "queue": "celery"}, "SUCCESS")
    body = client.get(f"/api/tasks/{task_id}/", **auth_headers).json()
    assert body["state"] == "SUCCESS"
    assert body["result"] == {"hostname": "w1", "queue": "celery"}
    assert body["date_done"]


def test_task_status_failure(client, auth_headers):
    task_id = "bbbbbbbb-2222-3333-4444-555555555555"
    celery_app.backend.mark_as_failure(task_id, ValueError("boom"))
    body = client.get(f"/api/tasks/{task_id}/", **auth_headers).json()
    assert body["state"] == "FAILURE"
    assert body["result"] == "ValueError: boom"


# --- orders ---------------------------------------------------------------


def test_create_order_dispatches_on_commit(
    client, auth_headers, django_capture_on_commit_callbacks, celery_eager
):
    with mock.patch("orders.views.send_order_confirmation.delay") as delay:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = post_json(
                client, "/api/orders/", {"email": "a@example.com", "total": "12.50"}, **auth_headers
            )
        assert response.status_code == 201
        delay.assert_not_called()  # nothing is sent before the transaction commits
        assert len(callbacks) == 1
        callbacks[0]()
    order = Order.objects.get(pk=response.json()["id"])
    assert str(order.total) == "12.50"
    delay.assert_called_once_with(order.pk)


def test_create_order_end_to_end_eager(
    client, auth_headers, django_capture_on_commit_callbacks, celery_eager
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(
            client, "/api/orders/", {"email": "b@example.com", "total": "3"}, **auth_headers
        )
    assert response.status_code == 201
    order = Order.objects.get(pk=response.json()["id"])
    assert order.confirmation_sent_at is not None
    assert mail.outbox[0].to == ["b@example.com"]


@pytest.mark.parametrize(
    "payload",
    [{"email": "not-an-email", "total": "1"}, {"email": "a@example.com", "total": "abc"}, {}],
)
def test_create_order_validation(client, auth_headers, payload):
    response = post_json(client, "/api/orders/", payload, **auth_headers)
    assert response.status_code == 400
    assert Order.objects.count() == 0


# --- uploads --------------------------------------------------------------


def png_bytes(size=(600, 300)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "blue").save(buf, "PNG")
    return buf.getvalue()


def test_upload_raw_bytes_is_resized(
    client, auth_headers, django_capture_on_commit_callbacks, celery_eager
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/uploads/", data=png_bytes(), content_type="image/png", **auth_headers
        )
    assert response.status_code == 201
    upload_id = response.json()["id"]
    detail = client.get(f"/api/uploads/{upload_id}/", **auth_headers).json()
    assert (detail["width"], detail["height"]) == (256, 128)
    assert detail["processed"] is True


def test_upload_base64_json_dispatches_after_commit(
    client, auth_headers, django_capture_on_commit_callbacks
):
    payload = {"data": base64.b64encode(png_bytes()).decode(), "max_size": 64}
    with (
        mock.patch("images.views.resize_upload.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = post_json(client, "/api/uploads/", payload, **auth_headers)
    assert response.status_code == 201
    upload = Upload.objects.get(pk=response.json()["id"])
    assert bytes(upload.original) == base64.b64decode(payload["data"])
    delay.assert_called_once_with(upload.pk, 64)
    detail = client.get(f"/api/uploads/{upload.pk}/", **auth_headers).json()
    assert detail["processed"] is False and detail["width"] is None


def test_upload_rejects_empty_and_bad_base64(client, auth_headers):
    assert (
        client.post("/api/uploads/", data=b"", content_type="image/png", **auth_headers).status_code
        == 400
    )
    assert post_json(client, "/api/uploads/", {"data": "!!!"}, **auth_headers).status_code == 400


# --- inventory ------------------------------------------------------------


def test_sync_runs_newest_first_limited(client, auth_headers):
    from datetime import UTC, datetime, timedelta

    base = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(25):
        SyncRun.objects.create(
            started_at=base + timedelta(minutes=i),
            finished_at=base + timedelta(minutes=i, seconds=1),
            hostname=f"worker-{i}",
            items_synced=i,
        )
    runs = client.get("/api/inventory/sync-runs/", **auth_headers).json()["runs"]
    assert len(runs) == 20
    assert runs[0]["hostname"] == "worker-24"
    assert runs[-1]["hostname"] == "worker-5"
    assert set(runs[0]) >= {"started_at", "finished_at", "hostname", "items_synced"}


def test_healthz_does_not_hang_on_silent_broker(client, settings):
    """A broker that accepts TCP but never answers fails the check within seconds."""
    import socket
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    accepted = []

    def accept_forever():
        try:
            while True:
                accepted.append(server.accept()[0])
        except OSError:
            pass

    threading.Thread(target=accept_forever, daemon=True).start()
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    started = time.monotonic()
    try:
        response = client.get("/healthz")
    finally:
        server.close()
        for conn in accepted:
            conn.close()
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] != "ok"
    assert time.monotonic() - started < 6
