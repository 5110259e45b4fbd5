"""Logs on the running stack: Django, Gunicorn and Celery write one JSON object per line into the
journal (dcs_json_logs), with the fields a log aggregator indexes."""

import json
import shlex

from conftest import APP, QUEUE_HOST, UNIT_PREFIX, WEB, host, http


def json_lines(name: str, unit: str, since: str) -> list[dict]:
    """The JSON objects among the lines `unit` logged on host `name` since `since`."""
    text = host(name).check_output(
        f"journalctl -u {shlex.quote(unit)} --since {shlex.quote(since)} --no-pager -o cat"
    )
    entries = []
    for line in text.splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


def now(name: str) -> str:
    return host(name).check_output("date '+%Y-%m-%d %H:%M:%S'")


def test_a_task_logs_json_lines_with_its_id_name_queue_and_runtime(api):
    queue = "reports"
    worker = QUEUE_HOST[queue]
    since = now(worker)
    task_id = api.submit("reports.tasks.generate_monthly_report", 2026, 11)
    assert api.wait(task_id)["state"] == "SUCCESS"
    unit = f"{UNIT_PREFIX}-worker@{queue}.service"
    lines = [e for e in json_lines(worker, unit, since) if e.get("task_id") == task_id]
    done = [e for e in lines if "runtime" in e]
    assert len(done) == 1, lines
    assert done[0]["task_name"] == "reports.tasks.generate_monthly_report"
    assert done[0]["queue"] == queue
    assert done[0]["retries"] == 0
    assert done[0]["logger"] == "celery.app.trace"
    assert 0 <= done[0]["runtime"] < 60
    assert {"time", "level", "message", "pid"} <= set(done[0])


def test_a_request_logs_a_json_access_line_and_django_its_warning(web):
    page = "/dcs-logs-test/no-such-page"
    since = now(WEB)
    status, _ = http(web, "GET", f"{page}?probe=1")
    assert status == 404
    lines = json_lines(WEB, f"{APP}-gunicorn.service", since)
    access = [e for e in lines if e.get("logger") == "gunicorn.access" and e.get("path") == page]
    assert [(e["method"], e["query"], e["status"]) for e in access] == [("GET", "probe=1", 404)], (
        lines
    )
    assert access[0]["duration"] >= 0
    warnings = [e for e in lines if e.get("logger") == "django.request"]
    assert [e["level"] for e in warnings] == ["WARNING"], lines
    assert page in warnings[0]["message"]
