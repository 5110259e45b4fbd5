"""Monitoring of a RabbitMQ cluster: Prometheus on the monitoring host scrapes every broker node's
own metrics (the rabbitmq_prometheus plugin) beside the other exporters, and the scheduler's
heartbeat travels through every quorum queue and reads its length from the broker."""

import json
import time
import urllib.parse

import dcs_testlib
import pytest
from conftest import BROKERS, INVENTORY, QUEUES, SCHEDULER, host

MONITORING = INVENTORY.get_hosts("monitoring")[0]
HEARTBEAT_AGE = float(INVENTORY.get_variables(MONITORING)["dcs_alert_heartbeat_age"])


@pytest.fixture(scope="module")
def monitoring():
    return host(MONITORING)


def query(monitoring, promql: str) -> list[dict]:
    """The samples of an instant PromQL query to Prometheus (on loopback of the monitoring host)."""
    status, text = dcs_testlib.http(
        monitoring,
        "GET",
        "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": promql}),
    )
    assert status == 200, text
    return json.loads(text)["data"]["result"]


def by_label(samples: list[dict], label: str) -> dict[str, float]:
    return {sample["metric"][label]: float(sample["value"][1]) for sample in samples}


def test_flower_is_scraped_through_nginx_on_the_schedulers_own_port(monitoring):
    deadline = time.monotonic() + 60
    while (up := by_label(query(monitoring, 'up{job="flower"}'), "host")) != {SCHEDULER: 1.0}:
        assert time.monotonic() < deadline, up
        time.sleep(2)


def test_every_broker_node_serves_its_metrics_and_none_raises_an_alarm(monitoring):
    deadline = time.monotonic() + 60
    while True:
        up = by_label(query(monitoring, 'up{job="rabbitmq"}'), "host")
        if (set(up) == set(BROKERS) and set(up.values()) == {1.0}) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert up == dict.fromkeys(BROKERS, 1.0)
    # One cluster: every node reports the same permanent cluster id (the cluster's name label is
    # each node's own view, its node name unless set_cluster_name was run).
    identities = query(monitoring, "rabbitmq_identity_info")
    assert {sample["metric"]["host"] for sample in identities} == set(BROKERS)
    assert len({sample["metric"]["rabbitmq_cluster_permanent_id"] for sample in identities}) == 1
    alarms = query(monitoring, '{__name__=~"rabbitmq_alarms_.+", job="rabbitmq"}')
    assert {sample["metric"]["host"] for sample in alarms} == set(BROKERS)
    assert [sample["metric"] for sample in alarms if sample["value"][1] != "0"] == []


def test_the_heartbeat_goes_through_every_quorum_queue_and_reads_its_length(monitoring):
    deadline = time.monotonic() + 90
    while True:
        ages = by_label(
            query(monitoring, f'celery_queue_heartbeat_age_seconds{{host="{SCHEDULER}"}}'), "queue"
        )
        fresh = {queue for queue, age in ages.items() if age < HEARTBEAT_AGE}
        if fresh == set(QUEUES) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert set(ages) == set(QUEUES)
    assert fresh == set(QUEUES), ages
    lengths = by_label(query(monitoring, "celery_queue_length"), "queue")
    assert set(lengths) == set(QUEUES)
    assert all(length >= 0 for length in lengths.values())
