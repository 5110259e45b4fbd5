"""The reference app on the whole stack, end to end: its health check and task API through nginx
and Gunicorn, tasks through the broker to the worker of their queue, Beat's periodic task.
(What any project gets from the deployment is in test_tiers.py.)"""

import base64
import json
import struct
import time
import zlib

import pytest
from conftest import QUEUE_HOST, http


def png(width: int, height: int) -> bytes:
    """A solid grey PNG, built by hand so the test needs no imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_healthz_through_nginx_reports_database_broker_and_cache_ok(web):
    status, text = http(web, "GET", "/healthz")
    assert status == 200, text
    assert json.loads(text) == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok", "cache": "ok"},
    }


def test_the_task_api_refuses_requests_without_the_token(web):
    status, _ = http(web, "POST", "/api/tasks/", body={"task": "diagnostics.tasks.ping"})
    assert status == 401


def _order_confirmation(api) -> tuple[str, tuple]:
    order = api.post("/api/orders/", {"email": "buyer@example.com", "total": "12.50"})
    return "orders.tasks.send_order_confirmation", (order["id"],)


def _monthly_report(api) -> tuple[str, tuple]:
    return "reports.tasks.generate_monthly_report", (2026, 11)


def _resize_upload(api) -> tuple[str, tuple]:
    upload = api.post(
        "/api/uploads/",
        {"data": base64.b64encode(png(64, 48)).decode(), "max_size": 16},
    )
    return "images.tasks.resize_upload", (upload["id"], 16)


@pytest.mark.parametrize(
    ("queue", "make_task"),
    [
        ("notifications", _order_confirmation),
        ("reports", _monthly_report),
        ("media", _resize_upload),
    ],
)
def test_a_task_runs_on_the_worker_of_the_queue_it_is_routed_to(api, queue, make_task):
    name, args = make_task(api)
    task_id = api.submit(name, *args)
    state = api.wait(task_id)
    assert state["state"] == "SUCCESS", state
    # The task records where it ran; the result comes back from the result backend.
    assert state["result"]["queue"] == queue
    assert state["result"]["hostname"] == f"{queue}@{QUEUE_HOST[queue]}"


def test_the_resized_upload_is_no_larger_than_asked(api):
    upload = api.post(
        "/api/uploads/",
        {"data": base64.b64encode(png(200, 100)).decode(), "max_size": 32},
    )
    deadline = time.monotonic() + 60
    while not (detail := api.get(f"/api/uploads/{upload['id']}/"))["processed"]:
        assert time.monotonic() < deadline, detail
        time.sleep(1)
    assert max(detail["width"], detail["height"]) <= 32


def test_beat_fires_the_periodic_inventory_sync_and_a_reports_worker_runs_it(api):
    """Beat on the scheduler sends sync_external_inventory every 10 s here (300 s by default)."""
    seen = {run["id"] for run in api.get("/api/inventory/sync-runs/")["runs"]}
    deadline = time.monotonic() + 60
    while not (
        new := [r for r in api.get("/api/inventory/sync-runs/")["runs"] if r["id"] not in seen]
    ):
        assert time.monotonic() < deadline, "no inventory sync ran within 60 s"
        time.sleep(2)
    assert new[0]["hostname"] == f"reports@{QUEUE_HOST['reports']}"
    assert new[0]["finished_at"]
