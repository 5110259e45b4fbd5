"""The whole stack, end to end: HTTP through nginx and Gunicorn, tasks through the broker to the
worker of their queue, Beat's periodic task, Flower's view of the workers."""

import base64
import json
import struct
import time
import zlib

import pytest
from conftest import (
    QUEUES,
    SCHEDULER,
    UNIT_PREFIX,
    WORKER,
    celery,
    http,
    journal,
    secret,
)

SERVICES = {
    "web": ["nginx.service", "acme-gunicorn.socket", "acme-gunicorn.service"],
    "scheduler": [
        "nginx.service",
        f"{UNIT_PREFIX}-beat.service",
        f"{UNIT_PREFIX}-flower.service",
    ],
    "worker": [f"{UNIT_PREFIX}-worker@{queue}.service" for queue in QUEUES],
}


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


@pytest.mark.parametrize(
    ("tier", "unit"),
    [(tier, unit) for tier, units in SERVICES.items() for unit in units],
)
def test_each_tier_runs_its_services(request, tier, unit):
    host = request.getfixturevalue(tier)
    service = host.service(unit)
    assert service.is_running, journal(host, unit)
    assert service.is_enabled


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
    assert state["result"]["hostname"] == f"{queue}@{WORKER}"


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
    assert new[0]["hostname"] == f"reports@{WORKER}"
    assert new[0]["finished_at"]


def test_only_the_scheduler_runs_beat_and_only_once(scheduler, worker, web):
    beats = scheduler.run("pgrep -u acme -f -- '[-]A acme beat'").stdout.split()
    assert len(beats) == 1, journal(scheduler, f"{UNIT_PREFIX}-beat.service")
    for other in (worker, web):
        assert other.run("pgrep -f -- '[-]A acme beat'").stdout.split() == []


def test_each_worker_consumes_only_its_own_queue(worker):
    result = celery(worker, "inspect active_queues --json --timeout 10")
    assert result.rc == 0, result.stderr
    consumed = {
        node: {q["name"] for q in queues} for node, queues in json.loads(result.stdout).items()
    }
    assert consumed == {f"{queue}@{WORKER}": {queue} for queue in QUEUES}


def test_flower_refuses_requests_without_credentials(scheduler):
    assert http(scheduler, "GET", "/flower/api/workers")[0] == 401


def test_flower_lists_every_worker_node(scheduler):
    expected = {f"{queue}@{WORKER}" for queue in QUEUES}
    credentials = f"admin:{secret('flower_password')}"
    deadline = time.monotonic() + 45
    while True:
        status, text = http(scheduler, "GET", "/flower/api/workers?refresh=1", basic=credentials)
        nodes = set(json.loads(text)) if status == 200 else set()
        if nodes >= expected or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert status == 200
    assert nodes == expected


def test_flower_metrics_are_served_to_the_scrape_network(scheduler):
    status, text = http(scheduler, "GET", "/flower/metrics")
    assert status == 200
    assert "flower_events_total" in text


def test_flower_metrics_are_denied_outside_the_scrape_network(web):
    assert http(web, "GET", "/flower/metrics", server=SCHEDULER)[0] == 403
