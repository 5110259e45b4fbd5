"""Monitoring on the running stack: Prometheus on the monitoring host scrapes every target the
inventory lists, and its alerts travel through Alertmanager to the webhook receiver the inventory
names (dcs_alert_webhook_url): here a small receiver on the monitoring host that writes down every
notification. The scenario shortens the scrape, evaluation and alert waits to seconds."""

import calendar
import json
import shlex
import time
import urllib.parse

import dcs_testlib
import pytest
from conftest import (
    BROKERS,
    DATABASE,
    INVENTORY,
    QUEUE_HOST,
    QUEUE_NODES,
    SCHEDULER,
    UNIT_PREFIX,
    WEB,
    host,
    http,
    with_app,
)

MONITORING = INVENTORY.get_hosts("monitoring")[0]
ALL_HOSTS = INVENTORY.get_hosts("all")
NOTIFICATIONS_FILE = "/run/dcs-test-alerts.jsonl"
# Alertmanager's webhook JSON, one notification per line; the port is the scenario's
# dcs_alert_webhook_url.
RECEIVER = f"""
import http.server

class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open({NOTIFICATIONS_FILE!r}, "ab") as out:
            out.write(body.replace(b"\\n", b"") + b"\\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", 9099), Receiver).serve_forever()
"""
# The reference app's reports queue, which one worker host alone runs (host_vars): stopping its unit
# leaves the queue without a consumer.
QUEUE = "reports"
assert len(QUEUE_NODES[QUEUE]) == 1, f"the drills need {QUEUE} on one worker host: {QUEUE_NODES}"
# Waiting tasks above which a queue raises CeleryQueueBacklog (the scenario's threshold).
BACKLOG = int(INVENTORY.get_variables(MONITORING)["dcs_alert_queue_backlog"])


@pytest.fixture(scope="module")
def monitoring():
    return host(MONITORING)


@pytest.fixture(scope="module")
def receiver(monitoring):
    monitoring.run("systemctl stop dcs-test-alerts")
    monitoring.run(f"rm -f {NOTIFICATIONS_FILE}")
    dcs_testlib.start_unit(monitoring, "dcs-test-alerts", f"python3 -c {shlex.quote(RECEIVER)}")
    yield monitoring
    monitoring.run("systemctl stop dcs-test-alerts")


def prometheus(monitoring, path: str) -> dict:
    """GET Prometheus' API on the monitoring host (it listens on loopback there)."""
    status, text = dcs_testlib.http(monitoring, "GET", f"http://127.0.0.1:9090{path}")
    assert status == 200, text
    return json.loads(text)["data"]


def query(monitoring, promql: str) -> list[dict]:
    """The samples of an instant PromQL query."""
    return prometheus(monitoring, "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))[
        "result"
    ]


def notified(monitoring, since: float) -> list[dict]:
    """Every alert of every notification the receiver got, with the notification's status, for
    alerts that started at or after `since` (Unix time)."""
    text = monitoring.run(f"cat {NOTIFICATIONS_FILE} 2>/dev/null").stdout
    alerts = []
    for line in text.splitlines():
        for alert in json.loads(line)["alerts"]:
            started = calendar.timegm(time.strptime(alert["startsAt"][:19], "%Y-%m-%dT%H:%M:%S"))
            if started >= since - 2:
                alerts.append(alert)
    return alerts


def wait_for(monitoring, since: float, status: str, name: str, labels: dict, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for alert in notified(monitoring, since):
            if (
                alert["status"] == status
                and alert["labels"]["alertname"] == name
                and labels.items() <= alert["labels"].items()
            ):
                return alert
        time.sleep(2)
    seen = [(a["status"], a["labels"]) for a in notified(monitoring, since)]
    raise AssertionError(f"no {status} {name} {labels} within {timeout} s; notified: {seen}")


def test_prometheus_scrapes_every_target_the_inventory_lists_and_each_is_up(monitoring):
    expected = (
        {("node", name) for name in ALL_HOSTS}
        | {("redis", name) for name in BROKERS}
        | {("postgres", name) for name in INVENTORY.get_hosts("database")}
        | {("nginx", name) for name in {*INVENTORY.get_hosts("web"), SCHEDULER}}
        | {
            ("flower", SCHEDULER),
            ("heartbeat", SCHEDULER),
            ("prometheus", MONITORING),
            ("alertmanager", MONITORING),
        }
    )
    deadline = time.monotonic() + 60
    while True:
        targets = prometheus(monitoring, "/api/v1/targets")["activeTargets"]
        health = {(t["labels"]["job"], t["labels"]["host"]): t["health"] for t in targets}
        all_up = set(health) == expected and set(health.values()) == {"up"}
        if all_up or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert set(health) == expected
    assert {target: state for target, state in health.items() if state != "up"} == {}


def test_nginx_counts_each_request_by_status_for_prometheus(monitoring):
    """Every request nginx serves becomes a line of its metrics log, which mtail turns into
    nginx_http_requests_total{site, status}: five requests for a page that does not exist raise the
    404 count of the web host's site by five."""
    web = host(WEB)
    counted = f'sum(nginx_http_requests_total{{host="{WEB}",status="404"}}) or vector(0)'

    def count() -> float:
        return float(query(monitoring, counted)[0]["value"][1])

    def settled() -> float:
        """The count once no earlier request is still on its way (log, mtail, scrape)."""
        deadline = time.monotonic() + 30
        previous = count()
        while time.monotonic() < deadline:
            time.sleep(3)  # longer than the scenario's 2-s scrape interval
            current = count()
            if current == previous:
                return current
            previous = current
        raise AssertionError(f"the 404 count kept moving: {previous}")

    before = settled()
    for _ in range(5):
        status, _ = http(web, "GET", "/dcs-monitoring-test/no-such-page")
        assert status == 404
    deadline = time.monotonic() + 30
    while count() < before + 5 and time.monotonic() < deadline:
        time.sleep(1)
    assert count() == before + 5


def test_the_database_exporter_reads_statistics_as_a_role_that_cannot_open_the_apps_database(
    monitoring,
):
    """The PostgreSQL exporter logs in through the Unix socket as its OS user (peer, no password),
    a pg_monitor member: Prometheus sees the database up, and that role cannot connect to the
    application's database at all."""
    up = query(monitoring, "pg_up")
    assert [(s["metric"]["host"], s["value"][1]) for s in up] == [(DATABASE, "1")], up
    database = host(DATABASE)

    def sql(query: str, as_user: str = "postgres", db: str = "postgres"):
        return database.run(f"runuser -u {as_user} -- psql -XAtq -d {db} -c {shlex.quote(query)}")

    member = sql("SELECT pg_has_role('prometheus', 'pg_monitor', 'MEMBER')").stdout.strip()
    assert member == "t"
    closed = sql(
        "SELECT datname FROM pg_database WHERE NOT datistemplate"
        " AND NOT has_database_privilege('prometheus', datname, 'CONNECT')"
    ).stdout.split()
    assert closed, "the monitor role may connect to every database"
    refused = sql("SELECT 1", as_user="prometheus", db=closed[0])
    assert refused.rc != 0
    assert "permission denied" in refused.stderr, refused.stderr


def test_every_alert_rule_is_loaded_and_healthy(monitoring):
    rules = [
        rule
        for group in prometheus(monitoring, "/api/v1/rules")["groups"]
        for rule in group["rules"]
    ]
    names = {rule["name"] for rule in rules}
    assert {
        "HostDown",
        "ScrapeTargetDown",
        "CeleryWorkerOffline",
        "CeleryQueueWithoutConsumer",
        "CeleryTaskFailureRateHigh",
        "CeleryTaskRetryRateHigh",
        "BrokerDown",
        "CeleryQueueBacklog",
        "CeleryQueueStale",
        "CeleryQueueHeartbeatLate",
    } <= names
    assert [rule["name"] for rule in rules if rule["health"] != "ok"] == []
    assert all(rule["annotations"].get("runbook") for rule in rules)
    # One "no consumer" rule per queue of the inventory.
    queues = {
        rule["labels"]["queue"] for rule in rules if rule["name"] == "CeleryQueueWithoutConsumer"
    }
    assert queues == set(QUEUE_NODES)


def test_a_queue_whose_only_worker_stops_raises_alerts_that_reach_the_webhook_and_resolve(
    receiver, web
):
    """The worker of a queue stops while tasks keep arriving: it is offline, the queue has no
    consumer, a backlog and stale tasks; once the worker is back every alert resolves."""
    worker_host = host(QUEUE_HOST[QUEUE])
    unit = f"{UNIT_PREFIX}-worker@{QUEUE}.service"
    node = f"{QUEUE}@{QUEUE_HOST[QUEUE]}"
    stopped_at = time.time()
    assert worker_host.run(f"systemctl stop {unit}").rc == 0
    try:
        with_app(
            web,
            f"ids = [app.send_task('celery.accumulate', args=[n], queue={QUEUE!r}).id"
            f" for n in range({BACKLOG + 2})]\n"
            "print(json.dumps(ids))",
        )
        raised = [
            wait_for(receiver, stopped_at, "firing", "CeleryWorkerOffline", {"worker": node}),
            wait_for(
                receiver, stopped_at, "firing", "CeleryQueueWithoutConsumer", {"queue": QUEUE}
            ),
            wait_for(receiver, stopped_at, "firing", "CeleryQueueBacklog", {"queue": QUEUE}),
            wait_for(receiver, stopped_at, "firing", "CeleryQueueStale", {"queue": QUEUE}),
        ]
    finally:
        assert worker_host.run(f"systemctl start {unit}").rc == 0
    assert all(alert["annotations"]["runbook"] for alert in raised)
    assert raised[1]["labels"]["severity"] == "critical"
    for alert in raised:
        labels = {k: v for k, v in alert["labels"].items() if k in ("worker", "queue")}
        wait_for(receiver, stopped_at, "resolved", alert["labels"]["alertname"], labels)


def test_a_task_that_keeps_retrying_raises_the_retry_rate_alert(receiver, web):
    task = "diagnostics.tasks.flaky"
    sent_at = time.time()
    with_app(
        web,
        f"ids = [app.send_task({task!r}, kwargs={{'failures': 6, 'countdown': 1}}).id for _ in range(3)]\n"
        "print(json.dumps(ids))",
    )
    alert = wait_for(receiver, sent_at, "firing", "CeleryTaskRetryRateHigh", {"task": task})
    assert alert["annotations"]["summary"].startswith(f"Task {task} retries ")


def test_a_worker_that_stops_consuming_while_its_unit_stays_active_raises_the_heartbeat_alert(
    receiver,
):
    """kill -STOP freezes the queue's worker: its unit, PID and Flower's last word stay healthy,
    but the heartbeat through the queue is no longer finished; kill -CONT brings it back."""
    worker_host = host(QUEUE_HOST[QUEUE])
    unit = f"{UNIT_PREFIX}-worker@{QUEUE}.service"
    pid = worker_host.check_output(f"systemctl show --property=MainPID --value {unit}")
    assert int(pid) > 0
    frozen_at = time.time()
    assert worker_host.run(f"kill -STOP {pid}").rc == 0
    try:
        late = wait_for(receiver, frozen_at, "firing", "CeleryQueueHeartbeatLate", {"queue": QUEUE})
        assert worker_host.service(unit).is_running
    finally:
        assert worker_host.run(f"kill -CONT {pid}").rc == 0
    assert late["labels"]["severity"] == "critical"
    wait_for(receiver, frozen_at, "resolved", "CeleryQueueHeartbeatLate", {"queue": QUEUE})


def test_a_stopped_beat_raises_the_beat_silent_alert_and_resolves_when_it_sends_again(
    monitoring, receiver
):
    """Beat's probe reports its schedule's shortest interval (the scenario's 10-s inventory sync,
    worked out from the project's own beat_schedule) and each send; with Beat stopped nothing is
    sent, and CeleryBeatSilent fires after twice that interval; Beat started again sends the
    overdue task at once and the alert resolves."""
    interval = query(monitoring, "celery_beat_shortest_interval_seconds")
    assert [float(sample["value"][1]) for sample in interval] == [10.0], interval
    scheduler = host(SCHEDULER)
    unit = f"{UNIT_PREFIX}-beat.service"
    stopped_at = time.time()
    assert scheduler.run(f"systemctl stop {unit}").rc == 0
    try:
        # Beat's last send before the stop, as its probe recorded it: silence counts from there.
        liveness = scheduler.file(f"/var/lib/{UNIT_PREFIX}-beat/liveness.json").content_string
        last_sent = json.loads(liveness)["last_sent"]
        assert stopped_at - 15 <= last_sent <= stopped_at
        silent = wait_for(receiver, stopped_at, "firing", "CeleryBeatSilent", {"host": SCHEDULER})
        assert time.time() - last_sent >= 2 * 10
    finally:
        assert scheduler.run(f"systemctl start {unit}").rc == 0
    assert silent["labels"]["severity"] == "critical"
    wait_for(receiver, stopped_at, "resolved", "CeleryBeatSilent", {"host": SCHEDULER})
